// Builds a random-weight BERT-style encoder folder (embeddings, or classification with --labels).
//   npx tsx backend/model/builder/encoder-cli.ts --preset tiny-encoder|minilm-l6 --out DIR
//     [--labels NEGATIVE,POSITIVE] [--pooling mean|cls|lasttoken|max] [--no-normalize]
//     [--no-token-types] [--seed N] [--force]
//   explicit sizes override the preset: --hidden 384 --layers 6 --heads 12 --intermediate 1536
//   --vocab 30522 --max-positions 512
import { parseArgs } from 'node:util'
import {
  buildRandomEncoder,
  ENCODER_PRESETS,
  type EncoderPresetName,
  type EncoderSize,
  type Pooling,
} from './build-encoder.ts'
import { parseInteger, sizeFromFlags } from './cli-flags.ts'

const SIZE_FLAGS: Record<string, keyof EncoderSize> = {
  hidden: 'hiddenSize',
  layers: 'numLayers',
  heads: 'numHeads',
  intermediate: 'intermediateSize',
  vocab: 'vocabSize',
  'max-positions': 'maxPositions',
}
const POOLINGS: Pooling[] = ['mean', 'cls', 'lasttoken', 'max']

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      preset: { type: 'string', default: 'tiny-encoder' },
      out: { type: 'string' },
      seed: { type: 'string', default: '0' },
      force: { type: 'boolean', default: false },
      labels: { type: 'string' },
      pooling: { type: 'string', default: 'mean' },
      'no-normalize': { type: 'boolean', default: false },
      'no-token-types': { type: 'boolean', default: false },
      ...Object.fromEntries(Object.keys(SIZE_FLAGS).map((flag) => [flag, { type: 'string' as const }])),
    },
    strict: true,
  })
  if (!values.out) throw new Error('--out is required')
  if (!(values.preset! in ENCODER_PRESETS))
    throw new Error(`unknown preset "${values.preset}" (${Object.keys(ENCODER_PRESETS).join(', ')})`)
  if (!POOLINGS.includes(values.pooling as Pooling)) throw new Error(`--pooling must be one of ${POOLINGS.join(', ')}`)
  const size = sizeFromFlags<EncoderSize>(SIZE_FLAGS, values)
  const { dir, parameters } = await buildRandomEncoder({
    dir: values.out,
    preset: values.preset as EncoderPresetName,
    size,
    seed: parseInteger('seed', values.seed!),
    force: values.force,
    labels: values.labels
      ?.split(',')
      .map((l) => l.trim())
      .filter(Boolean),
    pooling: values.pooling as Pooling,
    normalize: !values['no-normalize'],
    tokenTypes: !values['no-token-types'],
  })
  console.log(`${dir}: ${parameters.toLocaleString('en-US')} parameters (random weights)`)
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
})
