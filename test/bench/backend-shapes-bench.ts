import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { join, relative, resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import { loadBackendConfig } from '../../backend/config.ts'
import { Engine } from '../../backend/engine/engine.ts'
import { buildRandomLlama, OPTIMUM_FILE_NAMES, type PresetName } from '../../backend/model/builder/build-model.ts'
import type { WeightFormat } from '../../backend/model/builder/quantize.ts'
import { loadModelFolder } from '../../backend/model/folder.ts'
import { halfToFloat, toFloat32 } from '../../backend/model/runner.ts'
import { createRandom } from '../../backend/sampling/prng.ts'
import type { SamplingParams } from '../../backend/sampling/sampler.ts'
import { REPO_ROOT } from '../helpers/paths.ts'
import { type Baseline, loadBaseline, runTransformers } from './transformers-baseline.ts'

/**
 * BENCH_SUITE=shapes npm run bench:backend — issue 14's measurements on random-weight models in
 * the shapes of SmolLM2-135M and Llama-3.2-1B, ours against transformers.js on the same files
 * (one engine and one transformers.js model loaded side by side, measured in interleaved
 * rounds, the side going first alternating):
 * - time to first token at each prompt length (prefill + one LM-head row);
 * - single-stream decode tokens/s (after the first token);
 * - aggregate tokens/s of N concurrent streams;
 * - ours only: inter-token latency of running streams while a long prompt is admitted, with
 *   chunked prefill (MAX_PREFILL_TOKENS = BENCH_CHUNK) and without (one pass).
 *
 * Env (comma lists): BENCH_SHAPES (smollm2-135m,llama-3.2-1b), BENCH_FORMATS (fp32,q4,int8),
 * BENCH_THREADS_LIST (1,2), BENCH_PROMPTS (32,512,1500), BENCH_ROUNDS (2), BENCH_DECODE_TOKENS
 * (32), BENCH_STREAMS (16), BENCH_STREAM_TOKENS (16), BENCH_ITL_STREAMS (8), BENCH_ITL_PROMPT
 * (1500), BENCH_CHUNK (256), BENCH_ITL (1: measure it), BENCH_TTFT_CHUNK (512: TTFT of prompts
 * longer than this also measured with chunked prefill in chunks of this size, against
 * transformers.js again; 0: not), BENCH_CACHE (.cache/bench-models), BENCH_OUT (docs/bench).
 * Models are built once into BENCH_CACHE (outside git).
 */
const list = (name: string, fallback: string) =>
  (process.env[name] ?? fallback)
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
const int = (name: string, fallback: number) => {
  const value = Number(process.env[name] ?? fallback)
  if (!Number.isInteger(value) || value < 0)
    throw new Error(`${name} must be a non-negative integer, got ${process.env[name]}`)
  return value
}
const SHAPES = list('BENCH_SHAPES', 'smollm2-135m') as PresetName[]
const FORMATS = list('BENCH_FORMATS', 'fp32,q4,int8') as WeightFormat[]
const THREADS = list('BENCH_THREADS_LIST', '1,2').map(Number)
const PROMPTS = list('BENCH_PROMPTS', '32,512,1500').map(Number)
const ROUNDS = int('BENCH_ROUNDS', 2)
const DECODE_TOKENS = int('BENCH_DECODE_TOKENS', 32)
const STREAMS = int('BENCH_STREAMS', 16)
const STREAM_TOKENS = int('BENCH_STREAM_TOKENS', 16)
const ITL_STREAMS = int('BENCH_ITL_STREAMS', 8)
const ITL_PROMPT = int('BENCH_ITL_PROMPT', 1500)
const CHUNK = int('BENCH_CHUNK', 256)
const ITL = process.env.BENCH_ITL !== '0'
const TTFT_CHUNK = int('BENCH_TTFT_CHUNK', 512)
const CACHE = resolve(REPO_ROOT, process.env.BENCH_CACHE ?? '.cache/bench-models')
const OUT = resolve(REPO_ROOT, process.env.BENCH_OUT ?? 'docs/bench')
const SHORT_PROMPT = 32
const GREEDY: SamplingParams = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: 0,
  logprobs: -1,
}
const KNOWN_SHAPES = ['smollm2-135m', 'llama-3.2-1b']
for (const s of SHAPES)
  if (!KNOWN_SHAPES.includes(s)) throw new Error(`BENCH_SHAPES: unknown shape ${s} (known: ${KNOWN_SHAPES.join(', ')})`)
for (const f of FORMATS) if (!(f in OPTIMUM_FILE_NAMES)) throw new Error(`BENCH_FORMATS: unknown format ${f}`)

const started = performance.now()
const log = (message: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(5)} s] ${message}`)
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length === 0 ? Number.NaN : sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

function randomPrompt(length: number, vocab: number, seed: number): number[] {
  const random = createRandom(seed)
  return Array.from({ length }, (_, i) => (i === 0 ? 1 : 3 + Math.floor(random() * (vocab - 3))))
}

async function ensureModel(shape: PresetName, format: WeightFormat): Promise<string> {
  const dir = join(CACHE, `${shape}-${format}`)
  const onnx = join(dir, 'onnx', OPTIMUM_FILE_NAMES[format])
  if (existsSync(onnx) && existsSync(join(dir, 'config.json'))) return dir
  log(`building random-weight ${shape} (${format}) into ${relative(REPO_ROOT, dir)}`)
  const built = await buildRandomLlama({
    dir,
    preset: shape,
    weights: format,
    seed: 1,
    force: true,
    tieWordEmbeddings: true,
  })
  log(`built ${built.parameters.toLocaleString('en')} parameters`)
  return dir
}

interface Timed {
  ttftMs: number
  /** Tokens per second after the first token (single stream), or aggregate over all streams. */
  tokensPerSecond: number
}

/** Ours: `streams` greedy sequences of `tokens` tokens; TTFT of the first, decode rate after it. */
function runEngine(engine: Engine, promptIds: number[], streams: number, tokens: number): Promise<Timed> {
  const t0 = performance.now()
  let first = Number.NaN
  let produced = 0
  return new Promise((done, fail) => {
    let finished = 0
    for (let i = 0; i < streams; i++) {
      engine.submit({ promptIds, maxTokens: tokens, sampling: GREEDY, eosTokenIds: [] }, (event) => {
        if (event.token !== undefined) {
          if (Number.isNaN(first)) first = performance.now() - t0
          produced++
        }
        if (event.finish && event.finish !== 'length')
          fail(new Error(`ours ended with ${event.finish}: ${event.message ?? ''}`))
        else if (event.finish && ++finished === streams) {
          const seconds = (performance.now() - t0) / 1000
          if (produced !== streams * tokens) fail(new Error(`ours produced ${produced} of ${streams * tokens} tokens`))
          done({
            ttftMs: first,
            tokensPerSecond: streams === 1 ? (tokens - 1) / (seconds - first / 1000) : produced / seconds,
          })
        }
      })
    }
  })
}

async function runBaseline(baseline: Baseline, promptIds: number[], streams: number, tokens: number): Promise<Timed> {
  const { run } = await runTransformers(baseline, promptIds, streams, tokens)
  const first = Math.min(...run.ttftMs)
  return {
    ttftMs: first,
    tokensPerSecond: streams === 1 ? (tokens - 1) / (run.seconds - first / 1000) : run.tokensPerSecond,
  }
}

/** Both sides, `ROUNDS` times, alternating which goes first. */
async function interleaved(
  label: string,
  ours: () => Promise<Timed>,
  theirs: () => Promise<Timed>,
): Promise<{ ours: Timed[]; transformers: Timed[] }> {
  const result = { ours: [] as Timed[], transformers: [] as Timed[] }
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['ours', 'transformers'] as const) : (['transformers', 'ours'] as const)
    for (const side of order) result[side].push(side === 'ours' ? await ours() : await theirs())
    log(
      `${label} round ${round + 1}: ours ${fmtTimed(result.ours.at(-1)!)}, transformers.js ${fmtTimed(result.transformers.at(-1)!)}`,
    )
  }
  return result
}
const fmtTimed = (t: Timed) => `TTFT ${t.ttftMs.toFixed(0)} ms, ${t.tokensPerSecond.toFixed(1)} tok/s`

interface Comparison {
  ours: number
  transformers: number
  /** ours / transformers.js (TTFT: lower is better; tok/s: higher is better). */
  ratio: number
  oursRuns: number[]
  transformersRuns: number[]
}
const compare = (ours: number[], theirs: number[]): Comparison => ({
  ours: median(ours),
  transformers: median(theirs),
  ratio: median(ours) / median(theirs),
  oursRuns: ours,
  transformersRuns: theirs,
})

interface FormatResult {
  shape: string
  format: WeightFormat
  threads: number
  parameters: number
  gathersLogitRows: boolean
  ttftMs: Record<number, Comparison>
  /** TTFT with chunked prefill (chunks of TTFT_CHUNK), for prompts longer than that. */
  chunkedTtftMs: Record<number, Comparison>
  decodeTokensPerSecond: Comparison
  aggregateTokensPerSecond: Comparison
}

function startEngine(
  onnxPath: string,
  threads: number,
  contextLength: number,
  maxPrefillTokens: number,
): Promise<Engine> {
  return Engine.start({
    onnxPath,
    execution: { device: 'cpu', cudaDeviceId: 0, cpuThreads: threads, graphOptimization: 'all' },
    scheduler: { maxBatchSize: 64, maxTokensInFlight: 1 << 22, maxPrefillTokens, contextLength },
    stallTimeoutMs: loadBackendConfig({}).ENGINE_STALL_TIMEOUT_MS,
  })
}

async function benchFormat(shape: PresetName, format: WeightFormat, threads: number): Promise<FormatResult> {
  const dir = await ensureModel(shape, format)
  const folder = loadModelFolder(dir, { variant: format })
  const onnxPath = join(dir, 'onnx', OPTIMUM_FILE_NAMES[format])
  // One pass for any benchmarked prompt: TTFT measures prefill, not chunking.
  const engine = await startEngine(onnxPath, threads, folder.contextLength, Math.max(2048, ...PROMPTS))
  const baseline = await loadBaseline(dir, threads, format)
  const vocab = engine.info.shape.vocabSize
  log(
    `== ${shape} ${format}, ${threads} thread(s): ours loaded in ${engine.info.loadMs.toFixed(0)} ms, transformers.js in ${baseline.loadMs.toFixed(0)} ms; LM head gathered: ${engine.info.gathersLogitRows}`,
  )
  try {
    const short = randomPrompt(SHORT_PROMPT, vocab, 7)
    // Warm-up: both sides' first runs and JIT.
    await runEngine(engine, short, 1, 8)
    await runBaseline(baseline, short, 1, 8)
    const ttftMs: Record<number, Comparison> = {}
    for (const length of PROMPTS) {
      const prompt = randomPrompt(length, vocab, length)
      const runs = await interleaved(
        `${shape} ${format} t${threads} TTFT @${length}`,
        () => runEngine(engine, prompt, 1, 1),
        () => runBaseline(baseline, prompt, 1, 1),
      )
      ttftMs[length] = compare(
        runs.ours.map((r) => r.ttftMs),
        runs.transformers.map((r) => r.ttftMs),
      )
    }
    const chunkedTtftMs: Record<number, Comparison> = {}
    const long = PROMPTS.filter((p) => TTFT_CHUNK > 0 && p > TTFT_CHUNK)
    if (long.length > 0) {
      const chunked = await startEngine(onnxPath, threads, folder.contextLength, TTFT_CHUNK)
      try {
        await runEngine(chunked, short, 1, 8)
        for (const length of long) {
          const prompt = randomPrompt(length, vocab, length)
          const runs = await interleaved(
            `${shape} ${format} t${threads} TTFT @${length} chunks of ${TTFT_CHUNK}`,
            () => runEngine(chunked, prompt, 1, 1),
            () => runBaseline(baseline, prompt, 1, 1),
          )
          chunkedTtftMs[length] = compare(
            runs.ours.map((r) => r.ttftMs),
            runs.transformers.map((r) => r.ttftMs),
          )
        }
      } finally {
        await chunked.close()
      }
    }
    const decode = await interleaved(
      `${shape} ${format} t${threads} decode ×${DECODE_TOKENS}`,
      () => runEngine(engine, short, 1, DECODE_TOKENS),
      () => runBaseline(baseline, short, 1, DECODE_TOKENS),
    )
    const aggregate = await interleaved(
      `${shape} ${format} t${threads} ${STREAMS} streams ×${STREAM_TOKENS}`,
      () => runEngine(engine, short, STREAMS, STREAM_TOKENS),
      () => runBaseline(baseline, short, STREAMS, STREAM_TOKENS),
    )
    return {
      shape,
      format,
      threads,
      parameters: engine.info.parameters,
      gathersLogitRows: engine.info.gathersLogitRows,
      ttftMs,
      chunkedTtftMs,
      decodeTokensPerSecond: compare(
        decode.ours.map((r) => r.tokensPerSecond),
        decode.transformers.map((r) => r.tokensPerSecond),
      ),
      aggregateTokensPerSecond: compare(
        aggregate.ours.map((r) => r.tokensPerSecond),
        aggregate.transformers.map((r) => r.tokensPerSecond),
      ),
    }
  } finally {
    await engine.close()
    await baseline.dispose()
  }
}

interface ItlResult {
  shape: string
  format: WeightFormat
  threads: number
  streams: number
  promptTokens: number
  chunk: number
  /** Per mode: the running streams' inter-token gaps (ms) from the long prompt's submission to its first token. */
  chunked: ItlStats
  unchunked: ItlStats
}
interface ItlStats {
  p50: number
  p99: number
  max: number
  gaps: number
  longTtftMs: number[]
}

/** `ITL_STREAMS` streams decode; a long prompt arrives; their token gaps until it has its first token. */
async function itlWindow(
  engine: Engine,
  vocab: number,
  contextLength: number,
): Promise<{ gaps: number[]; longTtftMs: number }> {
  const short = randomPrompt(SHORT_PROMPT, vocab, 7)
  const last: number[] = new Array(ITL_STREAMS).fill(0)
  const counts: number[] = new Array(ITL_STREAMS).fill(0)
  const gaps: number[] = []
  let window = false
  const ids: number[] = []
  const ended: Promise<void>[] = []
  for (let i = 0; i < ITL_STREAMS; i++) {
    ended.push(
      new Promise<void>((done) => {
        ids.push(
          engine.submit(
            { promptIds: short, maxTokens: contextLength - SHORT_PROMPT, sampling: GREEDY, eosTokenIds: [] },
            (event) => {
              if (event.token !== undefined) {
                const now = performance.now()
                if (window && counts[i] > 0) gaps.push(now - last[i])
                last[i] = now
                counts[i]++
              }
              if (event.finish) done()
            },
          ),
        )
      }),
    )
  }
  while (counts.some((c) => c < 4)) await new Promise((r) => setTimeout(r, 5))
  window = true
  const t0 = performance.now()
  const longTtftMs = await new Promise<number>((done, fail) =>
    engine.submit(
      { promptIds: randomPrompt(ITL_PROMPT, vocab, 99), maxTokens: 1, sampling: GREEDY, eosTokenIds: [] },
      (event) => {
        if (event.token !== undefined) done(performance.now() - t0)
        else if (event.finish && event.finish !== 'length')
          fail(new Error(`long prompt ended with ${event.finish}: ${event.message ?? ''}`))
      },
    ),
  )
  // One more gap per stream after the long prompt's first token, then stop them.
  const after = counts.map((c) => c + 1)
  while (counts.some((c, i) => c < after[i])) await new Promise((r) => setTimeout(r, 2))
  window = false
  ids.forEach((id) => {
    engine.abort(id)
  })
  await Promise.all(ended)
  return { gaps, longTtftMs }
}

async function benchItl(shape: PresetName, format: WeightFormat, threads: number): Promise<ItlResult> {
  const dir = await ensureModel(shape, format)
  const folder = loadModelFolder(dir, { variant: format })
  const onnxPath = join(dir, 'onnx', OPTIMUM_FILE_NAMES[format])
  const chunked = await startEngine(onnxPath, threads, folder.contextLength, CHUNK)
  const unchunked = await startEngine(onnxPath, threads, folder.contextLength, Math.max(2048, ITL_PROMPT))
  const vocab = chunked.info.shape.vocabSize
  const runs = {
    chunked: [] as { gaps: number[]; longTtftMs: number }[],
    unchunked: [] as { gaps: number[]; longTtftMs: number }[],
  }
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (['chunked', 'unchunked'] as const) : (['unchunked', 'chunked'] as const)
      for (const mode of order) {
        runs[mode].push(await itlWindow(mode === 'chunked' ? chunked : unchunked, vocab, folder.contextLength))
        const r = runs[mode].at(-1)!
        log(
          `${shape} ${format} t${threads} ITL ${mode} round ${round + 1}: ${r.gaps.length} gaps, p99 ${percentile(r.gaps, 99).toFixed(0)} ms, max ${Math.max(...r.gaps).toFixed(0)} ms; long prompt TTFT ${r.longTtftMs.toFixed(0)} ms`,
        )
      }
    }
  } finally {
    await Promise.all([chunked.close(), unchunked.close()])
  }
  const stats = (list: { gaps: number[]; longTtftMs: number }[]): ItlStats => {
    const gaps = list.flatMap((r) => r.gaps)
    return {
      p50: percentile(gaps, 50),
      p99: percentile(gaps, 99),
      max: Math.max(...gaps),
      gaps: gaps.length,
      longTtftMs: list.map((r) => r.longTtftMs),
    }
  }
  return {
    shape,
    format,
    threads,
    streams: ITL_STREAMS,
    promptTokens: ITL_PROMPT,
    chunk: CHUNK,
    chunked: stats(runs.chunked),
    unchunked: stats(runs.unchunked),
  }
}

interface ConversionResult {
  rows: number
  vocab: number
  arithmeticMs: number
  tableMs: number
  oneRowTableMs: number
}

/**
 * fp16 → fp32 logits conversion per step: 16 rows of a 128,256 vocabulary (a batch-16 decode
 * step of a Llama 3 model), by the per-element arithmetic the runner used before and by its
 * lookup table; and one row (what a gathered prefill converts). Medians of 15 runs.
 */
function measureHalfConversion(): ConversionResult {
  const rows = 16
  const vocab = 128_256
  const random = createRandom(3)
  const half = Uint16Array.from({ length: rows * vocab }, () => 0x3000 + Math.floor(random() * 0x1800))
  const time = (fn: () => unknown) =>
    median(
      Array.from({ length: 15 }, () => {
        const t = performance.now()
        fn()
        return performance.now() - t
      }),
    )
  const arithmetic = () => {
    const out = new Float32Array(half.length)
    for (let i = 0; i < half.length; i++) out[i] = halfToFloat(half[i])
    return out
  }
  const tensor = new ort.Tensor('float16', half, [rows, vocab])
  const oneRow = new ort.Tensor('float16', half.subarray(0, vocab), [1, vocab])
  return {
    rows,
    vocab,
    arithmeticMs: time(arithmetic),
    tableMs: time(() => toFloat32(tensor)),
    oneRowTableMs: time(() => toFloat32(oneRow)),
  }
}

const f = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '–')

function markdown(report: {
  command: string
  date: string
  load: { start: number[]; end: number[] }
  conversion: ConversionResult
  results: FormatResult[]
  itl: ItlResult[]
  complete: boolean
  seconds: number
}): string {
  const rows = report.results
  const q4VsFp32 = SHAPES.flatMap((shape) =>
    THREADS.flatMap((threads) => {
      const fp32 = rows.find((r) => r.shape === shape && r.format === 'fp32' && r.threads === threads)
      const q4 = rows.find((r) => r.shape === shape && r.format === 'q4' && r.threads === threads)
      return fp32 && q4
        ? [
            `| ${shape} | ${threads} | ${f(fp32.decodeTokensPerSecond.ours)} | ${f(q4.decodeTokensPerSecond.ours)} | ${f(q4.decodeTokensPerSecond.ours / fp32.decodeTokensPerSecond.ours, 2)}× |`,
          ]
        : []
    }),
  )
  return [
    '# Backend benchmark: model shapes, prefill and chunking (issue 14)',
    '',
    `Command: \`${report.command}\`${report.complete ? '' : ' — **incomplete run**'}; ${report.date}; ${f(report.seconds, 0)} s; load average ${report.load.start.join(' / ')} at start, ${report.load.end.join(' / ')} at end.`,
    '',
    'Random-weight models built by the project builder (tied embeddings, Optimum layout) in the shapes of SmolLM2-135M and Llama-3.2-1B; ' +
      'ours (engine worker, LM head gathered to the sampled rows) and transformers.js load the same file; rounds interleave the two sides, medians shown. ' +
      'TTFT: one prompt of random ids, time to its first generated token. Decode: single stream, tokens/s after the first token. Aggregate: N streams at once. ' +
      "**The machine has 2 cores shared with 7 other engineers' builds and tests (see the load averages): absolute figures are noisy; read the ratios of side-by-side runs.**",
    '',
    '## Time to first token (ms, median; ours / transformers.js, lower is better)',
    '',
    `| shape | format | threads | ${PROMPTS.map((p) => `${p} tokens`).join(' | ')} |`,
    `|---|---|--:|${PROMPTS.map(() => '--:').join('|')}|`,
    ...rows.map(
      (r) =>
        `| ${r.shape} | ${r.format} | ${r.threads} | ${PROMPTS.map((p) => (r.ttftMs[p] ? `${f(r.ttftMs[p].ours, 0)} / ${f(r.ttftMs[p].transformers, 0)} = **${f(r.ttftMs[p].ratio, 2)}×**` : '–')).join(' | ')} |`,
    ),
    '',
    ...(rows.some((r) => Object.keys(r.chunkedTtftMs ?? {}).length > 0)
      ? [
          `### The same with chunked prefill (chunks of ${TTFT_CHUNK}; nothing else running)`,
          '',
          '| shape | format | threads | prompt | ours chunked / transformers.js |',
          '|---|---|--:|--:|--:|',
          ...rows.flatMap((r) =>
            Object.entries(r.chunkedTtftMs ?? {}).map(
              ([p, c]) =>
                `| ${r.shape} | ${r.format} | ${r.threads} | ${p} | ${f(c.ours, 0)} / ${f(c.transformers, 0)} = **${f(c.ratio, 2)}×** |`,
            ),
          ),
          '',
        ]
      : []),
    '## Decode (tokens/s, median; ours / transformers.js, higher is better)',
    '',
    `| shape | format | threads | single stream (${DECODE_TOKENS} tokens) | ${STREAMS} streams × ${STREAM_TOKENS} tokens |`,
    '|---|---|--:|--:|--:|',
    ...rows.map(
      (r) =>
        `| ${r.shape} | ${r.format} | ${r.threads} | ${f(r.decodeTokensPerSecond.ours)} / ${f(r.decodeTokensPerSecond.transformers)} = **${f(r.decodeTokensPerSecond.ratio, 2)}×** | ${f(r.aggregateTokensPerSecond.ours)} / ${f(r.aggregateTokensPerSecond.transformers)} = **${f(r.aggregateTokensPerSecond.ratio, 2)}×** |`,
    ),
    '',
    ...(q4VsFp32.length
      ? [
          '## q4 against our own fp32 (single-stream decode tokens/s)',
          '',
          '| shape | threads | fp32 | q4 | q4 / fp32 |',
          '|---|--:|--:|--:|--:|',
          ...q4VsFp32,
          '',
        ]
      : []),
    ...(report.itl.length
      ? [
          `## Inter-token latency of running streams while a long prompt is admitted (ours)`,
          '',
          "Gaps between consecutive tokens of each running stream from the long prompt's submission until one token after its first token, pooled over rounds.",
          '',
          '| shape | format | threads | streams | prompt | mode | gaps | p50 ms | p99 ms | max ms | long prompt TTFT ms |',
          '|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|',
          ...report.itl.flatMap((r) =>
            (['chunked', 'unchunked'] as const).map(
              (mode) =>
                `| ${r.shape} | ${r.format} | ${r.threads} | ${r.streams} | ${r.promptTokens} | ${mode === 'chunked' ? `chunks of ${r.chunk}` : 'one pass'} | ${r[mode].gaps} | ${f(r[mode].p50, 0)} | ${f(r[mode].p99, 0)} | ${f(r[mode].max, 0)} | ${r[mode].longTtftMs.map((v) => f(v, 0)).join(', ')} |`,
            ),
          ),
          '',
        ]
      : []),
    '## fp16 → fp32 logits conversion (in process, median of 15)',
    '',
    `${report.conversion.rows} rows × ${report.conversion.vocab.toLocaleString('en')} (a batch-${report.conversion.rows} decode step's logits): per-element arithmetic ${f(report.conversion.arithmeticMs)} ms, lookup table ${f(report.conversion.tableMs)} ms; one row (a gathered prefill) ${f(report.conversion.oneRowTableMs, 2)} ms.`,
    '',
    'Raw figures: [backend-shapes.json](backend-shapes.json).',
    '',
  ].join('\n')
}

export async function runShapesBench(): Promise<void> {
  const knobs = Object.keys(process.env)
    .filter((k) => k.startsWith('BENCH_'))
    .sort()
    .map((k) => `${k}=${process.env[k]}`)
  const report = {
    command: [...knobs, 'npm run bench:backend'].join(' '),
    date: new Date().toISOString(),
    load: { start: loadavg().map((v) => +v.toFixed(2)), end: [] as number[] },
    conversion: measureHalfConversion(),
    results: [] as FormatResult[],
    itl: [] as ItlResult[],
    complete: false,
    seconds: 0,
  }
  const write = () => {
    report.seconds = (performance.now() - started) / 1000
    report.load.end = loadavg().map((v) => +v.toFixed(2))
    mkdirSync(OUT, { recursive: true })
    writeFileSync(resolve(OUT, 'backend-shapes.json'), `${JSON.stringify(report, null, 2)}\n`)
    writeFileSync(resolve(OUT, 'backend-shapes.md'), markdown(report))
  }
  log(
    `shapes bench: ${SHAPES.join(', ')} × ${FORMATS.join(', ')} × threads ${THREADS.join(', ')}; prompts ${PROMPTS.join(', ')}; ${ROUNDS} rounds`,
  )
  for (const shape of SHAPES) {
    if (ITL) {
      report.itl.push(await benchItl(shape, FORMATS[0], THREADS[0]))
      write()
    }
    for (const format of FORMATS) {
      for (const threads of THREADS) {
        report.results.push(await benchFormat(shape, format, threads))
        write()
      }
    }
  }
  report.complete = true
  write()
  console.log(`\n${markdown(report)}`)
}
