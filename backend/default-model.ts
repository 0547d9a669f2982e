import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

/** Where `npm start` keeps the model it builds when no MODEL_DIR is given (gitignored). */
export const DEFAULT_MODEL_DIR = join(resolve(dirname(fileURLToPath(import.meta.url)), '..'), 'models', 'random-tiny')

/** Builds the default random-weight model once, so a fresh clone can serve with no model at hand. */
export async function ensureDefaultModel(log: (message: string) => void): Promise<string> {
  if (!existsSync(join(DEFAULT_MODEL_DIR, 'config.json'))) {
    log(`no MODEL_DIR set: building a tiny random-weight model into ${DEFAULT_MODEL_DIR}`)
    // Loaded only when needed: serving a real model never pays for the builder.
    const { buildRandomLlama } = await import('./model/builder/build-model.ts')
    await buildRandomLlama({ preset: 'tiny', dir: DEFAULT_MODEL_DIR, seed: 1, force: true })
  }
  return DEFAULT_MODEL_DIR
}
