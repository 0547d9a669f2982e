// Builds a random-weight Llama model folder.
//   npx tsx backend/model/builder/cli.ts --preset tiny|15m|100m|smollm2-135m|llama-3.2-1b --out DIR
//     [--seed N] [--force] [--style optimum|genai] [--weights fp32|fp16|q4|int8|uint8]
//     [--untied] [--model-type NAME] [--no-hf-config] [--no-position-ids] [--position-ids] [--merged]
//     [--external-data] [--shard-mb N]
//   explicit sizes override the preset: --hidden 288 --layers 6 --heads 6 --kv-heads 2
//   --head-dim 64 --intermediate 768 --vocab 512 --context 512
import { parseArgs } from 'node:util'
import { buildRandomLlama, type ModelSize, PRESETS, type PresetName } from './build-model.ts'
import { parseInteger, sizeFromFlags } from './cli-flags.ts'
import type { GraphStyle } from './llama-graph.ts'
import { WEIGHT_FORMATS, type WeightFormat } from './quantize.ts'

const SIZE_FLAGS: Record<string, keyof ModelSize> = {
  hidden: 'hiddenSize',
  layers: 'numLayers',
  heads: 'numHeads',
  'kv-heads': 'numKvHeads',
  'head-dim': 'headDim',
  intermediate: 'intermediateSize',
  vocab: 'vocabSize',
  context: 'contextLength',
}

const STYLES: readonly GraphStyle[] = ['optimum', 'genai']

const USAGE =
  `usage: cli.ts --preset ${Object.keys(PRESETS).join('|')} --out DIR [--seed N] [--force] [--style ${STYLES.join('|')}] ` +
  `[--weights ${WEIGHT_FORMATS.join('|')}] [--untied] [--model-type NAME] [--no-hf-config] [--no-position-ids] [--position-ids] [--merged] [--external-data] [--shard-mb N] ` +
  Object.keys(SIZE_FLAGS)
    .map((flag) => `[--${flag} N]`)
    .join(' ')

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string', default: 'tiny' },
      out: { type: 'string' },
      seed: { type: 'string', default: '0' },
      force: { type: 'boolean', default: false },
      'external-data': { type: 'boolean' },
      'shard-mb': { type: 'string' },
      style: { type: 'string', default: 'optimum' },
      weights: { type: 'string', default: 'fp32' },
      untied: { type: 'boolean', default: false },
      'model-type': { type: 'string', default: 'llama' },
      'no-hf-config': { type: 'boolean', default: false },
      'no-position-ids': { type: 'boolean', default: false },
      'position-ids': { type: 'boolean', default: false },
      merged: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
      ...Object.fromEntries(Object.keys(SIZE_FLAGS).map((flag) => [flag, { type: 'string' as const }])),
    },
    strict: true,
  })
  if (values.help) {
    console.log(USAGE)
    return
  }
  if (!values.out) throw new Error(`--out is required\n${USAGE}`)
  if (!(values.preset! in PRESETS)) throw new Error(`unknown preset "${values.preset}"\n${USAGE}`)
  if (!STYLES.includes(values.style as GraphStyle)) throw new Error(`unknown style "${values.style}"\n${USAGE}`)
  if (!WEIGHT_FORMATS.includes(values.weights as WeightFormat))
    throw new Error(`unknown weights "${values.weights}"\n${USAGE}`)

  const size = sizeFromFlags<ModelSize>(SIZE_FLAGS, values)

  const { dir, parameters } = await buildRandomLlama({
    dir: values.out,
    preset: values.preset as PresetName,
    size,
    seed: parseInteger('seed', values.seed!),
    force: values.force,
    externalData: values['external-data'],
    shardBytes:
      values['shard-mb'] === undefined ? undefined : parseInteger('shard-mb', values['shard-mb']) * 1024 * 1024,
    style: values.style as GraphStyle,
    weights: values.weights as WeightFormat,
    tieWordEmbeddings: !values.untied,
    modelType: values['model-type'],
    hfConfig: !values['no-hf-config'],
    // Optimum: on unless --no-position-ids; genai: off (rotary inside the op) unless --position-ids.
    positionIds: values['no-position-ids'] ? false : values['position-ids'] ? true : undefined,
    merged: values.merged,
  })
  console.log(`${dir}: ${parameters.toLocaleString('en-US')} parameters (random weights)`)
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
})
