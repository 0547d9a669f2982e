// Cost of streaming detokenization per generated token with the real Llama 3 (128k), Qwen3
// (151k) and Gemma 3 (262k) tokenizers: our IncrementalDecoder against decoding the whole
// sequence at every token (what a streamer that slices the full decode does), interleaved in
// rounds. Writes docs/bench/detokenize.json and docs/bench/detokenize.md.
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import { IncrementalDecoder } from '../../backend/model/incremental-decoder.ts'
import { TextTokenizer } from '../../backend/model/tokenizer.ts'
import { REPO_ROOT } from '../helpers/paths.ts'
import { readTokenizerFiles, TOKENIZER_FAMILIES, vocabularySize } from '../helpers/real-tokenizers.ts'

const SEQUENCE_TOKENS = Number(process.env.DETOKENIZE_TOKENS ?? 2000)
const ROUNDS = 5
const SAMPLE =
  'Streaming text mixes words, code `x += 1;`, emoji 👩‍👩‍👧‍👦🎉👍🏽, CJK 日本語のテキスト、你好世界 龘𠜎, accents é e\u0301 and Hangul 한국어. '

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function incremental(tokenizer: TextTokenizer, ids: number[]): number {
  const started = performance.now()
  const decoder = new IncrementalDecoder(tokenizer, [])
  let text = ''
  for (const id of ids) text += decoder.push(id)
  text += decoder.flush()
  if (text !== tokenizer.decode(ids)) throw new Error('incremental text differs from the full decode')
  return ((performance.now() - started) * 1000) / ids.length
}

function fullDecodeEachToken(tokenizer: TextTokenizer, ids: number[]): number {
  const started = performance.now()
  let emitted = 0
  for (let i = 1; i <= ids.length; i++) {
    const text = tokenizer.decode(ids.slice(0, i))
    if (!text.endsWith('\uFFFD')) emitted = text.length
  }
  if (emitted === 0) throw new Error('nothing decoded')
  return ((performance.now() - started) * 1000) / ids.length
}

const results = []
for (const family of TOKENIZER_FAMILIES) {
  const files = readTokenizerFiles(family)
  const loadStart = performance.now()
  const tokenizer = new TextTokenizer(files.json, files.config)
  const loadMs = performance.now() - loadStart
  const unit = tokenizer.encode(SAMPLE, false)
  const ids = Array.from({ length: SEQUENCE_TOKENS }, (_, i) => unit[i % unit.length])
  const ours: number[] = []
  const baseline: number[] = []
  for (let round = 0; round < ROUNDS; round++) {
    ours.push(incremental(tokenizer, ids))
    // The baseline is quadratic: measure it on the first quarter only and report per token.
    baseline.push(fullDecodeEachToken(tokenizer, ids.slice(0, Math.floor(SEQUENCE_TOKENS / 4))))
  }
  const row = {
    family,
    vocabulary: vocabularySize(files.json),
    loadMs: Math.round(loadMs),
    tokens: SEQUENCE_TOKENS,
    oursUsPerToken: median(ours),
    baselineUsPerToken: median(baseline),
    baselineTokens: Math.floor(SEQUENCE_TOKENS / 4),
    ours,
    baseline,
  }
  results.push(row)
  console.log(
    `${family}: ours ${row.oursUsPerToken.toFixed(1)} µs/token over ${SEQUENCE_TOKENS} tokens; full decode per token ${row.baselineUsPerToken.toFixed(1)} µs/token over ${row.baselineTokens} (${(row.baselineUsPerToken / row.oursUsPerToken).toFixed(1)}x)`,
  )
}

const out = join(REPO_ROOT, 'docs/bench')
mkdirSync(out, { recursive: true })
const machine = { node: process.version, cpus: cpus().length, cpu: cpus()[0]?.model, date: new Date().toISOString() }
writeFileSync(join(out, 'detokenize.json'), `${JSON.stringify({ machine, rounds: ROUNDS, results }, null, 1)}\n`)
const lines = [
  '# Streaming detokenization cost per token',
  '',
  `\`npm run bench:detokenize\` (${machine.date}, Node ${machine.node}, ${machine.cpus} cores, shared machine; medians of ${ROUNDS} interleaved rounds).`,
  '',
  '| tokenizer | vocabulary | ours (µs/token) | full decode each token (µs/token) | ratio | TextTokenizer construction (ms) |',
  '|---|---|---|---|---|---|',
  ...results.map(
    (r) =>
      `| ${r.family} | ${r.vocabulary.toLocaleString('en-US')} | ${r.oursUsPerToken.toFixed(1)} over ${r.tokens} tokens | ${r.baselineUsPerToken.toFixed(1)} over ${r.baselineTokens} tokens | ${(r.baselineUsPerToken / r.oursUsPerToken).toFixed(1)}x | ${r.loadMs} |`,
  ),
  '',
]
writeFileSync(join(out, 'detokenize.md'), lines.join('\n'))
