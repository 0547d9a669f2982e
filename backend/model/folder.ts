import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { basename, join, relative, resolve } from 'node:path'
import { errorMessage } from '../../lib/error-message.ts'
import { genaiIoNames, type IoNames, OPTIMUM_IO_NAMES, parseGenaiConfig } from './genai-config.ts'

/**
 * The ONNX file variants transformers.js publishes (onnx/model_<variant>.onnx; fp32 is plain
 * model.onnx). `auto` picks per device, see AUTO_ORDER.
 */
export const MODEL_VARIANTS = ['auto', 'fp32', 'fp16', 'int8', 'uint8', 'quantized', 'q4', 'q4f16', 'bnb4'] as const
export type ModelVariant = (typeof MODEL_VARIANTS)[number]
export type FileVariant = Exclude<ModelVariant, 'auto'>

/**
 * `auto` order. CPU: full precision first (exact), then the 8-bit files (MatMulInteger has fast
 * CPU kernels), then 4-bit, then half precision (CPU runs most fp16 ops through casts). CUDA:
 * half precision first, then 4-bit, then fp32; the 8-bit dynamic-quantization ops run on CPU.
 */
export const AUTO_ORDER: Record<'cpu' | 'cuda', FileVariant[]> = {
  cpu: ['fp32', 'quantized', 'int8', 'uint8', 'q4', 'bnb4', 'fp16', 'q4f16'],
  cuda: ['fp16', 'q4f16', 'q4', 'fp32', 'bnb4', 'quantized', 'int8', 'uint8'],
}

/** Architectures (config.json model_type / genai type) whose decoder exports the runner drives. */
export const SUPPORTED_MODEL_TYPES = [
  'llama',
  'mistral',
  'qwen2',
  'qwen3',
  'gemma',
  'gemma2',
  'gemma3_text',
  'gemma3',
  'phi3',
  'gpt2',
] as const

export interface ModelFolder {
  id: string
  dir: string
  onnxPath: string
  /** Which file variant onnxPath is; `genai` for a model-builder folder's single file. */
  variant: FileVariant | 'genai'
  modelType: string
  contextLength: number
  eosTokenIds: number[]
  /** Set by Switchyard's model builder: the weights are seeded noise, not a trained model. */
  randomWeights: boolean
  tokenizerJson: Record<string, unknown>
  tokenizerConfig: Record<string, unknown>
  /** Graph input / output names (Optimum's, or the patterns in genai_config.json). */
  io: IoNames
  /** Shapes genai_config.json promises; the runner checks the graph against them. */
  expected?: { layers: number; kvHeads: number; headDim: number; vocabSize?: number }
}

/** A model folder that cannot be served; the message names what is wrong and where. */
export class ModelFolderError extends Error {
  override name = 'ModelFolderError'
}

const GENAI_CONFIG = 'genai_config.json'

function fileNames(variant: FileVariant): string[] {
  return variant === 'fp32'
    ? ['model.onnx', 'decoder_model_merged.onnx']
    : [`model_${variant}.onnx`, `decoder_model_merged_${variant}.onnx`]
}

const holdsModel = (dir: string) => existsSync(join(dir, 'config.json')) || existsSync(join(dir, GENAI_CONFIG))

/** Lists the model folders under `dir`: the folder itself if it holds a model, else its children that do. */
export function findModelFolders(dir: string): string[] {
  const root = resolve(dir)
  if (!existsSync(root) || !statSync(root).isDirectory())
    throw new ModelFolderError(`MODEL_DIR ${root}: no such folder`)
  if (holdsModel(root)) return [root]
  const children = readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && holdsModel(join(root, e.name)))
    .map((e) => join(root, e.name))
    .sort()
  if (children.length === 0)
    throw new ModelFolderError(`MODEL_DIR ${root}: no config.json or ${GENAI_CONFIG} in it or in any subfolder`)
  return children
}

export interface LoadOptions {
  id?: string
  variant?: ModelVariant
  /** Which `auto` order applies (default cpu). */
  device?: 'cpu' | 'cuda'
}

export function loadModelFolder(dir: string, options: LoadOptions = {}): ModelFolder {
  const root = resolve(dir)
  const fail = (what: string): never => {
    throw new ModelFolderError(`model folder ${root}: ${what}`)
  }
  const genaiJson = readJson(root, GENAI_CONFIG, fail, false)
  const config = readJson(root, 'config.json', fail, !genaiJson) ?? {}
  const generation = readJson(root, 'generation_config.json', fail, false) ?? {}
  const tokenizerJson = readJson(root, 'tokenizer.json', fail, true)!
  const tokenizerConfig = readJson(root, 'tokenizer_config.json', fail, false) ?? {}
  const genai = genaiJson && attempt(() => parseGenaiConfig(genaiJson), fail)

  const modelType = String(config.model_type ?? genai?.model.type ?? '')
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    const source = config.model_type !== undefined ? 'config.json model_type' : `${GENAI_CONFIG} model.type`
    fail(`unsupported architecture ${source} "${modelType}" (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`)
  }
  const contextLength = firstNumber(
    genai?.model.context_length,
    config.max_position_embeddings,
    config.n_positions,
    config.n_ctx,
    generation.max_length,
    tokenizerConfig.model_max_length,
  )
  if (!contextLength || contextLength < 2)
    fail('config.json gives no context length (max_position_embeddings or n_positions)')

  const eos = genai?.model.eos_token_id ?? generation.eos_token_id ?? config.eos_token_id
  const eosTokenIds = (Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos]).map(Number)
  if (eosTokenIds.some((t) => !Number.isInteger(t) || t < 0)) fail('eos_token_id must be a token id or a list of them')

  const picked = genai
    ? genaiFile(root, genai.model.decoder.filename, options.variant ?? 'auto', fail)
    : pickOnnxFile(root, options.variant ?? 'auto', options.device ?? 'cpu', fail)
  const decoder = genai?.model.decoder
  return {
    id: options.id ?? basename(root),
    dir: root,
    ...picked,
    modelType,
    contextLength: contextLength!,
    eosTokenIds,
    randomWeights: config.switchyard_random_weights === true,
    tokenizerJson,
    tokenizerConfig,
    io: genai ? genaiIoNames(genai) : OPTIMUM_IO_NAMES,
    expected: decoder && {
      layers: decoder.num_hidden_layers,
      kvHeads: decoder.num_key_value_heads,
      headDim: decoder.head_size,
      vocabSize: genai.model.vocab_size,
    },
  }
}

/** The folder's file name relative to the folder, for logs and /model/info. */
export function relativeOnnxPath(folder: ModelFolder): string {
  return relative(folder.dir, folder.onnxPath)
}

function genaiFile(
  root: string,
  filename: string,
  wanted: ModelVariant,
  fail: (what: string) => never,
): { onnxPath: string; variant: 'genai' } {
  if (wanted !== 'auto')
    fail(
      `MODEL_VARIANT=${wanted} does not apply: a ${GENAI_CONFIG} folder holds one model file (${filename}); use MODEL_VARIANT=auto`,
    )
  const onnxPath = resolve(root, filename)
  if (relative(root, onnxPath).startsWith('..'))
    fail(`${GENAI_CONFIG} decoder.filename "${filename}" points outside the folder`)
  if (!existsSync(onnxPath)) fail(`${GENAI_CONFIG} names decoder file ${filename}, which does not exist`)
  return { onnxPath, variant: 'genai' }
}

export function pickOnnxFile(
  root: string,
  wanted: ModelVariant,
  device: 'cpu' | 'cuda',
  fail: (what: string) => never,
): { onnxPath: string; variant: FileVariant } {
  const order = wanted === 'auto' ? AUTO_ORDER[device] : [wanted]
  for (const variant of order) {
    for (const sub of ['onnx', '.']) {
      for (const name of fileNames(variant)) {
        const path = join(root, sub, name)
        if (existsSync(path)) return { onnxPath: path, variant }
      }
    }
  }
  const names = order.flatMap(fileNames).join(', ')
  return fail(`no ONNX file for variant ${wanted} (looked for ${names} in onnx/ and the folder itself)`)
}

function attempt<T>(run: () => T, fail: (what: string) => never): T {
  try {
    return run()
  } catch (error) {
    return fail(errorMessage(error))
  }
}

/** A model folder's JSON file: free-form, so callers check each field they read. */
// biome-ignore lint/suspicious/noExplicitAny: see above
type JsonFile = Record<string, any>

export function readJson(
  root: string,
  name: string,
  fail: (what: string) => never,
  required: boolean,
): JsonFile | undefined {
  const path = join(root, name)
  if (!existsSync(path)) return required ? fail(`missing ${name}`) : undefined
  try {
    const value = JSON.parse(readFileSync(path, 'utf8'))
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(`${name} is not a JSON object`)
    return value
  } catch (error) {
    if (error instanceof ModelFolderError) throw error
    return fail(`${name} is not valid JSON (${errorMessage(error)})`)
  }
}

export function firstNumber(...values: unknown[]): number | undefined {
  for (const v of values) if (typeof v === 'number' && Number.isFinite(v) && v > 0 && v < 1e7) return v
  return undefined
}
