import { createHash } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { basename, join, resolve } from 'node:path'
import { errorMessage } from '../../lib/error-message.ts'
import { firstNumber, ModelFolderError, type ModelVariant, pickOnnxFile, readJson } from '../model/folder.ts'

/** Encoder architectures (transformers model_type) served by the encoder engine. */
export const ENCODER_MODEL_TYPES = [
  'bert',
  'distilbert',
  'roberta',
  'xlm-roberta',
  'mpnet',
  'camembert',
  'electra',
  'albert',
  'deberta',
  'deberta-v2',
  'nomic_bert',
  'new',
] as const

export type Pooling = 'mean' | 'cls' | 'lasttoken' | 'max'
export type EncoderTask = 'feature-extraction' | 'text-classification'

/** Without sentence-transformers files: mean pooling over real tokens, then L2 normalisation. */
export const DEFAULT_POOLING: Pooling = 'mean'
export const DEFAULT_NORMALIZE = true

export interface EncoderFolder {
  id: string
  dir: string
  onnxPath: string
  variant: Exclude<ModelVariant, 'auto'>
  modelType: string
  task: EncoderTask
  /** Longest input in tokens, special tokens included. */
  maxLength: number
  pooling: Pooling
  normalize: boolean
  vocabSize: number
  padTokenId: number
  /** Classification labels by class index (text-classification). */
  labels: string[]
  randomWeights: boolean
  /** Short hash of config.json, reported as /predict's model_version. */
  version: string
  tokenizerJson: Record<string, unknown>
  tokenizerConfig: Record<string, unknown>
}

/** True when the folder's config.json names an encoder architecture (model_type or architectures). */
export function isEncoderFolder(dir: string): boolean {
  const path = join(resolve(dir), 'config.json')
  if (!existsSync(path)) return false
  try {
    const config = JSON.parse(readFileSync(path, 'utf8'))
    const architectures: string[] = Array.isArray(config.architectures) ? config.architectures.map(String) : []
    return (
      (ENCODER_MODEL_TYPES as readonly string[]).includes(String(config.model_type)) ||
      architectures.some((a) => /(Bert|Roberta|MPNet|Electra)(Model|ForSequenceClassification)$/.test(a))
    )
  } catch {
    return false
  }
}

/** Reads an encoder folder in the Optimum / transformers.js layout, with sentence-transformers files when present. */
export function loadEncoderFolder(dir: string, options: { id?: string; variant?: ModelVariant } = {}): EncoderFolder {
  const root = resolve(dir)
  const fail = (what: string): never => {
    throw new ModelFolderError(`model folder ${root}: ${what}`)
  }
  const config = readJson(root, 'config.json', fail, true)!
  const tokenizerJson = readJson(root, 'tokenizer.json', fail, true)!
  const tokenizerConfig = readJson(root, 'tokenizer_config.json', fail, false) ?? {}
  const sentenceConfig = readJson(root, 'sentence_bert_config.json', fail, false) ?? {}

  const architectures: string[] = Array.isArray(config.architectures) ? config.architectures.map(String) : []
  const id2label =
    config.id2label && typeof config.id2label === 'object' ? (config.id2label as Record<string, unknown>) : undefined
  const classifies = architectures.some((a) => a.endsWith('ForSequenceClassification'))
  const labels = classifies ? labelsOf(id2label, fail) : []
  // RoBERTa-family position tables start after the padding index (2 rows are never used for tokens).
  const positions = firstNumber(config.max_position_embeddings)
  const positionOffset = ['roberta', 'xlm-roberta', 'camembert', 'mpnet'].includes(String(config.model_type)) ? 2 : 0
  const limits = [
    sentenceConfig.max_seq_length,
    tokenizerConfig.model_max_length,
    positions && positions - positionOffset,
  ].filter((v): v is number => firstNumber(v) !== undefined)
  if (limits.length === 0) fail('config.json gives no maximum length (max_position_embeddings)')
  const { pooling, normalize } = sentenceTransformersModules(root, fail)

  const { onnxPath, variant } = pickOnnxFile(root, options.variant ?? 'auto', 'cpu', fail)
  return {
    id: options.id ?? basename(root),
    dir: root,
    onnxPath,
    variant,
    modelType: String(config.model_type ?? ''),
    task: classifies ? 'text-classification' : 'feature-extraction',
    maxLength: Math.min(...limits),
    padTokenId: Number.isInteger(config.pad_token_id) && config.pad_token_id >= 0 ? config.pad_token_id : 0,
    vocabSize:
      firstNumber(config.vocab_size) ?? Object.keys((tokenizerJson.model as { vocab?: object })?.vocab ?? {}).length,
    pooling,
    normalize,
    labels,
    randomWeights: config.switchyard_random_weights === true,
    version: configVersion(root),
    tokenizerJson,
    tokenizerConfig,
  }
}

const versions = new Map<string, string>()

/** A model folder's version: a short hash of its config.json (read once per folder). */
export function configVersion(dir: string): string {
  let version = versions.get(dir)
  if (!version) {
    version = createHash('sha256')
      .update(readFileSync(join(dir, 'config.json')))
      .digest('hex')
      .slice(0, 12)
    versions.set(dir, version)
  }
  return version
}

function labelsOf(id2label: Record<string, unknown> | undefined, fail: (what: string) => never): string[] {
  if (!id2label) return fail('a ForSequenceClassification model needs id2label in config.json')
  const labels: string[] = []
  for (const [index, label] of Object.entries(id2label)) {
    const i = Number(index)
    if (!Number.isInteger(i) || i < 0 || i >= Object.keys(id2label).length)
      fail(`id2label has a bad class index "${index}"`)
    labels[i] = String(label)
  }
  return labels
}

/**
 * Pooling and normalisation from modules.json / 1_Pooling/config.json (sentence-transformers).
 * Without modules.json: DEFAULT_POOLING and DEFAULT_NORMALIZE.
 */
function sentenceTransformersModules(
  root: string,
  fail: (what: string) => never,
): { pooling: Pooling; normalize: boolean } {
  if (!existsSync(join(root, 'modules.json'))) return { pooling: DEFAULT_POOLING, normalize: DEFAULT_NORMALIZE }
  let modules: { type?: string; path?: string }[]
  try {
    modules = JSON.parse(readFileSync(join(root, 'modules.json'), 'utf8'))
    if (!Array.isArray(modules)) throw new Error('not a list')
  } catch (error) {
    return fail(`modules.json is not a list of modules (${errorMessage(error)})`)
  }
  const normalize = modules.some((m) => String(m.type).endsWith('.Normalize'))
  const poolingModule = modules.find((m) => String(m.type).endsWith('.Pooling'))
  if (!poolingModule) return { pooling: DEFAULT_POOLING, normalize }
  const config = readJson(join(root, poolingModule.path ?? ''), 'config.json', fail, true)!
  const modes: [string, Pooling][] = [
    ['pooling_mode_cls_token', 'cls'],
    ['pooling_mode_lasttoken', 'lasttoken'],
    ['pooling_mode_max_tokens', 'max'],
    ['pooling_mode_mean_tokens', 'mean'],
  ]
  const chosen = modes.filter(([key]) => config[key] === true).map(([, mode]) => mode)
  if (chosen.length !== 1)
    fail(
      `${poolingModule.path}/config.json must enable exactly one of ${modes.map(([k]) => k).join(', ')} (this server does not concatenate poolings)`,
    )
  return { pooling: chosen[0], normalize }
}
