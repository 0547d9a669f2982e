// Builds a random-weight Llama model folder.
//   npx tsx backend/model/builder/cli.ts --preset tiny|15m|100m --out DIR [--seed N] [--force]
//   explicit sizes override the preset: --hidden 288 --layers 6 --heads 6 --kv-heads 2
//   --intermediate 768 --vocab 512 --context 512
import { parseArgs } from 'node:util'
import { PRESETS, buildRandomLlama, type ModelSize, type PresetName } from './build-model.ts'
import { parseInteger, sizeFromFlags } from './cli-flags.ts'

const SIZE_FLAGS: Record<string, keyof ModelSize> = {
  hidden: 'hiddenSize',
  layers: 'numLayers',
  heads: 'numHeads',
  'kv-heads': 'numKvHeads',
  intermediate: 'intermediateSize',
  vocab: 'vocabSize',
  context: 'contextLength',
}

const USAGE =
  'usage: cli.ts --preset tiny|15m|100m --out DIR [--seed N] [--force] [--external-data] ' +
  Object.keys(SIZE_FLAGS).map((flag) => `[--${flag} N]`).join(' ')


async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string', default: 'tiny' },
      out: { type: 'string' },
      seed: { type: 'string', default: '0' },
      force: { type: 'boolean', default: false },
      'external-data': { type: 'boolean' },
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

  const size = sizeFromFlags<ModelSize>(SIZE_FLAGS, values)

  const { dir, parameters } = await buildRandomLlama({
    dir: values.out,
    preset: values.preset as PresetName,
    size,
    seed: parseInteger('seed', values.seed!),
    force: values.force,
    externalData: values['external-data'],
  })
  console.log(`${dir}: ${parameters.toLocaleString('en-US')} parameters (random weights)`)
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
})
