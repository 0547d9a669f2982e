import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildRandomEncoder } from '../../backend/model/builder/build-encoder.ts'
import { buildRandomLlama } from '../../backend/model/builder/build-model.ts'

/** Labels of the test classifier (`sentiment`). */
export const SENTIMENT_LABELS = ['NEGATIVE', 'POSITIVE']

/**
 * A MODEL_DIR with three builder-made models: `embed` (tiny BERT-style embedding model with
 * sentence-transformers files, 64 dimensions), `sentiment` (classification head, no
 * token_type_ids) and `gen` (tiny random Llama, for /predict's text-generation).
 */
export async function buildEncoderModelDir(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-encoders-'))
  await buildRandomEncoder({ dir: join(dir, 'embed'), seed: 1 })
  await buildRandomEncoder({ dir: join(dir, 'sentiment'), seed: 2, labels: SENTIMENT_LABELS, tokenTypes: false })
  await buildRandomLlama({ dir: join(dir, 'gen'), seed: 3 })
  return dir
}
