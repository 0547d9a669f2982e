// Writes a Llama-architecture model with seeded random weights, in one of two folder styles:
// - optimum: onnx/model{,_fp16,_q4,_int8,_uint8}.onnx (+ .onnx_data, sharded as _1, _2, ...),
//   config.json, generation_config.json, tokenizer.json, tokenizer_config.json,
//   special_tokens_map.json (what transformers.js reads);
// - genai: model.onnx (+ model.onnx.data) and genai_config.json at the folder root, as the
//   onnxruntime-genai model builder writes them, plus the tokenizer files and (optionally)
//   config.json.
import { closeSync, existsSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type onnxProto from 'onnx-proto'
import { genaiConfig } from './genai-config.ts'
import {
  buildLlamaModel,
  countParameters,
  type GraphStyle,
  type LlamaShape,
  llamaWeightSpecs,
  type WeightSpec,
} from './llama-graph.ts'
import { externalTensor, inlineTensor, type RawTensor } from './onnx-writer.ts'
import { floatWeight, isHalf, projectionWeights, type WeightFormat } from './quantize.ts'
import { buildTokenizerFiles } from './tokenizer.ts'

/** What a preset or the CLI chooses; head_dim defaults to hidden / heads (Gemma and Qwen3 differ). */
export interface ModelSize {
  hiddenSize: number
  intermediateSize: number
  numLayers: number
  numHeads: number
  numKvHeads: number
  vocabSize: number
  contextLength: number
  headDim?: number
}

export type PresetName = 'tiny' | '15m' | '100m' | 'smollm2-135m' | 'llama-3.2-1b'

export const PRESETS: Record<PresetName, ModelSize> = {
  // ~0.66M parameters: fast enough for unit tests.
  tiny: {
    hiddenSize: 128,
    intermediateSize: 256,
    numLayers: 4,
    numHeads: 8,
    numKvHeads: 4,
    vocabSize: 512,
    contextLength: 512,
  },
  // ~15.7M parameters.
  '15m': {
    hiddenSize: 384,
    intermediateSize: 1024,
    numLayers: 8,
    numHeads: 6,
    numKvHeads: 2,
    vocabSize: 8192,
    contextLength: 1024,
  },
  // ~100.1M parameters (Llama-style 32k vocabulary, tied embeddings).
  '100m': {
    hiddenSize: 768,
    intermediateSize: 2048,
    numLayers: 12,
    numHeads: 12,
    numKvHeads: 4,
    vocabSize: 32000,
    contextLength: 2048,
  },
  // The shapes of SmolLM2-135M and Llama-3.2-1B (context cut to 2048), for benchmarks.
  'smollm2-135m': {
    hiddenSize: 576,
    intermediateSize: 1536,
    numLayers: 30,
    numHeads: 9,
    numKvHeads: 3,
    vocabSize: 49152,
    contextLength: 2048,
  },
  'llama-3.2-1b': {
    hiddenSize: 2048,
    intermediateSize: 8192,
    numLayers: 16,
    numHeads: 32,
    numKvHeads: 8,
    vocabSize: 128256,
    contextLength: 2048,
  },
}

/** The ONNX file each weight format is published as in an Optimum / transformers.js folder. */
export const OPTIMUM_FILE_NAMES: Record<WeightFormat, string> = {
  fp32: 'model.onnx',
  fp16: 'model_fp16.onnx',
  q4: 'model_q4.onnx',
  q4f16: 'model_q4f16.onnx',
  int8: 'model_int8.onnx',
  uint8: 'model_uint8.onnx',
}

export const MIN_VOCAB_SIZE = 512

/** Embedding init std (HF Llama's initializer_range). */
const EMBEDDING_STD = 0.02

/**
 * Projections get std = gain / sqrt(fan_in). With HF's flat 0.02 the blocks barely move the
 * residual stream of a small model and greedy decoding repeats one token; this gain keeps
 * the attention and MLP outputs dominant, so greedy output varies like (random) text.
 */
const PROJECTION_GAIN = 1.5

/**
 * Above this many weight bytes, weights go to onnx/model.onnx_data: a single protobuf must stay
 * under 2 GiB. Below it one self-contained file is the simplest thing for loaders (the 100m
 * preset, ~400 MB, encodes in about 10 s with under 1 GB of memory).
 */
const EXTERNAL_DATA_THRESHOLD = 1.5 * 1024 ** 3

/** External tensors start on page boundaries so onnxruntime can memory-map them. */
const EXTERNAL_DATA_ALIGNMENT = 4096

export interface BuildOptions {
  /** Output folder (created if missing). */
  dir: string
  preset?: PresetName
  /** Overrides on top of the preset (default preset: tiny). */
  size?: Partial<ModelSize>
  seed?: number
  /** Write into a non-empty folder, replacing the files this builder writes. */
  force?: boolean
  /** Default: only when the weights are too large for one protobuf (over 1.5 GiB). */
  externalData?: boolean
  /** Start a new external data file (name_1, name_2, ...) past this many bytes, as sharded exports do. */
  shardBytes?: number
  /** optimum (default) or genai (GroupQueryAttention, genai_config.json). */
  style?: GraphStyle
  /** fp32 (default), fp16, q4, int8 or uint8. */
  weights?: WeightFormat
  /** Default true: the LM head reuses the embedding matrix. */
  tieWordEmbeddings?: boolean
  /** model_type written to config.json (the graph is Llama's either way). Default llama. */
  modelType?: string
  /** genai style: also write a Hugging Face config.json (default true). */
  hfConfig?: boolean
  /**
   * optimum style: false leaves out the position_ids input (the graph derives positions from the
   * mask). genai style: true applies rotary before GroupQueryAttention from a position_ids input.
   */
  positionIds?: boolean
  /** optimum style: write onnx/decoder_model_merged{,_<weights>}.onnx (an If on use_cache_branch) instead of model*.onnx. */
  merged?: boolean
}

export interface BuiltModel {
  dir: string
  parameters: number
}

export function resolveShape(preset: PresetName = 'tiny', overrides: Partial<ModelSize> = {}): LlamaShape {
  const size = { ...PRESETS[preset], ...overrides }
  for (const [key, value] of Object.entries(size)) {
    if (!Number.isInteger(value) || value <= 0) throw new Error(`${key} must be a positive integer, got ${value}`)
  }
  const headDim = size.headDim ?? size.hiddenSize / size.numHeads
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new Error(
      size.headDim === undefined
        ? `hidden size ${size.hiddenSize} must split into ${size.numHeads} heads of even size`
        : `head dim must be even, got ${headDim}`,
    )
  }
  if (size.numHeads % size.numKvHeads !== 0) {
    throw new Error(`${size.numHeads} heads cannot be grouped over ${size.numKvHeads} kv heads`)
  }
  if (size.vocabSize < MIN_VOCAB_SIZE) throw new Error(`vocab size must be at least ${MIN_VOCAB_SIZE}`)
  return { ...size, headDim, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true }
}

export async function buildRandomLlama(options: BuildOptions): Promise<BuiltModel> {
  const { dir, seed = 0, force = false, style = 'optimum', weights: format = 'fp32' } = options
  // The PRNG takes 32-bit seeds; larger ones would silently collide.
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
    throw new Error(`seed must be an integer in 0..2^32-1, got ${seed}`)
  const shape = { ...resolveShape(options.preset, options.size), tieWordEmbeddings: options.tieWordEmbeddings ?? true }
  const specs = llamaWeightSpecs(shape)
  const parameters = countParameters(specs)
  const external = options.externalData ?? weightBytes(specs, format) > EXTERNAL_DATA_THRESHOLD

  if (existsSync(dir) && readdirSync(dir).length > 0 && !force) {
    throw new Error(`${dir} is not empty (pass force / --force to overwrite)`)
  }
  const onnxDir = style === 'genai' ? dir : join(dir, 'onnx')
  const fileName = OPTIMUM_FILE_NAMES[format]
  const onnxName =
    style === 'genai' ? 'model.onnx' : options.merged ? fileName.replace(/^model/, 'decoder_model_merged') : fileName
  const dataName = style === 'genai' ? `${onnxName}.data` : `${onnxName}_data`
  await mkdir(onnxDir, { recursive: true })
  // Stale side files from an earlier external-data build would otherwise linger.
  for (const name of readdirSync(onnxDir)) if (name.startsWith(dataName)) rmSync(join(onnxDir, name), { force: true })

  const tensors = (spec: WeightSpec) => materialize(spec, initWeight(spec, seed), format)
  const initializers = external
    ? writeExternalWeights(onnxDir, dataName, specs, tensors, options.shardBytes ?? Infinity)
    : specs.flatMap((spec) => tensors(spec).map(inlineTensor))
  await writeFile(
    join(onnxDir, onnxName),
    buildLlamaModel(shape, initializers, {
      style,
      weights: format,
      positionIds: options.positionIds,
      merged: options.merged,
    }),
  )

  const { tokenizer, tokenizerConfig, specialTokensMap } = buildTokenizerFiles(shape.vocabSize, shape.contextLength)
  const modelType = options.modelType ?? 'llama'
  if (style === 'optimum' || options.hfConfig !== false)
    await writeJson(join(dir, 'config.json'), modelConfig(shape, seed, external, modelType, format))
  if (style === 'genai') await writeJson(join(dir, 'genai_config.json'), genaiConfig(shape, modelType, onnxName))
  await writeJson(join(dir, 'generation_config.json'), {
    bos_token_id: 1,
    eos_token_id: 2,
    max_length: shape.contextLength,
    do_sample: false,
  })
  await writeJson(join(dir, 'tokenizer.json'), tokenizer)
  await writeJson(join(dir, 'tokenizer_config.json'), tokenizerConfig)
  await writeJson(join(dir, 'special_tokens_map.json'), specialTokensMap)
  return { dir, parameters }
}

/** Bytes the weights take in `format`: embeddings and norms stay float, projections are quantized. */
function weightBytes(specs: WeightSpec[], format: WeightFormat): number {
  const floatBytes = isHalf(format) ? 2 : 4
  const projectionBytes = { fp32: 4, fp16: 2, q4: 0.625, q4f16: 0.5625, int8: 1, uint8: 1 }[format]
  return specs.reduce(
    (sum, spec) =>
      sum + spec.dims.reduce((a, b) => a * b, 1) * (spec.init === 'projection' ? projectionBytes : floatBytes),
    0,
  )
}

/** A weight's tensors in `format`: projections quantized, embeddings and norms as floats. */
function materialize(spec: WeightSpec, data: Float32Array, format: WeightFormat): RawTensor[] {
  if (spec.init !== 'projection') return [floatWeight(spec.name, spec.dims, data, format)]
  return projectionWeights(spec.name.replace(/\.weight_T$/, ''), spec.dims[0], spec.dims[1], data, format)
}

/**
 * Streams weights one tensor at a time so peak memory stays at the largest tensor. A new file
 * (name_1, name_2, ...) starts once one passes `shardBytes`.
 */
function writeExternalWeights(
  dir: string,
  dataName: string,
  specs: WeightSpec[],
  tensors: (spec: WeightSpec) => RawTensor[],
  shardBytes: number,
): onnxProto.onnx.ITensorProto[] {
  let shard = 0
  let location = dataName
  let fd = openSync(join(dir, location), 'w')
  let offset = 0
  try {
    return specs.flatMap((spec) =>
      tensors(spec).map(({ name, dims, dataType, bytes }) => {
        if (offset > 0 && offset + bytes.byteLength > shardBytes) {
          closeSync(fd)
          location = `${dataName}_${++shard}`
          fd = openSync(join(dir, location), 'w')
          offset = 0
        }
        const padding = (EXTERNAL_DATA_ALIGNMENT - (offset % EXTERNAL_DATA_ALIGNMENT)) % EXTERNAL_DATA_ALIGNMENT
        if (padding > 0) offset += writeSync(fd, new Uint8Array(padding))
        writeSync(fd, bytes)
        const tensor = externalTensor(name, dims, dataType, location, offset, bytes.byteLength)
        offset += bytes.byteLength
        return tensor
      }),
    )
  } finally {
    closeSync(fd)
  }
}

export function initWeight(spec: WeightSpec, seed: number): Float32Array {
  const data = new Float32Array(spec.dims.reduce((a, b) => a * b, 1))
  if (spec.init === 'ones') return data.fill(1)
  // Seeded per tensor name, so a tensor's values do not depend on what was generated before it.
  const std = spec.init === 'embedding' ? EMBEDDING_STD : PROJECTION_GAIN / Math.sqrt(spec.dims[0])
  const random = mulberry32(hashString(spec.name) ^ seed)
  for (let i = 0; i < data.length; i += 2) {
    // Box-Muller: two independent standard normals from two uniforms in (0, 1].
    const radius = std * Math.sqrt(-2 * Math.log(1 - random()))
    const angle = 2 * Math.PI * random()
    data[i] = radius * Math.cos(angle)
    if (i + 1 < data.length) data[i + 1] = radius * Math.sin(angle)
  }
  return data
}

/** mulberry32: a tiny, fast 32-bit PRNG; returns uniforms in [0, 1). */
function mulberry32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** FNV-1a, 32-bit. */
function hashString(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193)
  return hash >>> 0
}

function modelConfig(shape: LlamaShape, seed: number, externalData: boolean, modelType: string, format: WeightFormat) {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: modelType,
    hidden_size: shape.hiddenSize,
    intermediate_size: shape.intermediateSize,
    num_hidden_layers: shape.numLayers,
    num_attention_heads: shape.numHeads,
    num_key_value_heads: shape.numKvHeads,
    head_dim: shape.headDim,
    vocab_size: shape.vocabSize,
    max_position_embeddings: shape.contextLength,
    rms_norm_eps: shape.rmsNormEps,
    rope_theta: shape.ropeTheta,
    rope_scaling: null,
    hidden_act: 'silu',
    tie_word_embeddings: shape.tieWordEmbeddings,
    attention_bias: false,
    mlp_bias: false,
    bos_token_id: 1,
    eos_token_id: 2,
    pad_token_id: null,
    use_cache: true,
    torch_dtype: isHalf(format) ? 'float16' : 'float32',
    initializer_range: EMBEDDING_STD,
    switchyard_random_weights: true,
    switchyard_seed: seed,
    // transformers.js only fetches model.onnx_data when told to.
    ...(externalData && { 'transformers.js_config': { use_external_data_format: true } }),
  }
}

export function writeJson(path: string, value: unknown): Promise<void> {
  return writeFile(path, `${JSON.stringify(value, null, 2)}\n`)
}
