import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { REPO_ROOT } from '../test/helpers/paths.ts'
import { type Panel, renderTimeChart } from './soak-chart.ts'

/**
 * The soak's verdict and its files: docs/soak.json (every sample), docs/soak.md, docs/soak.svg.
 * `node --import tsx scripts/soak-report.ts` renders them again from docs/soak.json.
 */
export interface Sample {
  t: number
  load: { sent: number; ok: number; errors: number; p50Ms: number | null; p99Ms: number | null; inFlight: number }
  processes: Record<
    string,
    { rssMb: number; heapUsedMb: number; loopP99Ms: number; loopMaxMs: number; loopMeanMs: number }
  >
}

export interface SoakRun {
  date: string
  machine: { cpus: number; cpuModel: string; node: string; loadavgAtStart: number[]; loadavgAtEnd: number[] }
  settings: {
    seconds: number
    rate: number
    warmupSeconds: number
    sampleSeconds: number
    maxTokens: number
    maxInFlight: number
  }
  totals: { sent: number; ok: number; errors: number; skipped: number; cacheHits: number; streams: number }
  errorSamples: string[]
  samples: Sample[]
}

const DOCS = resolve(REPO_ROOT, 'docs')
const COLORS: Record<string, string> = { gateway: '#1f5fbf', 'backend-1': '#d9822b', 'backend-2': '#2a9d55' }

const median = (values: number[]) => {
  const s = [...values].sort((a, b) => a - b)
  return s.length ? s[Math.floor(s.length / 2)] : NaN
}

/** Least-squares slope of [seconds, value] points, per minute. */
function slopePerMinute(points: [number, number][]): number {
  const n = points.length
  const mx = points.reduce((a, [x]) => a + x, 0) / n
  const my = points.reduce((a, [, y]) => a + y, 0) / n
  const sxy = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0)
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0)
  return sxx ? (sxy / sxx) * 60 : 0
}

function summarize(run: SoakRun) {
  const { samples } = run
  const { seconds, warmupSeconds: warmup } = run.settings
  const after = samples.filter((s) => s.t > warmup)
  const names = Object.keys(samples[0].processes)
  const summary = names.map((name) => {
    const of = (from: number, to: number, pick: (p: Sample['processes'][string]) => number) =>
      median(samples.filter((s) => s.t > from && s.t <= to).map((s) => pick(s.processes[name])))
    const start = of(warmup, warmup + 60, (p) => p.rssMb)
    const end = of(seconds - 60, Infinity, (p) => p.rssMb)
    const loop = after.map((s) => s.processes[name])
    return {
      name,
      rssAfterWarmupMb: start,
      rssEndMb: end,
      rssMaxMb: Math.max(...loop.map((l) => l.rssMb)),
      rssGrowthPercent: +(((end - start) / start) * 100).toFixed(1),
      // A leak keeps climbing; a process that settled has a flat second half.
      rssTrendSecondHalfMbPerMin: +slopePerMinute(
        samples.filter((s) => s.t > seconds / 2).map((s) => [s.t, s.processes[name].rssMb]),
      ).toFixed(2),
      heapAfterWarmupMb: of(warmup, warmup + 60, (p) => p.heapUsedMb),
      heapEndMb: of(seconds - 60, Infinity, (p) => p.heapUsedMb),
      loopP99MedianMs: median(loop.map((l) => l.loopP99Ms)),
      loopP99MaxMs: Math.max(...loop.map((l) => l.loopP99Ms)),
      loopMaxMs: Math.max(...loop.map((l) => l.loopMaxMs)),
    }
  })
  const failed = run.totals.errors + run.totals.skipped
  return { summary, failed, pass: failed === 0 && summary.every((s) => s.rssGrowthPercent < 10) }
}

export function writeSoakReport(run: SoakRun): { pass: boolean } {
  const { summary, failed, pass } = summarize(run)
  const { settings, totals, machine, samples, errorSamples } = run
  mkdirSync(DOCS, { recursive: true })
  writeFileSync(resolve(DOCS, 'soak.json'), `${JSON.stringify({ ...run, pass, summary }, null, 1)}\n`)

  const series = (pick: (p: Sample['processes'][string]) => number) =>
    summary.map(({ name }) => ({
      name,
      color: COLORS[name] ?? '#777',
      points: samples.map((s) => [s.t, pick(s.processes[name])] as [number, number]),
    }))
  const panels: Panel[] = [
    { title: 'Resident set size', unit: 'RSS (MB)', series: series((p) => p.rssMb) },
    {
      title: `Event-loop delay, p99 of each ${settings.sampleSeconds} s`,
      unit: 'delay p99 (ms)',
      series: series((p) => p.loopP99Ms),
    },
  ]
  writeFileSync(
    resolve(DOCS, 'soak.svg'),
    renderTimeChart({
      title: `Soak: ${settings.rate} requests/s for ${+(settings.seconds / 60).toFixed(1)} min through the gateway`,
      panels,
      durationSeconds: settings.seconds,
      warmupSeconds: settings.warmupSeconds,
    }),
  )

  const latencies = samples
    .filter((s) => s.t > settings.warmupSeconds)
    .map((s) => s.load.p99Ms)
    .filter((v): v is number => v !== null)
  const row = (s: (typeof summary)[number]) =>
    `| ${s.name} | ${s.rssAfterWarmupMb} | ${s.rssEndMb} | ${s.rssMaxMb} | **${s.rssGrowthPercent}%** | ${s.rssTrendSecondHalfMbPerMin} | ${s.heapAfterWarmupMb} → ${s.heapEndMb} | ${s.loopP99MedianMs} | ${s.loopP99MaxMs} | ${s.loopMaxMs} |`
  writeFileSync(
    resolve(DOCS, 'soak.md'),
    `# Soak test

\`npm run soak\` (\`node --import tsx scripts/soak.ts\`; \`SOAK_SECONDS\`, \`SOAK_RATE\`, \`SOAK_WARMUP_SECONDS\`).
Run on ${machine.cpus} × ${machine.cpuModel}, Node ${machine.node}, ${run.date.slice(0, 10)};
load average ${machine.loadavgAtStart.join(' / ')} at the start and ${machine.loadavgAtEnd.join(' / ')} at the end
(1 / 5 / 15 min; the machine is shared with other work, so absolute delays are noisy).

**Verdict: ${pass ? 'PASS' : 'FAIL'}** (target: RSS growth under 10% after warm-up, no error): ${failed} errors; RSS growth ${summary.map((s) => `${s.name} ${s.rssGrowthPercent}%`).join(', ')}.

## Set-up

${settings.seconds} s at a fixed ${settings.rate} requests/s (open loop: a slow answer does not slow the sending; at most
${settings.maxInFlight} in flight, beyond which a request counts as an error) through the bundled gateway
(\`npm run build\`, \`node dist/gateway.mjs\`) with Redis (limits, keys, cache), gateway-signed backend tokens and
\`METRICS_PORT\`, to two backend nodes (\`node --import tsx backend/node.ts\`, stories260K, CPU, 1 thread) in one
region. Requests: half streamed; a third chat, the rest completions; \`max_tokens\` ${settings.maxTokens}; three in four sampled
with their own seed (cache misses), one in four a greedy repeat (cache hits). A request succeeds when it gets a 200
with choices, or a stream ending in \`[DONE]\` without an error event.

Every ${settings.sampleSeconds} s: RSS from \`/proc/<pid>/status\`, and \`nodejs_eventloop_lag_p99_seconds\`, \`_max_seconds\`
and \`nodejs_heap_size_used_bytes\` from each process's \`/metrics\` (prom-client's default metrics; the gateway's on
\`METRICS_PORT\`). prom-client resets its event-loop histogram at every scrape and only this script scrapes, so each
sample covers its own ${settings.sampleSeconds} s. That histogram (\`monitorEventLoopDelay\`, 10 ms resolution) records the time
between fires of a 10 ms timer, so an idle loop reads 10.1 ms: the delays below are the part beyond those 10 ms. The
backend's event loop is its HTTP thread; generation runs on its engine worker thread.

## Results

Requests: ${totals.sent} sent, ${totals.ok} succeeded, ${totals.errors} failed, ${totals.skipped} not sent (in-flight cap);
${totals.streams} streams; ${totals.cacheHits} cache hits. Latency to the last byte, p99 per ${settings.sampleSeconds} s after warm-up:
median ${median(latencies).toFixed(0)} ms, worst ${Math.max(...latencies).toFixed(0)} ms.
${errorSamples.length ? `\nFirst errors:\n\n${errorSamples.map((e) => `- ${e}`).join('\n')}\n` : ''}
RSS growth compares the median of the first minute after the ${settings.warmupSeconds} s warm-up with the median of the last
minute; the trend is the least-squares slope of RSS over the second half of the run (a leak keeps climbing).

| process | RSS after warm-up (MB) | RSS at end (MB) | RSS max (MB) | growth | RSS trend, 2nd half (MB/min) | JS heap used (MB) | loop delay p99, median (ms) | loop delay p99, worst (ms) | loop delay max (ms) |
|---|---|---|---|---|---|---|---|---|---|
${summary.map(row).join('\n')}

![RSS and event-loop delay over time](soak.svg)

Raw samples: [soak.json](soak.json).
`,
  )
  console.log(
    `${pass ? 'PASS' : 'FAIL'}: ${totals.ok}/${totals.sent} ok, ${failed} errors; RSS growth ${summary.map((s) => `${s.name} ${s.rssGrowthPercent}% (trend ${s.rssTrendSecondHalfMbPerMin} MB/min)`).join(', ')}`,
  )
  return { pass }
}

// Run directly: render the files again from docs/soak.json (e.g. after changing this report).
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const {
    pass: _pass,
    summary: _summary,
    ...run
  } = JSON.parse(readFileSync(resolve(DOCS, 'soak.json'), 'utf8')) as SoakRun & { pass: unknown; summary: unknown }
  // Runs before maxInFlight was recorded used 400.
  writeSoakReport({ ...run, settings: { ...run.settings, maxInFlight: run.settings.maxInFlight ?? 400 } })
}
