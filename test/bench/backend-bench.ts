import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { basename, dirname, resolve } from 'node:path'
import { AutoModelForCausalLM, BaseStreamer, env } from '@huggingface/transformers'
import { Engine } from '../../backend/engine/engine.ts'
import { loadModelFolder } from '../../backend/model/folder.ts'
import { buildRandomLlama } from '../../backend/model/builder/build-model.ts'
import { TextTokenizer } from '../../backend/model/tokenizer.ts'
import { REPO_ROOT, STORIES_DIR } from '../helpers/paths.ts'
import { renderThroughputChart } from './svg-chart.ts'

/**
 * npm run bench:backend — Switchyard's engine against transformers.js on the same model
 * folders and thread count, in one process and one run: single-stream tokens/s, and aggregate
 * tokens/s with TTFT at 1, 4, 16 and 64 concurrent streams (transformers.js: N concurrent
 * generate() calls). Both sides generate exactly the requested tokens (EOS ignored).
 */
const THREADS = Number(process.env.BENCH_THREADS ?? 1)
const QUICK = process.env.BENCH_QUICK === '1'
const WANTED = (process.env.BENCH_MODELS ?? 'stories260K,15m,100m').split(',')
const LEVELS = [1, 4, 16, 64]
const PROMPT = 'Once upon a time'

interface Plan {
  name: string
  dir: string
  singleTokens: number
  streamTokens: number
  reps: number
}

async function modelPlans(): Promise<Plan[]> {
  const plans: Plan[] = []
  if (WANTED.includes('stories260K')) plans.push({ name: 'stories260K', dir: STORIES_DIR, singleTokens: 200, streamTokens: QUICK ? 32 : 128, reps: QUICK ? 2 : 5 })
  for (const preset of ['15m', '100m'] as const) {
    if (!WANTED.includes(preset)) continue
    const dir = resolve(REPO_ROOT, `models/bench-${preset}`)
    if (!existsSync(resolve(dir, 'config.json'))) {
      console.log(`building random-weight model ${preset} into ${dir}`)
      await buildRandomLlama({ dir, preset, seed: 1, force: true })
    }
    plans.push({ name: `random-${preset}`, dir, singleTokens: preset === '100m' ? (QUICK ? 32 : 100) : 200, streamTokens: QUICK ? 16 : preset === '100m' ? 32 : 64, reps: QUICK ? 1 : 3 })
  }
  return plans
}

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}
const median = (values: number[]) => percentile(values, 50)

interface Run {
  tokensPerSecond: number
  ttftP50Ms: number
  ttftP99Ms: number
}

/** Our engine: N concurrent greedy streams of `tokens` tokens each. */
async function runOurs(engine: Engine, promptIds: number[], streams: number, tokens: number): Promise<Run> {
  const sampling = { temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 1, presencePenalty: 0, frequencyPenalty: 0, seed: 0, logprobs: -1 }
  const started = performance.now()
  const ttft: number[] = []
  let produced = 0
  await Promise.all(
    Array.from(
      { length: streams },
      () =>
        new Promise<void>((done) => {
          let first = true
          engine.submit({ promptIds, maxTokens: tokens, sampling, eosTokenIds: [] }, (event) => {
            if (event.token !== undefined) {
              produced++
              if (first) ttft.push(performance.now() - started)
              first = false
            }
            if (event.finish) done()
          })
        }),
    ),
  )
  const seconds = (performance.now() - started) / 1000
  if (produced !== streams * tokens) throw new Error(`ours produced ${produced} tokens, expected ${streams * tokens}`)
  return { tokensPerSecond: produced / seconds, ttftP50Ms: percentile(ttft, 50), ttftP99Ms: percentile(ttft, 99) }
}

/** Counts tokens as transformers.js generates them; its first put() is the prompt. */
class TimingStreamer extends BaseStreamer {
  calls = 0
  firstTokenAt = 0
  constructor(private readonly started: number) {
    super()
  }
  put(): void {
    this.calls++
    if (this.calls === 2) this.firstTokenAt = performance.now() - this.started
  }
  end(): void {}
}

async function runTransformers(model: any, promptIds: number[], streams: number, tokens: number): Promise<Run> {
  const { Tensor } = await import('@huggingface/transformers')
  const started = performance.now()
  const streamers = Array.from({ length: streams }, () => new TimingStreamer(started))
  const outputs = await Promise.all(
    streamers.map((streamer) =>
      model.generate({
        input_ids: new Tensor('int64', BigInt64Array.from(promptIds.map(BigInt)), [1, promptIds.length]),
        attention_mask: new Tensor('int64', new BigInt64Array(promptIds.length).fill(1n), [1, promptIds.length]),
        max_new_tokens: tokens,
        min_new_tokens: tokens,
        do_sample: false,
        streamer,
      }),
    ),
  )
  const seconds = (performance.now() - started) / 1000
  const produced = outputs.reduce((sum: number, o: any) => sum + o.dims[1] - promptIds.length, 0)
  if (produced !== streams * tokens) throw new Error(`transformers.js produced ${produced} tokens, expected ${streams * tokens}`)
  const ttft = streamers.map((s) => s.firstTokenAt)
  return { tokensPerSecond: produced / seconds, ttftP50Ms: percentile(ttft, 50), ttftP99Ms: percentile(ttft, 99) }
}

env.allowRemoteModels = false
const results: any[] = []
for (const plan of await modelPlans()) {
  const folder = loadModelFolder(plan.dir)
  const promptIds = new TextTokenizer(folder.tokenizerJson, folder.tokenizerConfig).encode(PROMPT)
  console.log(`\n== ${plan.name} (${folder.onnxPath})`)
  const engine = await Engine.start({
    onnxPath: folder.onnxPath,
    execution: { device: 'cpu', cudaDeviceId: 0, cpuThreads: THREADS, graphOptimization: 'all' },
    scheduler: { maxBatchSize: 64, maxTokensInFlight: 1 << 24, maxPrefillTokens: 4096, contextLength: folder.contextLength },
  })
  env.localModelPath = dirname(plan.dir) + '/'
  const baseline = await AutoModelForCausalLM.from_pretrained(basename(plan.dir), { device: 'cpu', dtype: 'fp32', session_options: { intraOpNumThreads: THREADS, interOpNumThreads: 1 } } as any)

  // Warm-up both, then alternate repetitions so machine noise hits both alike.
  await runOurs(engine, promptIds, 1, 16)
  await runTransformers(baseline, promptIds, 1, 16)
  const single = { ours: [] as number[], transformers: [] as number[] }
  for (let rep = 0; rep < plan.reps; rep++) {
    single.ours.push((await runOurs(engine, promptIds, 1, plan.singleTokens)).tokensPerSecond)
    single.transformers.push((await runTransformers(baseline, promptIds, 1, plan.singleTokens)).tokensPerSecond)
  }
  const row: any = {
    model: plan.name,
    parameters: engine.info.parameters,
    single: { tokens: plan.singleTokens, reps: plan.reps, ours: median(single.ours), transformers: median(single.transformers), ratio: median(single.ours) / median(single.transformers) },
    concurrency: [] as any[],
  }
  console.log(`single stream (${plan.singleTokens} tokens): ours ${row.single.ours.toFixed(1)} tok/s, transformers.js ${row.single.transformers.toFixed(1)} tok/s → ${row.single.ratio.toFixed(2)}x`)
  for (const streams of LEVELS) {
    const ours = await runOurs(engine, promptIds, streams, plan.streamTokens)
    const transformers = await runTransformers(baseline, promptIds, streams, plan.streamTokens)
    row.concurrency.push({ streams, tokens: plan.streamTokens, ours, transformers })
    console.log(`${streams} streams × ${plan.streamTokens}: ours ${ours.tokensPerSecond.toFixed(1)} tok/s (TTFT p50 ${ours.ttftP50Ms.toFixed(1)} ms, p99 ${ours.ttftP99Ms.toFixed(1)}), transformers.js ${transformers.tokensPerSecond.toFixed(1)} tok/s (TTFT p50 ${transformers.ttftP50Ms.toFixed(1)} ms, p99 ${transformers.ttftP99Ms.toFixed(1)})`)
  }
  const at16 = row.concurrency.find((c: any) => c.streams === 16)
  row.targets = {
    singleVsTransformers: { goal: 1.2, value: row.single.ratio },
    at16VsOwnSingle: { goal: 4, value: at16.ours.tokensPerSecond / row.single.ours },
    at16VsTransformers16: { goal: 4, value: at16.ours.tokensPerSecond / at16.transformers.tokensPerSecond },
  }
  results.push(row)
  await engine.close()
  await baseline.dispose()
}

const report = { date: new Date().toISOString(), command: `BENCH_THREADS=${THREADS}${QUICK ? ' BENCH_QUICK=1' : ''} npm run bench:backend`, threads: THREADS, machine: { cpu: cpus()[0].model, cores: cpus().length, node: process.version }, results }
const out = resolve(REPO_ROOT, 'docs/bench')
mkdirSync(out, { recursive: true })
writeFileSync(resolve(out, 'backend.json'), JSON.stringify(report, null, 2) + '\n')
writeFileSync(resolve(out, 'backend-throughput.svg'), renderThroughputChart(results.map((r) => ({ model: r.model, points: r.concurrency.map((c: any) => ({ streams: c.streams, ours: c.ours.tokensPerSecond, transformers: c.transformers.tokensPerSecond })) }))))
const f = (n: number, d = 1) => n.toFixed(d)
const md = [
  '# Backend benchmark: Switchyard engine vs transformers.js',
  '',
  `Command: \`${report.command}\`. ${report.machine.cpu}, ${report.machine.cores} cores, Node ${process.version}, onnxruntime-node 1.30 (CPU), ${THREADS} intra-op thread(s), greedy, EOS ignored; ${report.date}.`,
  'Both sides run in one process on the same model folder; repetitions alternate between them. The machine is shared, so read the ratios.',
  '',
  '| model | parameters | single stream ours tok/s | transformers.js tok/s | ratio (≥ 1.2) | ours @16 / ours single (≥ 4) | ours @16 / transformers.js @16 (≥ 4) |',
  '|---|---|---|---|---|---|---|',
  ...results.map((r) => `| ${r.model} | ${r.parameters.toLocaleString('en')} | ${f(r.single.ours)} | ${f(r.single.transformers)} | ${f(r.single.ratio, 2)} | ${f(r.targets.at16VsOwnSingle.value, 2)} | ${f(r.targets.at16VsTransformers16.value, 2)} |`),
  '',
  '| model | streams × tokens | ours tok/s | ours TTFT p50 / p99 ms | transformers.js tok/s | transformers.js TTFT p50 / p99 ms |',
  '|---|---|---|---|---|---|',
  ...results.flatMap((r) => r.concurrency.map((c: any) => `| ${r.model} | ${c.streams} × ${c.tokens} | ${f(c.ours.tokensPerSecond)} | ${f(c.ours.ttftP50Ms)} / ${f(c.ours.ttftP99Ms)} | ${f(c.transformers.tokensPerSecond)} | ${f(c.transformers.ttftP50Ms)} / ${f(c.transformers.ttftP99Ms)} |`)),
  '',
  '![tokens/s against concurrency](backend-throughput.svg)',
  '',
]
writeFileSync(resolve(out, 'backend.md'), md.join('\n'))
console.log(md.join('\n'))
process.exit(0)
