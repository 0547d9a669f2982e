// Writes a Llama-architecture model with seeded random weights as a Hugging Face / Optimum
// ONNX folder: onnx/model.onnx (+ onnx/model.onnx_data when large), config.json,
// generation_config.json, tokenizer.json, tokenizer_config.json, special_tokens_map.json.
import { closeSync, existsSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type onnxProto from 'onnx-proto'
import { buildLlamaModel, countParameters, llamaWeightSpecs, type LlamaShape, type WeightSpec } from './llama-graph.ts'
import { bytesOf, externalFloatTensor, floatTensor } from './onnx-writer.ts'
import { buildTokenizerFiles } from './tokenizer.ts'

/** What a preset or the CLI chooses; head_dim follows from hidden / heads. */
export interface ModelSize {
  hiddenSize: number
  intermediateSize: number
  numLayers: number
  numHeads: number
  numKvHeads: number
  vocabSize: number
  contextLength: number
}

export type PresetName = 'tiny' | '15m' | '100m'

export const PRESETS: Record<PresetName, ModelSize> = {
  // ~0.66M parameters: fast enough for unit tests.
  tiny: { hiddenSize: 128, intermediateSize: 256, numLayers: 4, numHeads: 8, numKvHeads: 4, vocabSize: 512, contextLength: 512 },
  // ~15.7M parameters.
  '15m': { hiddenSize: 384, intermediateSize: 1024, numLayers: 8, numHeads: 6, numKvHeads: 2, vocabSize: 8192, contextLength: 1024 },
  // ~100.1M parameters (Llama-style 32k vocabulary, tied embeddings).
  '100m': { hiddenSize: 768, intermediateSize: 2048, numLayers: 12, numHeads: 12, numKvHeads: 4, vocabSize: 32000, contextLength: 2048 },
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

const EXTERNAL_DATA_FILE = 'model.onnx_data'

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
  const headDim = size.hiddenSize / size.numHeads
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new Error(`hidden size ${size.hiddenSize} must split into ${size.numHeads} heads of even size`)
  }
  if (size.numHeads % size.numKvHeads !== 0) {
    throw new Error(`${size.numHeads} heads cannot be grouped over ${size.numKvHeads} kv heads`)
  }
  if (size.vocabSize < MIN_VOCAB_SIZE) throw new Error(`vocab size must be at least ${MIN_VOCAB_SIZE}`)
  return { ...size, headDim, rmsNormEps: 1e-5, ropeTheta: 10000, tieWordEmbeddings: true }
}

export async function buildRandomLlama(options: BuildOptions): Promise<BuiltModel> {
  const { dir, seed = 0, force = false } = options
  // The PRNG takes 32-bit seeds; larger ones would silently collide.
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`seed must be an integer in 0..2^32-1, got ${seed}`)
  const shape = resolveShape(options.preset, options.size)
  const specs = llamaWeightSpecs(shape)
  const parameters = countParameters(specs)
  const external = options.externalData ?? parameters * 4 > EXTERNAL_DATA_THRESHOLD

  if (existsSync(dir) && readdirSync(dir).length > 0 && !force) {
    throw new Error(`${dir} is not empty (pass force / --force to overwrite)`)
  }
  const onnxDir = join(dir, 'onnx')
  await mkdir(onnxDir, { recursive: true })
  // A stale side file from an earlier external-data build would otherwise linger.
  rmSync(join(onnxDir, EXTERNAL_DATA_FILE), { force: true })

  const weights = external
    ? writeExternalWeights(join(onnxDir, EXTERNAL_DATA_FILE), specs, seed)
    : specs.map((spec) => floatTensor(spec.name, spec.dims, initWeight(spec, seed)))
  await writeFile(join(onnxDir, 'model.onnx'), buildLlamaModel(shape, weights))

  const { tokenizer, tokenizerConfig, specialTokensMap } = buildTokenizerFiles(shape.vocabSize, shape.contextLength)
  await writeJson(join(dir, 'config.json'), modelConfig(shape, seed, external))
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

/** Streams weights one tensor at a time so peak memory stays at the largest tensor. */
function writeExternalWeights(path: string, specs: WeightSpec[], seed: number): onnxProto.onnx.ITensorProto[] {
  const fd = openSync(path, 'w')
  try {
    let offset = 0
    return specs.map((spec) => {
      const padding = (EXTERNAL_DATA_ALIGNMENT - (offset % EXTERNAL_DATA_ALIGNMENT)) % EXTERNAL_DATA_ALIGNMENT
      if (padding > 0) offset += writeSync(fd, new Uint8Array(padding))
      const bytes = bytesOf(initWeight(spec, seed))
      writeSync(fd, bytes)
      const tensor = externalFloatTensor(spec.name, spec.dims, EXTERNAL_DATA_FILE, offset, bytes.byteLength)
      offset += bytes.byteLength
      return tensor
    })
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

function modelConfig(shape: LlamaShape, seed: number, externalData: boolean) {
  return {
    architectures: ['LlamaForCausalLM'],
    model_type: 'llama',
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
    torch_dtype: 'float32',
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
