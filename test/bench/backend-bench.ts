import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, loadavg, release, totalmem } from 'node:os'
import { relative, resolve } from 'node:path'
import { loadBackendConfig } from '../../backend/config.ts'
import { Engine } from '../../backend/engine/engine.ts'
import { buildRandomLlama } from '../../backend/model/builder/build-model.ts'
import { loadModelFolder } from '../../backend/model/folder.ts'
import { TextTokenizer } from '../../backend/model/tokenizer.ts'
import type { SamplingParams } from '../../backend/sampling/sampler.ts'
import { REPO_ROOT, STORIES_DIR } from '../helpers/paths.ts'
import { renderThroughputChart } from './svg-chart.ts'
import {
  loadBaseline,
  packageVersion,
  runTransformers,
  type StreamRun,
  type ThreadCheck,
  transformersVersions,
} from './transformers-baseline.ts'

/**
 * npm run bench:backend — Switchyard's engine against transformers.js on the same model
 * folders, the same onnxruntime-node and the same intra-op thread count, in one process and one
 * run: single-stream tokens/s, then aggregate tokens/s and TTFT at 1, 4, 16 and 64 concurrent
 * streams (transformers.js: N concurrent generate() calls). Both sides decode greedily and
 * generate exactly the requested number of tokens (EOS ignored); the two sides alternate run
 * by run so that load from other work on the machine hits both alike.
 *
 * Env: BENCH_THREADS (default 1), BENCH_MODELS (comma list of stories260K,15m,100m),
 * BENCH_QUICK=1 (few tokens and repetitions: a smoke run), BENCH_OUT (default docs/bench).
 * BENCH_SUITE=shapes runs instead the model-shape, prefill and chunking suite of
 * backend-shapes-bench.ts (its own knobs are listed there).
 */
if (process.env.BENCH_SUITE === 'shapes') {
  await (await import('./backend-shapes-bench.ts')).runShapesBench()
  process.exit(0)
} else if (process.env.BENCH_SUITE !== undefined && process.env.BENCH_SUITE !== 'concurrency') {
  throw new Error(`BENCH_SUITE must be concurrency (default) or shapes, got ${process.env.BENCH_SUITE}`)
}
const THREADS = Number(process.env.BENCH_THREADS ?? 1)
const QUICK = process.env.BENCH_QUICK === '1'
const ALL_MODELS = ['stories260K', '15m', '100m']
const WANTED = (process.env.BENCH_MODELS ?? ALL_MODELS.join(','))
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
const OUT = resolve(REPO_ROOT, process.env.BENCH_OUT ?? 'docs/bench')
const LEVELS = [1, 4, 16, 64]
const PROMPT = 'Once upon a time'
const TARGETS = { singleVsTransformers: 1.2, at16VsOwnSingle: 4, at16VsTransformers16: 4 }
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

if (!Number.isInteger(THREADS) || THREADS < 1)
  throw new Error(`BENCH_THREADS must be a positive integer, got ${process.env.BENCH_THREADS}`)
for (const name of WANTED)
  if (!ALL_MODELS.includes(name))
    throw new Error(`BENCH_MODELS: unknown model "${name}" (known: ${ALL_MODELS.join(', ')})`)

interface Plan {
  name: string
  dir: string
  /** Built by the project's model builder when missing (random weights). */
  preset?: '15m' | '100m'
  singleTokens: number
  singleReps: number
  /** Untimed single-stream tokens per side before measuring (JIT warm-up). */
  warmupTokens: number
  streamTokens: number
  levelReps: number
}

// Sized so the full run stays within ~15 minutes on 2 shared cores (about 10 minutes under load).
const PLANS: Plan[] = [
  {
    name: 'stories260K',
    dir: STORIES_DIR,
    singleTokens: 200,
    singleReps: QUICK ? 2 : 5,
    warmupTokens: QUICK ? 400 : 1000,
    streamTokens: QUICK ? 32 : 128,
    levelReps: QUICK ? 1 : 3,
  },
  {
    name: '15m',
    dir: resolve(REPO_ROOT, 'models/bench-15m'),
    preset: '15m',
    singleTokens: QUICK ? 64 : 200,
    singleReps: QUICK ? 1 : 5,
    warmupTokens: QUICK ? 64 : 1000,
    streamTokens: QUICK ? 16 : 128,
    levelReps: QUICK ? 1 : 3,
  },
  {
    name: '100m',
    dir: resolve(REPO_ROOT, 'models/bench-100m'),
    preset: '100m',
    singleTokens: QUICK ? 16 : 100,
    singleReps: QUICK ? 1 : 5,
    warmupTokens: QUICK ? 16 : 200,
    streamTokens: QUICK ? 8 : 32,
    levelReps: QUICK ? 1 : 3,
  },
]

const benchStart = performance.now()
const log = (message: string) =>
  console.log(`[${((performance.now() - benchStart) / 1000).toFixed(0).padStart(4)} s] ${message}`)

/** Nearest-rank percentile. */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Our engine: `streams` concurrent greedy sequences of exactly `tokens` tokens each. */
async function runOurs(
  engine: Engine,
  promptIds: number[],
  streams: number,
  tokens: number,
): Promise<{ run: StreamRun; firstStream: number[] }> {
  const started = performance.now()
  const ttftMs: number[] = new Array(streams).fill(Number.NaN)
  const firstStream: number[] = []
  let produced = 0
  await Promise.all(
    Array.from(
      { length: streams },
      (_, i) =>
        new Promise<void>((done, fail) => {
          engine.submit({ promptIds, maxTokens: tokens, sampling: GREEDY, eosTokenIds: [] }, (event) => {
            if (event.token !== undefined) {
              if (Number.isNaN(ttftMs[i])) ttftMs[i] = performance.now() - started
              if (i === 0) firstStream.push(event.token)
              produced++
            }
            if (event.finish === 'length') done()
            else if (event.finish)
              fail(new Error(`our stream ended with ${event.finish}${event.message ? `: ${event.message}` : ''}`))
          })
        }),
    ),
  )
  const seconds = (performance.now() - started) / 1000
  if (produced !== streams * tokens) throw new Error(`ours produced ${produced} tokens, expected ${streams * tokens}`)
  return {
    run: { streams, tokensPerStream: tokens, tokens: produced, seconds, tokensPerSecond: produced / seconds, ttftMs },
    firstStream,
  }
}

const leadingAgreement = (a: number[], b: number[]) => {
  let n = 0
  while (n < a.length && n < b.length && a[n] === b[n]) n++
  return n
}

interface SideLevel {
  /** Median aggregate tokens/s over the repetitions. */
  tokensPerSecond: number
  /** TTFT percentiles over every stream of every repetition. */
  ttftP50Ms: number
  ttftP99Ms: number
  runs: { tokensPerSecond: number; seconds: number; ttftMs: number[] }[]
}

interface ModelResult {
  model: string
  dir: string
  onnxPath: string
  parameters: number
  contextLength: number
  promptTokens: number
  randomWeights: boolean
  /** Untimed single-stream tokens each side generated before the measurements. */
  warmupTokens: number
  ours: { loadMs: number; warmupMs: number; movesOnlyNewRows: boolean }
  transformers: { loadMs: number; threadCheck: ThreadCheck }
  single: {
    tokens: number
    reps: number
    ours: { median: number; best: number; runs: number[] }
    transformers: { median: number; best: number; runs: number[] }
    ratio: number
    /** Leading greedy tokens both implementations agree on (of `tokens`). */
    greedyAgreement: number
  }
  concurrency: { streams: number; tokensPerStream: number; reps: number; ours: SideLevel; transformers: SideLevel }[]
  targets: Record<keyof typeof TARGETS, { goal: number; value: number; met: boolean }>
}

function summarize(runs: StreamRun[]): SideLevel {
  const ttft = runs.flatMap((r) => r.ttftMs)
  return {
    tokensPerSecond: median(runs.map((r) => r.tokensPerSecond)),
    ttftP50Ms: percentile(ttft, 50),
    ttftP99Ms: percentile(ttft, 99),
    runs: runs.map((r) => ({ tokensPerSecond: r.tokensPerSecond, seconds: r.seconds, ttftMs: r.ttftMs })),
  }
}

async function ensureModel(plan: Plan): Promise<void> {
  if (!plan.preset) {
    if (!existsSync(resolve(plan.dir, 'config.json'))) throw new Error(`model folder ${plan.dir} is missing`)
    return
  }
  const complete = ['config.json', 'tokenizer.json', 'onnx/model.onnx'].every((f) => existsSync(resolve(plan.dir, f)))
  if (complete) return
  log(`building random-weight ${plan.preset} model into ${relative(REPO_ROOT, plan.dir)}`)
  const built = await buildRandomLlama({ dir: plan.dir, preset: plan.preset, seed: 1, force: true })
  log(`built ${built.parameters.toLocaleString('en')} parameters`)
}

async function benchModel(plan: Plan): Promise<ModelResult> {
  await ensureModel(plan)
  const folder = loadModelFolder(plan.dir)
  const promptIds = new TextTokenizer(folder.tokenizerJson, folder.tokenizerConfig).encode(PROMPT)
  log(
    `== ${plan.name}: ${relative(REPO_ROOT, folder.onnxPath)}, prompt ${promptIds.length} tokens, context ${folder.contextLength}`,
  )
  const engine = await Engine.start({
    onnxPath: folder.onnxPath,
    execution: { device: 'cpu', cudaDeviceId: 0, cpuThreads: THREADS, graphOptimization: 'all' },
    scheduler: {
      maxBatchSize: 64,
      maxTokensInFlight: 1 << 20,
      maxPrefillTokens: 2048,
      contextLength: folder.contextLength,
    },
    stallTimeoutMs: loadBackendConfig({}).ENGINE_STALL_TIMEOUT_MS,
  })
  log(
    `ours loaded in ${engine.info.loadMs.toFixed(0)} ms (+${engine.info.warmupMs.toFixed(0)} ms warm-up), ${engine.info.parameters.toLocaleString('en')} parameters`,
  )
  const baseline = await loadBaseline(plan.dir, THREADS)
  const check = baseline.threadCheck
  log(
    `transformers.js loaded in ${baseline.loadMs.toFixed(0)} ms; session intraOpNumThreads=${check.intraOpNumThreads} interOpNumThreads=${check.interOpNumThreads}, +${check.osThreadsAdded} OS threads`,
  )
  if (!check.ok)
    console.warn(
      `WARNING: transformers.js session thread settings differ from BENCH_THREADS=${THREADS}: ${JSON.stringify(check)}`,
    )

  try {
    // Warm-up both sides: onnxruntime's first runs and V8's JIT. transformers.js needs several
    // hundred generated tokens before its per-token JavaScript is fast (stories260K: ~1,000
    // tokens/s on the first 200-token run, ~2,400 from the fourth on), so each side generates
    // `warmupTokens` untimed, in runs of the single-stream length.
    const warmupRuns = Math.max(1, Math.ceil(plan.warmupTokens / plan.singleTokens))
    for (let i = 0; i < warmupRuns; i++) {
      await runOurs(engine, promptIds, 1, plan.singleTokens)
      await runTransformers(baseline, promptIds, 1, plan.singleTokens)
    }
    log(`warmed up: ${warmupRuns} × ${plan.singleTokens} tokens on each side`)

    const single = { ours: [] as number[], transformers: [] as number[] }
    let greedyAgreement = 0
    for (let rep = 0; rep < plan.singleReps; rep++) {
      // Alternate which side goes first, so a burst of outside load is not always on one side.
      const order = rep % 2 === 0 ? (['ours', 'transformers'] as const) : (['transformers', 'ours'] as const)
      const tokens: Record<string, number[]> = {}
      for (const side of order) {
        const { run, firstStream } =
          side === 'ours'
            ? await runOurs(engine, promptIds, 1, plan.singleTokens)
            : await runTransformers(baseline, promptIds, 1, plan.singleTokens)
        single[side].push(run.tokensPerSecond)
        tokens[side] = firstStream
      }
      greedyAgreement = leadingAgreement(tokens.ours, tokens.transformers)
      log(
        `single stream rep ${rep + 1}/${plan.singleReps} (${plan.singleTokens} tokens): ours ${single.ours.at(-1)!.toFixed(1)} tok/s, transformers.js ${single.transformers.at(-1)!.toFixed(1)} tok/s`,
      )
    }
    const singleOurs = median(single.ours)
    const singleTransformers = median(single.transformers)
    log(
      `single stream median: ours ${singleOurs.toFixed(1)}, transformers.js ${singleTransformers.toFixed(1)} tok/s → ${(singleOurs / singleTransformers).toFixed(2)}x; greedy tokens agree on the first ${greedyAgreement}/${plan.singleTokens}`,
    )

    const concurrency: ModelResult['concurrency'] = []
    for (const streams of LEVELS) {
      // A short warm-up at this batch size on both sides: the first run of a new batch shape
      // pays onnxruntime's allocations and kernel set-up, which the measured runs should not.
      await runOurs(engine, promptIds, streams, 4)
      await runTransformers(baseline, promptIds, streams, 4)
      const runs = { ours: [] as StreamRun[], transformers: [] as StreamRun[] }
      for (let rep = 0; rep < plan.levelReps; rep++) {
        const order = rep % 2 === 0 ? (['ours', 'transformers'] as const) : (['transformers', 'ours'] as const)
        for (const side of order) {
          const { run } =
            side === 'ours'
              ? await runOurs(engine, promptIds, streams, plan.streamTokens)
              : await runTransformers(baseline, promptIds, streams, plan.streamTokens)
          runs[side].push(run)
        }
        log(
          `${streams} streams × ${plan.streamTokens} rep ${rep + 1}/${plan.levelReps}: ours ${runs.ours.at(-1)!.tokensPerSecond.toFixed(1)} tok/s, transformers.js ${runs.transformers.at(-1)!.tokensPerSecond.toFixed(1)} tok/s`,
        )
      }
      const level = {
        streams,
        tokensPerStream: plan.streamTokens,
        reps: plan.levelReps,
        ours: summarize(runs.ours),
        transformers: summarize(runs.transformers),
      }
      concurrency.push(level)
      log(
        `${streams} streams: ours ${level.ours.tokensPerSecond.toFixed(1)} tok/s (TTFT p50 ${level.ours.ttftP50Ms.toFixed(1)} / p99 ${level.ours.ttftP99Ms.toFixed(1)} ms), ` +
          `transformers.js ${level.transformers.tokensPerSecond.toFixed(1)} tok/s (TTFT p50 ${level.transformers.ttftP50Ms.toFixed(1)} / p99 ${level.transformers.ttftP99Ms.toFixed(1)} ms)`,
      )
    }

    const at16 = concurrency.find((c) => c.streams === 16)!
    const target = (key: keyof typeof TARGETS, value: number) => ({
      goal: TARGETS[key],
      value,
      met: value >= TARGETS[key],
    })
    return {
      model: plan.name,
      dir: relative(REPO_ROOT, plan.dir),
      onnxPath: relative(REPO_ROOT, folder.onnxPath),
      parameters: engine.info.parameters,
      contextLength: folder.contextLength,
      promptTokens: promptIds.length,
      randomWeights: folder.randomWeights,
      warmupTokens: warmupRuns * plan.singleTokens,
      ours: {
        loadMs: engine.info.loadMs,
        warmupMs: engine.info.warmupMs,
        movesOnlyNewRows: engine.info.movesOnlyNewRows,
      },
      transformers: { loadMs: baseline.loadMs, threadCheck: check },
      single: {
        tokens: plan.singleTokens,
        reps: plan.singleReps,
        ours: { median: singleOurs, best: Math.max(...single.ours), runs: single.ours },
        transformers: { median: singleTransformers, best: Math.max(...single.transformers), runs: single.transformers },
        ratio: singleOurs / singleTransformers,
        greedyAgreement,
      },
      concurrency,
      targets: {
        singleVsTransformers: target('singleVsTransformers', singleOurs / singleTransformers),
        at16VsOwnSingle: target('at16VsOwnSingle', at16.ours.tokensPerSecond / singleOurs),
        at16VsTransformers16: target(
          'at16VsTransformers16',
          at16.ours.tokensPerSecond / at16.transformers.tokensPerSecond,
        ),
      },
    }
  } finally {
    await engine.close()
    await baseline.dispose()
  }
}

function machineInfo() {
  const repoRequire = createRequire(resolve(REPO_ROOT, 'package.json'))
  let cpuModel = cpus()[0]?.model ?? 'unknown'
  try {
    cpuModel = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? cpuModel
  } catch {}
  return {
    cpu: cpuModel,
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${process.platform} ${release()}`,
    node: process.version,
    ours: {
      onnxruntimeNode: packageVersion(repoRequire, 'onnxruntime-node'),
      onnxruntimeCommon: packageVersion(createRequire(repoRequire.resolve('onnxruntime-node')), 'onnxruntime-common'),
    },
    baseline: transformersVersions(),
    loadAverageAtStart: loadavg().map((v) => Number(v.toFixed(2))),
  }
}

function commandLine(): string {
  const knobs = ['BENCH_THREADS', 'BENCH_MODELS', 'BENCH_QUICK', 'BENCH_OUT']
    .filter((k) => process.env[k] !== undefined)
    .map((k) => `${k}=${process.env[k]}`)
  return [...knobs, 'npm run bench:backend'].join(' ')
}

const f = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : '–')
const mark = (t: { goal: number; value: number; met: boolean }) => `${f(t.value, 2)}× ${t.met ? '✔' : '✘'}`
const label = (r: ModelResult) => (r.randomWeights ? `random-${r.model}` : r.model)

function markdown(report: any): string {
  const results: ModelResult[] = report.results
  const m = report.machine
  return [
    '# Backend benchmark: Switchyard engine vs transformers.js',
    '',
    `Command: \`${report.command}\` (= \`node --import tsx test/bench/backend-bench.ts\`)${report.complete ? '' : ' — **incomplete run**'}${QUICK ? ' — **quick smoke run: few tokens and repetitions, not figures to quote**' : ''}.`,
    '',
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node}; ours on onnxruntime-node ${m.ours.onnxruntimeNode}, transformers.js ${m.baseline.transformers} on onnxruntime-node ${m.baseline.onnxruntimeNode}; ` +
      `${report.threads} intra-op thread(s) on both sides (CPU, graph optimization "all"); load average at start ${m.loadAverageAtStart.join(' / ')}; ${report.date}.`,
    '',
    'Method: prompt "Once upon a time", greedy decoding, EOS ignored, so every stream generates exactly the requested tokens (counted on both sides). ' +
      'Both implementations run in the same process on the same model folder (ours in its engine worker, transformers.js on the main thread); ' +
      'they alternate run by run, after a warm-up (untimed single-stream tokens per side: ' +
      results.map((r) => `${label(r)} ${r.warmupTokens}`).join(', ') +
      '; transformers.js needs several hundred generated tokens to reach full speed). Single stream: median of the repetitions. Concurrency N: N sequences submitted at once to our engine ' +
      '(continuous batching), N concurrent `generate()` calls on transformers.js; aggregate tokens/s is the median over the repetitions, TTFT (submit → first generated ' +
      "token, per stream; transformers.js timed with a streamer's first put() after the prompt) pooled over every stream of every repetition. " +
      'The machine was shared with other work, so absolute figures are noisy; the ratios compare runs taken side by side.',
    '',
    '## Targets',
    '',
    `| model | parameters | single stream: ours tok/s | transformers.js tok/s | ours / transformers.js (≥ ${TARGETS.singleVsTransformers}) | ours @16 / ours single (≥ ${TARGETS.at16VsOwnSingle}) | ours @16 / transformers.js @16 (≥ ${TARGETS.at16VsTransformers16}) |`,
    '|---|--:|--:|--:|--:|--:|--:|',
    ...results.map(
      (r) =>
        `| ${label(r)} | ${r.parameters.toLocaleString('en')} | ${f(r.single.ours.median)} | ${f(r.single.transformers.median)} | ${mark(r.targets.singleVsTransformers)} | ${mark(r.targets.at16VsOwnSingle)} | ${mark(r.targets.at16VsTransformers16)} |`,
    ),
    '',
    'Single stream: ' +
      results
        .map(
          (r) =>
            `${label(r)} ${r.single.tokens} new tokens × ${r.single.reps} reps, best run ours ${f(r.single.ours.best)} / transformers.js ${f(r.single.transformers.best)} tok/s ` +
            `(${f(r.single.ours.best / r.single.transformers.best, 2)}×); greedy outputs agree on the first ${r.single.greedyAgreement} tokens`,
        )
        .join('; ') +
      '.',
    '',
    '## Aggregate throughput and TTFT by concurrency',
    '',
    '| model | streams × new tokens (reps) | ours tok/s | ours TTFT p50 / p99 ms | transformers.js tok/s | transformers.js TTFT p50 / p99 ms | ours / transformers.js |',
    '|---|---|--:|--:|--:|--:|--:|',
    ...results.flatMap((r) =>
      r.concurrency.map(
        (c) =>
          `| ${label(r)} | ${c.streams} × ${c.tokensPerStream} (${c.reps}) | ${f(c.ours.tokensPerSecond)} | ${f(c.ours.ttftP50Ms)} / ${f(c.ours.ttftP99Ms)} | ${f(c.transformers.tokensPerSecond)} | ${f(c.transformers.ttftP50Ms)} / ${f(c.transformers.ttftP99Ms)} | ${f(c.ours.tokensPerSecond / c.transformers.tokensPerSecond, 2)}× |`,
      ),
    ),
    '',
    '![aggregate tokens/s against concurrent streams](backend-throughput.svg)',
    '',
    `Thread check (transformers.js): the options that reached \`InferenceSession.create\` were ` +
      results
        .map(
          (r) =>
            `${label(r)} intraOpNumThreads=${r.transformers.threadCheck.intraOpNumThreads}, interOpNumThreads=${r.transformers.threadCheck.interOpNumThreads} (+${r.transformers.threadCheck.osThreadsAdded} OS threads)`,
        )
        .join('; ') +
      `. Ours sets intraOpNumThreads=${report.threads}, interOpNumThreads=1 (backend/model/session.ts).`,
    '',
    `Raw figures (every repetition, every TTFT): [backend.json](backend.json). Total run time ${f(report.durationSeconds, 0)} s.`,
    '',
    'Model shapes of SmolLM2-135M and Llama-3.2-1B (fp32 / q4 / int8), time to first token at 32-1,500 prompt tokens and chunked prefill: `BENCH_SUITE=shapes`, figures in [backend-shapes.md](backend-shapes.md), analysis in [backend-prefill.md](backend-prefill.md).',
    '',
  ].join('\n')
}

const report = {
  date: new Date().toISOString(),
  command: commandLine(),
  quick: QUICK,
  threads: THREADS,
  prompt: PROMPT,
  levels: LEVELS,
  targets: TARGETS,
  machine: machineInfo(),
  complete: false,
  durationSeconds: 0,
  loadAverageAtEnd: [] as number[],
  results: [] as ModelResult[],
}

function writeOutputs(): void {
  report.durationSeconds = (performance.now() - benchStart) / 1000
  report.loadAverageAtEnd = loadavg().map((v) => Number(v.toFixed(2)))
  mkdirSync(OUT, { recursive: true })
  writeFileSync(resolve(OUT, 'backend.json'), `${JSON.stringify(report, null, 2)}\n`)
  writeFileSync(
    resolve(OUT, 'backend-throughput.svg'),
    renderThroughputChart({
      title: `Aggregate tokens/s by concurrent streams (${THREADS} thread${THREADS === 1 ? '' : 's'}, greedy)`,
      models: report.results.map((r) => ({
        model: `${label(r)} (${r.parameters >= 1e6 ? `${(r.parameters / 1e6).toFixed(1)}M` : `${(r.parameters / 1e3).toFixed(0)}K`} params)`,
        points: r.concurrency.map((c) => ({
          streams: c.streams,
          ours: c.ours.tokensPerSecond,
          transformers: c.transformers.tokensPerSecond,
        })),
      })),
    }),
  )
  writeFileSync(resolve(OUT, 'backend.md'), markdown(report))
}

log(
  `backend bench: models ${PLANS.filter((p) => WANTED.includes(p.name))
    .map((p) => p.name)
    .join(', ')}; ${THREADS} thread(s)${QUICK ? '; QUICK' : ''}; output ${relative(REPO_ROOT, OUT) || '.'}`,
)
for (const plan of PLANS.filter((p) => WANTED.includes(p.name))) {
  report.results.push(await benchModel(plan))
  writeOutputs() // after each model, so a later failure keeps what was measured
}
report.complete = true
writeOutputs()
console.log(`\n${markdown(report)}`)
log(
  `wrote ${['backend.json', 'backend.md', 'backend-throughput.svg'].map((n) => relative(REPO_ROOT, resolve(OUT, n))).join(', ')}`,
)
// onnxruntime / transformers.js can keep handles open; the results are written.
process.exit(0)
