// Writes a BERT-style encoder with seeded random weights as a Hugging Face / Optimum ONNX folder:
// onnx/model.onnx, config.json, tokenizer.json (WordPiece), tokenizer_config.json, vocab.txt,
// special_tokens_map.json, and the sentence-transformers files (modules.json, 1_Pooling/config.json,
// sentence_bert_config.json, 2_Normalize) for embedding models. With `labels` it is a
// sequence-classification model instead (BertForSequenceClassification, config id2label).
import { existsSync, readdirSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { type BertShape, bertWeightSpecs, buildBertModel } from './bert-graph.ts'
import { initWeight, writeJson } from './build-model.ts'
import { countParameters } from './llama-graph.ts'
import { bytesOf, DataType, inlineTensor } from './onnx-writer.ts'
import { buildWordPieceTokenizerFiles } from './wordpiece-tokenizer.ts'

/** What a preset or the CLI chooses. */
export type EncoderSize = Pick<
  BertShape,
  'hiddenSize' | 'intermediateSize' | 'numLayers' | 'numHeads' | 'vocabSize' | 'maxPositions'
>

export type EncoderPresetName = 'tiny-encoder' | 'minilm-l6'

export const ENCODER_PRESETS: Record<EncoderPresetName, EncoderSize> = {
  // ~0.3M parameters: fast enough for unit tests.
  'tiny-encoder': {
    hiddenSize: 64,
    intermediateSize: 128,
    numLayers: 2,
    numHeads: 4,
    vocabSize: 1024,
    maxPositions: 128,
  },
  // all-MiniLM-L6-v2's shape, ~22.7M parameters.
  'minilm-l6': {
    hiddenSize: 384,
    intermediateSize: 1536,
    numLayers: 6,
    numHeads: 12,
    vocabSize: 30522,
    maxPositions: 512,
  },
}

export type Pooling = 'mean' | 'cls' | 'lasttoken' | 'max'

export interface EncoderBuildOptions {
  dir: string
  preset?: EncoderPresetName
  size?: Partial<EncoderSize>
  seed?: number
  force?: boolean
  /** Class names: builds a classification model whose config maps ids to these labels. */
  labels?: string[]
  /** Sentence-transformers pooling written to 1_Pooling/config.json (embedding models; default mean). */
  pooling?: Pooling
  /** Adds the sentence-transformers Normalize module (default true). */
  normalize?: boolean
  /** false: no token_type_ids input (DistilBERT-style graph). Default true. */
  tokenTypes?: boolean
}

export function resolveEncoderShape(
  options: Pick<EncoderBuildOptions, 'preset' | 'size' | 'labels' | 'tokenTypes'>,
): BertShape {
  const size = { ...ENCODER_PRESETS[options.preset ?? 'tiny-encoder'], ...options.size }
  for (const [key, value] of Object.entries(size)) {
    if (!Number.isInteger(value) || value <= 0) throw new Error(`${key} must be a positive integer, got ${value}`)
  }
  if (size.hiddenSize % size.numHeads !== 0)
    throw new Error(`hidden size ${size.hiddenSize} must split into ${size.numHeads} equal heads`)
  if (options.labels && options.labels.length < 2) throw new Error('a classification model needs at least 2 labels')
  return {
    ...size,
    typeVocabSize: options.tokenTypes === false ? 0 : 2,
    layerNormEps: 1e-12,
    numLabels: options.labels?.length,
  }
}

export async function buildRandomEncoder(options: EncoderBuildOptions): Promise<{ dir: string; parameters: number }> {
  const { dir, seed = 0, labels } = options
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new Error(`seed must be an integer in 0..2^32-1, got ${seed}`)
  const shape = resolveEncoderShape(options)
  if (existsSync(dir) && readdirSync(dir).length > 0 && !options.force)
    throw new Error(`${dir} is not empty (pass force / --force to overwrite)`)
  const specs = bertWeightSpecs(shape)
  const weights = specs.map((spec) =>
    inlineTensor({
      name: spec.name,
      dims: spec.dims,
      dataType: DataType.FLOAT,
      bytes: bytesOf(
        spec.init === 'zeros'
          ? new Float32Array(spec.dims.reduce((a, b) => a * b, 1))
          : initWeight({ ...spec, init: spec.init }, seed),
      ),
    }),
  )
  await mkdir(join(dir, 'onnx'), { recursive: true })
  await writeFile(join(dir, 'onnx', 'model.onnx'), buildBertModel(shape, weights))

  const files = buildWordPieceTokenizerFiles(shape.vocabSize, shape.maxPositions)
  await writeJson(join(dir, 'config.json'), encoderConfig(shape, seed, labels))
  await writeJson(join(dir, 'tokenizer.json'), files.tokenizer)
  await writeJson(join(dir, 'tokenizer_config.json'), files.tokenizerConfig)
  await writeJson(join(dir, 'special_tokens_map.json'), files.specialTokensMap)
  await writeFile(join(dir, 'vocab.txt'), files.vocabTxt)
  if (!labels) await writeSentenceTransformersFiles(dir, shape, options.pooling ?? 'mean', options.normalize ?? true)
  return { dir, parameters: countParameters(specs) }
}

async function writeSentenceTransformersFiles(
  dir: string,
  shape: BertShape,
  pooling: Pooling,
  normalize: boolean,
): Promise<void> {
  const modules = [
    { idx: 0, name: '0', path: '', type: 'sentence_transformers.models.Transformer' },
    { idx: 1, name: '1', path: '1_Pooling', type: 'sentence_transformers.models.Pooling' },
  ]
  if (normalize)
    modules.push({ idx: 2, name: '2', path: '2_Normalize', type: 'sentence_transformers.models.Normalize' })
  await writeJson(join(dir, 'modules.json'), modules)
  await mkdir(join(dir, '1_Pooling'), { recursive: true })
  await writeJson(join(dir, '1_Pooling', 'config.json'), {
    word_embedding_dimension: shape.hiddenSize,
    pooling_mode_cls_token: pooling === 'cls',
    pooling_mode_mean_tokens: pooling === 'mean',
    pooling_mode_max_tokens: pooling === 'max',
    pooling_mode_mean_sqrt_len_tokens: false,
    pooling_mode_weightedmean_tokens: false,
    pooling_mode_lasttoken: pooling === 'lasttoken',
    include_prompt: true,
  })
  if (normalize) await mkdir(join(dir, '2_Normalize'), { recursive: true })
  await writeJson(join(dir, 'sentence_bert_config.json'), { max_seq_length: shape.maxPositions, do_lower_case: false })
}

function encoderConfig(shape: BertShape, seed: number, labels: string[] | undefined) {
  return {
    architectures: [labels ? 'BertForSequenceClassification' : 'BertModel'],
    model_type: 'bert',
    hidden_size: shape.hiddenSize,
    intermediate_size: shape.intermediateSize,
    num_hidden_layers: shape.numLayers,
    num_attention_heads: shape.numHeads,
    vocab_size: shape.vocabSize,
    max_position_embeddings: shape.maxPositions,
    type_vocab_size: shape.typeVocabSize,
    layer_norm_eps: shape.layerNormEps,
    hidden_act: 'gelu',
    hidden_dropout_prob: 0.1,
    attention_probs_dropout_prob: 0.1,
    pad_token_id: 0,
    position_embedding_type: 'absolute',
    torch_dtype: 'float32',
    ...(labels && {
      id2label: Object.fromEntries(labels.map((label, i) => [String(i), label])),
      label2id: Object.fromEntries(labels.map((label, i) => [label, i])),
      problem_type: 'single_label_classification',
    }),
    switchyard_random_weights: true,
    switchyard_seed: seed,
  }
}
