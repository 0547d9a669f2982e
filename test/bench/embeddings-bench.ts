import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, release } from 'node:os'
import { basename, dirname, relative, resolve } from 'node:path'
import { env, pipeline } from '@huggingface/transformers'
import { loadBackendConfig } from '../../backend/config.ts'
import { EncoderEngine } from '../../backend/encoder/encoder-engine.ts'
import { loadEncoderFolder } from '../../backend/encoder/folder.ts'
import { runnerOptionsOf } from '../../backend/encoder/runner.ts'
import { EncoderTokenizer } from '../../backend/encoder/served.ts'
import { buildRandomEncoder } from '../../backend/model/builder/build-encoder.ts'
import { REPO_ROOT } from '../helpers/paths.ts'
import { transformersVersions } from './transformers-baseline.ts'

/**
 * npm run bench:embeddings — embeddings per second of Switchyard's encoder engine (worker thread,
 * dynamic batching, tokenization on the caller's thread included) against transformers.js's
 * `feature-extraction` pipeline (mean pooling, normalize) on the same MiniLM-L6-shaped random
 * model folder, the same onnxruntime-node and intra-op thread count, in one process. At each
 * concurrency c, c clients each send requests one after another until the run's embeddings are
 * done; the two sides alternate run by run so that outside load hits both alike. Both sides'
 * vectors are compared first (cosine ≥ 0.9999) so the two compute the same thing.
 *
 * Env: BENCH_THREADS (default 1), BENCH_REPEAT (runs per point, median; default 3),
 * BENCH_QUICK=1 (one run, fewer embeddings: a few minutes on a busy 2-core machine),
 * BENCH_LEVELS (default 1,16,64), BENCH_LENGTHS (tokens per input, default 16,256),
 * BENCH_OUT (default docs/bench); the batcher takes ENCODER_BATCH_WINDOW_MS, ENCODER_MAX_BATCH_TOKENS
 * and ENCODER_MAX_BATCH_SIZE as a backend node does (backend/config.ts).
 */
const THREADS = Number(process.env.BENCH_THREADS ?? 1)
const QUICK = process.env.BENCH_QUICK === '1'
const REPEAT = Number(process.env.BENCH_REPEAT ?? (QUICK ? 1 : 3))
const LEVELS = (process.env.BENCH_LEVELS ?? '1,16,64').split(',').map(Number)
const LENGTHS = (process.env.BENCH_LENGTHS ?? '16,256').split(',').map(Number)
const OUT = resolve(REPO_ROOT, process.env.BENCH_OUT ?? 'docs/bench')
const MODEL_DIR = resolve(REPO_ROOT, 'models/bench-minilm-l6')
/** The batcher's settings as a backend node would read them (ENCODER_* variables, else their defaults). */
const CONFIG = loadBackendConfig()
const BATCHING = {
  windowMs: CONFIG.ENCODER_BATCH_WINDOW_MS,
  maxBatchTokens: CONFIG.ENCODER_MAX_BATCH_TOKENS,
  maxBatchSize: CONFIG.ENCODER_MAX_BATCH_SIZE,
}
const TARGET_AT_16 = 3
/** Embeddings per run at least (more when the concurrency is higher): enough work to time, little enough for a shared machine. */
const baseEmbeddings = (tokens: number) => Math.max(4, Math.round((tokens <= 32 ? 128 : 24) * (QUICK ? 0.5 : 1)))

for (const [name, values] of Object.entries({
  BENCH_THREADS: [THREADS],
  BENCH_REPEAT: [REPEAT],
  BENCH_LEVELS: LEVELS,
  BENCH_LENGTHS: LENGTHS,
})) {
  if (values.some((v) => !Number.isInteger(v) || v < 1)) throw new Error(`${name} must be positive integers`)
}

type Side = 'switchyard' | 'transformers.js'
type Embed = (text: string) => Promise<Float32Array>

/** Texts of exactly `tokens` tokens with [CLS] and [SEP] (one vocabulary word per token), all different. */
function textsOf(tokenizer: EncoderTokenizer, tokens: number, count: number): string[] {
  const words = 'the of and to in is it you that he was for on are with as his they be at one have this from'.split(' ')
  const texts = Array.from({ length: count }, (_, i) =>
    Array.from({ length: tokens - 2 }, (_, j) => words[(i * 7 + j * (1 + (i % 5))) % words.length]).join(' '),
  )
  for (const text of texts.slice(0, 3))
    if (tokenizer.encode(text, 512).length !== tokens)
      throw new Error(`a ${tokens}-token bench text has ${tokenizer.encode(text, 512).length} tokens`)
  return texts
}

/** c clients, each sending its share of `texts` one request at a time; returns embeddings/s. */
async function measure(embed: Embed, texts: string[], concurrency: number): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < texts.length) {
        const vector = await embed(texts[next++])
        if (vector.length !== 384) throw new Error(`an embedding has ${vector.length} values, expected 384`)
      }
    }),
  )
  return texts.length / ((performance.now() - started) / 1000)
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const cosine = (a: Float32Array, b: Float32Array) =>
  a.reduce((s, v, i) => s + v * b[i], 0) / Math.hypot(...a) / Math.hypot(...b)

async function main(): Promise<void> {
  if (!existsSync(resolve(MODEL_DIR, 'onnx/model.onnx'))) {
    console.log(`building ${relative(REPO_ROOT, MODEL_DIR)} (minilm-l6, random weights)...`)
    await buildRandomEncoder({ dir: MODEL_DIR, preset: 'minilm-l6', force: true })
  }
  const folder = loadEncoderFolder(MODEL_DIR)
  const tokenizer = new EncoderTokenizer(folder)
  const execution = { device: 'cpu' as const, cudaDeviceId: 0, cpuThreads: THREADS, graphOptimization: 'all' as const }
  const engine = await EncoderEngine.start({
    onnxPath: folder.onnxPath,
    execution,
    runner: runnerOptionsOf(folder),
    batching: BATCHING,
    stallTimeoutMs: CONFIG.ENGINE_STALL_TIMEOUT_MS,
  })
  const ours: Embed = (text) => engine.encode(tokenizer.encode(text, folder.maxLength))

  env.allowRemoteModels = false
  env.allowLocalModels = true
  env.localModelPath = `${dirname(MODEL_DIR)}/`
  const extractor = await pipeline('feature-extraction', basename(MODEL_DIR), {
    device: 'cpu',
    dtype: 'fp32',
    session_options: { intraOpNumThreads: THREADS, interOpNumThreads: 1 },
  } as never)
  const theirs: Embed = async (text) =>
    (await extractor(text, { pooling: 'mean', normalize: true })).data as Float32Array
  const sides: Record<Side, Embed> = { switchyard: ours, 'transformers.js': theirs }

  // Same files, same pooling: the two must agree before their speeds mean anything.
  for (const text of ['hello world', textsOf(tokenizer, 256, 1)[0]]) {
    const similarity = cosine(await ours(text), await theirs(text))
    if (!(similarity > 0.9999))
      throw new Error(`the two sides disagree on "${text.slice(0, 40)}": cosine ${similarity}`)
  }

  const points: { tokens: number; concurrency: number; embeddings: number; runs: Record<Side, number[]> }[] = []
  for (const tokens of LENGTHS) {
    for (const concurrency of LEVELS) {
      const texts = textsOf(tokenizer, tokens, Math.max(concurrency, baseEmbeddings(tokens)))
      await measure(ours, texts.slice(0, concurrency), concurrency) // warm-up at this shape
      await measure(theirs, texts.slice(0, concurrency), concurrency)
      const runs: Record<Side, number[]> = { switchyard: [], 'transformers.js': [] }
      for (let r = 0; r < REPEAT; r++) {
        const order: Side[] = r % 2 === 0 ? ['switchyard', 'transformers.js'] : ['transformers.js', 'switchyard']
        for (const side of order) runs[side].push(await measure(sides[side], texts, concurrency))
      }
      points.push({ tokens, concurrency, embeddings: texts.length, runs })
      console.log(
        `${tokens} tokens × ${concurrency} concurrent: ours ${median(runs.switchyard).toFixed(1)}/s, transformers.js ${median(runs['transformers.js']).toFixed(1)}/s, ratio ${(median(runs.switchyard) / median(runs['transformers.js'])).toFixed(2)}`,
      )
    }
  }
  await engine.close()
  await extractor.dispose()
  report(points)
}

function report(
  points: { tokens: number; concurrency: number; embeddings: number; runs: Record<Side, number[]> }[],
): void {
  const command = `${Object.entries({
    BENCH_THREADS: process.env.BENCH_THREADS,
    BENCH_REPEAT: process.env.BENCH_REPEAT,
    BENCH_QUICK: process.env.BENCH_QUICK,
    BENCH_LEVELS: process.env.BENCH_LEVELS,
    BENCH_LENGTHS: process.env.BENCH_LENGTHS,
    ENCODER_BATCH_WINDOW_MS: process.env.ENCODER_BATCH_WINDOW_MS,
    ENCODER_MAX_BATCH_TOKENS: process.env.ENCODER_MAX_BATCH_TOKENS,
    ENCODER_MAX_BATCH_SIZE: process.env.ENCODER_MAX_BATCH_SIZE,
  })
    .filter(([, v]) => v)
    .map(([k, v]) => `${k}=${v} `)
    .join('')}npm run bench:embeddings`
  const machine = {
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    kernel: release(),
    loadavg: loadavg(),
    node: process.version,
    ...transformersVersions(),
  }
  const rows = points.map((p) => {
    const ours = median(p.runs.switchyard)
    const theirs = median(p.runs['transformers.js'])
    return { ...p, ours, theirs, ratio: ours / theirs }
  })
  const at16 = rows.filter((r) => r.concurrency === 16)
  mkdirSync(OUT, { recursive: true })
  writeFileSync(
    resolve(OUT, 'embeddings.json'),
    `${JSON.stringify({ date: new Date().toISOString(), command, threads: THREADS, repeat: REPEAT, quick: QUICK, machine, targetAt16: TARGET_AT_16, rows }, null, 2)}\n`,
  )
  const table = rows
    .map(
      (r) =>
        `| ${r.tokens} | ${r.concurrency} | ${r.embeddings} | ${r.ours.toFixed(1)} | ${r.theirs.toFixed(1)} | ${r.ratio.toFixed(2)}x |`,
    )
    .join('\n')
  const verdict = at16
    .map(
      (r) =>
        `${r.tokens} tokens: ${r.ratio.toFixed(2)}x (${r.ratio >= TARGET_AT_16 ? 'meets' : 'misses'} the ${TARGET_AT_16}x target)`,
    )
    .join('; ')
  const md = `# Embeddings benchmark

\`${command}\` (${new Date().toISOString()}; ${THREADS} intra-op thread(s), median of ${REPEAT} run(s) per point;
load average at the end ${machine.loadavg.map((l) => l.toFixed(2)).join(' ')} on ${machine.cpus} cores shared with other work).

Model: \`models/bench-minilm-l6\`, built by \`backend/model/builder\` (preset \`minilm-l6\`: hidden 384, 6 layers,
12 heads, intermediate 1536, vocabulary 30,522; random weights), the same folder for both sides.
Ours: \`EncoderEngine\` (worker thread, dynamic batching, window ${BATCHING.windowMs} ms, budget ${BATCHING.maxBatchTokens} padded tokens,
${BATCHING.maxBatchSize} rows), tokenization on the calling thread included. transformers.js ${machine.transformers}:
\`pipeline('feature-extraction')\` with \`{pooling: 'mean', normalize: true}\`, onnxruntime-node
${machine.onnxruntimeNode} for both. Both sides' vectors agree (cosine > 0.9999) before timing.

| tokens per input | concurrent requests | embeddings per run | ours (embeddings/s) | transformers.js (embeddings/s) | ours / transformers.js |
|---|---|---|---|---|---|
${table}

At 16 concurrent requests: ${verdict || 'not measured'}.
Raw runs and the machine: \`docs/bench/embeddings.json\`.
`
  writeFileSync(resolve(OUT, 'embeddings.md'), md)
  console.log(md)
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
