import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'

/** Which ONNX file of a model folder to load. */
export type ModelVariant = 'auto' | 'fp32' | 'fp16' | 'quantized'

/** Architectures whose exports use the decoder layout the runner drives (past_key_values.N.*). */
export const SUPPORTED_MODEL_TYPES = ['llama', 'mistral', 'qwen2', 'gpt2'] as const

export interface ModelFolder {
  id: string
  dir: string
  onnxPath: string
  variant: Exclude<ModelVariant, 'auto'>
  modelType: string
  contextLength: number
  eosTokenIds: number[]
  /** Set by Switchyard's model builder: the weights are seeded noise, not a trained model. */
  randomWeights: boolean
  tokenizerJson: Record<string, unknown>
  tokenizerConfig: Record<string, unknown>
}

/** A model folder that cannot be served; the message names what is wrong and where. */
export class ModelFolderError extends Error {
  override name = 'ModelFolderError'
}

const FILE_NAMES: Record<Exclude<ModelVariant, 'auto'>, string[]> = {
  fp32: ['model.onnx', 'decoder_model_merged.onnx'],
  fp16: ['model_fp16.onnx', 'decoder_model_merged_fp16.onnx'],
  quantized: ['model_quantized.onnx', 'decoder_model_merged_quantized.onnx'],
}

/** Lists the model folders under `dir`: the folder itself if it holds a model, else its children that do. */
export function findModelFolders(dir: string): string[] {
  const root = resolve(dir)
  if (!existsSync(root) || !statSync(root).isDirectory()) throw new ModelFolderError(`MODEL_DIR ${root}: no such folder`)
  if (existsSync(join(root, 'config.json'))) return [root]
  const children = readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(root, e.name, 'config.json')))
    .map((e) => join(root, e.name))
    .sort()
  if (children.length === 0) throw new ModelFolderError(`MODEL_DIR ${root}: no config.json in it or in any subfolder`)
  return children
}

export function loadModelFolder(dir: string, options: { id?: string; variant?: ModelVariant; preferFp16?: boolean } = {}): ModelFolder {
  const root = resolve(dir)
  const fail = (what: string): never => {
    throw new ModelFolderError(`model folder ${root}: ${what}`)
  }
  const config = readJson(root, 'config.json', fail, true)!
  const generation = readJson(root, 'generation_config.json', fail, false) ?? {}
  const tokenizerJson = readJson(root, 'tokenizer.json', fail, true)!
  const tokenizerConfig = readJson(root, 'tokenizer_config.json', fail, false) ?? {}

  const modelType = String(config.model_type ?? '')
  if (!(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)) {
    fail(`unsupported architecture model_type "${modelType}" (supported: ${SUPPORTED_MODEL_TYPES.join(', ')})`)
  }
  const contextLength = firstNumber(config.max_position_embeddings, config.n_positions, config.n_ctx, generation.max_length, tokenizerConfig.model_max_length)
  if (!contextLength || contextLength < 2) fail('config.json gives no context length (max_position_embeddings or n_positions)')

  const eos = generation.eos_token_id ?? config.eos_token_id
  const eosTokenIds = (Array.isArray(eos) ? eos : eos === undefined || eos === null ? [] : [eos]).map(Number)
  if (eosTokenIds.some((t) => !Number.isInteger(t) || t < 0)) fail('eos_token_id must be a token id or a list of them')

  const { onnxPath, variant } = pickOnnxFile(root, options.variant ?? 'auto', options.preferFp16 ?? false, fail)
  return {
    id: options.id ?? basename(root),
    dir: root,
    onnxPath,
    variant,
    modelType,
    contextLength: contextLength!,
    eosTokenIds,
    randomWeights: config.switchyard_random_weights === true,
    tokenizerJson,
    tokenizerConfig,
  }
}

export function pickOnnxFile(root: string, wanted: ModelVariant, preferFp16: boolean, fail: (what: string) => never) {
  const order: Exclude<ModelVariant, 'auto'>[] =
    wanted !== 'auto' ? [wanted] : preferFp16 ? ['fp16', 'fp32', 'quantized'] : ['fp32', 'quantized', 'fp16']
  for (const variant of order) {
    for (const sub of ['onnx', '.']) {
      for (const name of FILE_NAMES[variant]) {
        const path = join(root, sub, name)
        if (existsSync(path)) return { onnxPath: path, variant }
      }
    }
  }
  const names = order.flatMap((v) => FILE_NAMES[v]).join(', ')
  return fail(`no ONNX file for variant ${wanted} (looked for ${names} in onnx/ and the folder itself)`)
}

export function readJson(root: string, name: string, fail: (what: string) => never, required: boolean): Record<string, any> | undefined {
  const path = join(root, name)
  if (!existsSync(path)) return required ? fail(`missing ${name}`) : undefined
  try {
    const value = JSON.parse(readFileSync(path, 'utf8'))
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return fail(`${name} is not a JSON object`)
    return value
  } catch (error) {
    return fail(`${name} is not valid JSON (${(error as Error).message})`)
  }
}

export function firstNumber(...values: unknown[]): number | undefined {
  for (const v of values) if (typeof v === 'number' && Number.isFinite(v) && v > 0 && v < 1e7) return v
  return undefined
}
