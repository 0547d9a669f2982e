import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { STORIES_DIR } from './paths.ts'

/**
 * The greedy continuation of "Once upon a time" recorded in the model's SOURCE.txt (checked
 * there against llama2.c's run.c): the ground truth for correctness tests.
 */
export function referenceContinuation(): string {
  const source = readFileSync(resolve(STORIES_DIR, 'SOURCE.txt'), 'utf8')
  const marker = source.indexOf('continuation identical to run.c:')
  const start = source.indexOf('"', marker) + 1
  const end = source.indexOf('"', start)
  return source.slice(start, end).replace(/\n\s+/g, ' ').replace(/\\n/g, '\n')
}
