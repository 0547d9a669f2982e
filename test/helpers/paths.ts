import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
/** The real trained model every test runs on (never copied into the repo). */
export const STORIES_DIR = resolve(REPO_ROOT, '../shared/models/stories260K')
export const STORIES_ONNX = resolve(STORIES_DIR, 'onnx/model.onnx')
