import { type ChildProcess, execFileSync, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createWriteStream, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { exportJWK, generateKeyPair } from 'jose'
import { Agent } from 'undici'
import { errorMessage } from '../lib/error-message.ts'
import { REPO_ROOT, STORIES_DIR } from '../test/helpers/paths.ts'
import { freePort, startRedis } from '../test/helpers/redis-server.ts'
import { type Sample, writeSoakReport } from './soak-report.ts'

/**
 * npm run soak: SOAK_SECONDS (600) at SOAK_RATE requests/s (50) through the bundled gateway
 * (dist/gateway.mjs, as deployed: Redis, signed backend tokens, METRICS_PORT) to two real
 * backend nodes, half of them streams. Every 5 s it samples each process's RSS
 * (/proc/<pid>/status) and event-loop delay (prom-client's nodejs_eventloop_lag_* gauges, whose
 * histogram is reset at every scrape, so a sample covers the last 5 s). Writes docs/soak.json,
 * docs/soak.md and docs/soak.svg. Target: RSS growth under 10% after warm-up, no error.
 */
const SECONDS = Number(process.env.SOAK_SECONDS ?? 600)
const RATE = Number(process.env.SOAK_RATE ?? 50)
const WARMUP = Number(process.env.SOAK_WARMUP_SECONDS ?? Math.min(120, Math.round(SECONDS / 5)))
const SAMPLE_MS = 5000
const MAX_IN_FLIGHT = 400
const KEY = 'sy-soak-key-0123456789abcdef0123'
const ADMIN = 'soak-admin-token-0123456789'
const work = mkdtempSync(join(tmpdir(), 'switchyard-soak-'))
const children: ChildProcess[] = []
process.on('exit', () =>
  children.forEach((c) => {
    c.kill('SIGKILL')
  }),
)

/** Starts a process with its output in a log file (a 10-minute run logs too much to keep in memory). */
async function launch(
  name: string,
  args: string[],
  env: Record<string, string>,
  readyUrl: string,
): Promise<ChildProcess> {
  const log = createWriteStream(join(work, `${name}.log`))
  const child = spawn(process.execPath, args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  child.stdout!.pipe(log)
  child.stderr!.pipe(log)
  children.push(child)
  const deadline = Date.now() + 60_000
  while (
    !(await fetch(readyUrl).then(
      (r) => r.ok,
      () => false,
    ))
  ) {
    if (child.exitCode !== null || Date.now() > deadline)
      throw new Error(`${name} did not become ready; see ${join(work, `${name}.log`)}`)
    await new Promise((r) => setTimeout(r, 100))
  }
  return child
}

// --- the system under test, as deployed --------------------------------------------------------
console.log('building dist/gateway.mjs (npm run build)')
execFileSync('npm', ['run', 'build', '--silent'], { cwd: REPO_ROOT, stdio: 'inherit' })
const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
writeFileSync(
  join(work, 'signing.json'),
  JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'soak', alg: 'EdDSA' }),
  { mode: 0o600 },
)
writeFileSync(
  join(work, 'verify.json'),
  JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'soak', alg: 'EdDSA', use: 'sig' }] }),
)
const redis = await startRedis()
const backends: { name: string; url: string; child: ChildProcess }[] = []
for (const name of ['backend-1', 'backend-2']) {
  const port = await freePort()
  const url = `http://127.0.0.1:${port}`
  const env = {
    MODEL_DIR: STORIES_DIR,
    PORT: String(port),
    DEVICE: 'cpu',
    CPU_THREADS: '1',
    GATEWAY_VERIFY_KEYS_FILE: join(work, 'verify.json'),
  }
  backends.push({ name, url, child: await launch(name, ['--import', 'tsx', 'backend/node.ts'], env, `${url}/ready`) })
}
const gatewayPort = await freePort()
const metricsPort = await freePort()
const gatewayUrl = `http://127.0.0.1:${gatewayPort}`
const limits = { requestsPerWindow: 10_000_000, tokensPerMinute: 1_000_000_000, maxConcurrent: 10_000 }
writeFileSync(
  join(work, 'gateway.json'),
  JSON.stringify({
    auth: { apiKeys: [{ id: 'soak', tenant: 'soak', hash: createHash('sha256').update(KEY).digest('hex'), limits }] },
    routing: { regions: [{ name: 'eu', nodes: backends.map((b) => ({ id: b.name, url: b.url })) }] },
  }),
)
const gateway = await launch(
  'gateway',
  ['dist/gateway.mjs'],
  {
    GATEWAY_CONFIG: join(work, 'gateway.json'),
    PORT: String(gatewayPort),
    METRICS_PORT: String(metricsPort),
    REDIS_URL: redis.url,
    BACKEND_SIGNING_KEY_FILE: join(work, 'signing.json'),
    ADMIN_TOKEN: ADMIN,
    LOG_LEVEL: 'info',
  },
  `${gatewayUrl}/ready`,
)
const processes = [
  { name: 'gateway', pid: gateway.pid!, metrics: `http://127.0.0.1:${metricsPort}/metrics` },
  ...backends.map((b) => ({ name: b.name, pid: b.child.pid!, metrics: `${b.url}/metrics` })),
]

// --- the load: a fixed rate, open loop (a slow answer does not slow the sending) ----------------
const PROMPTS = [
  'Once upon a time',
  'The little dog',
  'Lily wanted to',
  'One day, a boy named Tim',
  'The sun was shining',
  'In the park',
  'Mom said',
  'There was a big tree',
]
const dispatcher = new Agent({ connections: 256, keepAliveTimeout: 30_000 })
/** Three in four requests are unique (sampled with their own seed: cache misses); one in four repeats a greedy one (cache hits). */
function requestFor(i: number): { path: string; body: Record<string, unknown> } {
  const prompt = PROMPTS[i % PROMPTS.length]
  const stream = i % 2 === 0
  const sampling = i % 4 === 3 ? { temperature: 0 } : { temperature: 0.8, seed: i }
  if (i % 3 === 0)
    return {
      path: '/v1/chat/completions',
      body: {
        model: 'stories260K',
        messages: [{ role: 'user', content: prompt }],
        max_tokens: 48,
        stream,
        ...sampling,
      },
    }
  return { path: '/v1/completions', body: { model: 'stories260K', prompt, max_tokens: 48, stream, ...sampling } }
}

interface Interval {
  sent: number
  ok: number
  errors: number
  latencies: number[]
}
const fresh = (): Interval => ({ sent: 0, ok: 0, errors: 0, latencies: [] })
let interval = fresh()
const totals = { sent: 0, ok: 0, errors: 0, skipped: 0, cacheHits: 0, streams: 0 }
const errorSamples: string[] = []
let inFlight = 0

async function one(i: number): Promise<void> {
  const { path, body } = requestFor(i)
  const started = performance.now()
  // Sent in the interval it is sent in; answered (ok or error) in the interval it is answered in.
  interval.sent++
  totals.sent++
  inFlight++
  try {
    const response = await fetch(`${gatewayUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
      body: JSON.stringify(body),
      dispatcher,
    } as RequestInit)
    const text = await response.text()
    if (response.status !== 200) throw new Error(`status ${response.status}: ${text.slice(0, 200)}`)
    if (body.stream) {
      totals.streams++
      const events = text.split('\n\n').filter(Boolean)
      if (events.at(-1) !== 'data: [DONE]' || events.some((e) => e.includes('"error"')))
        throw new Error(`stream did not end with [DONE]: ${events.at(-1)?.slice(0, 200)}`)
    } else if (!Array.isArray((JSON.parse(text) as { choices?: unknown }).choices))
      throw new Error(`no choices: ${text.slice(0, 200)}`)
    if (response.headers.get('x-cache') === 'HIT') totals.cacheHits++
    interval.ok++
    totals.ok++
    interval.latencies.push(performance.now() - started)
  } catch (error) {
    interval.errors++
    totals.errors++
    if (errorSamples.length < 20)
      errorSamples.push(`${((performance.now() - t0) / 1000).toFixed(1)} s: ${errorMessage(error)}`)
  } finally {
    inFlight--
  }
}

// --- sampling --------------------------------------------------------------------------------
const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024
const gauge = (text: string, name: string) => Number(new RegExp(`^${name} ([0-9.e+-]+)`, 'm').exec(text)?.[1] ?? NaN)
/**
 * prom-client's histogram (monitorEventLoopDelay, 10 ms resolution) records the time between
 * fires of a 10 ms timer, so an idle loop reads about 10.1 ms: the delay is what lies beyond.
 */
const PRECISION_MS = 10
const delayMs = (text: string, name: string) => +Math.max(0, gauge(text, name) * 1000 - PRECISION_MS).toFixed(2)
const samples: Sample[] = []
const quantile = (sorted: number[], q: number) =>
  sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : null

async function sample(): Promise<void> {
  const done = interval
  interval = fresh()
  const sorted = done.latencies.sort((a, b) => a - b)
  const entry: Sample = {
    t: Math.round((performance.now() - t0) / 1000),
    load: {
      sent: done.sent,
      ok: done.ok,
      errors: done.errors,
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      inFlight,
    },
    processes: {},
  }
  for (const p of processes) {
    const text = await fetch(p.metrics).then((r) => r.text())
    entry.processes[p.name] = {
      rssMb: +rssMb(p.pid).toFixed(1),
      heapUsedMb: +(gauge(text, 'nodejs_heap_size_used_bytes') / 2 ** 20).toFixed(1),
      loopP99Ms: delayMs(text, 'nodejs_eventloop_lag_p99_seconds'),
      loopMaxMs: delayMs(text, 'nodejs_eventloop_lag_max_seconds'),
      loopMeanMs: delayMs(text, 'nodejs_eventloop_lag_mean_seconds'),
    }
  }
  samples.push(entry)
  const g = entry.processes.gateway
  console.log(
    `${String(entry.t).padStart(4)} s  sent ${done.sent} ok ${done.ok} err ${done.errors} p99 ${entry.load.p99Ms?.toFixed(0)} ms | gateway ${g.rssMb} MB loop p99 ${g.loopP99Ms} ms | ${backends.map((b) => `${b.name} ${entry.processes[b.name].rssMb} MB`).join(' ')}`,
  )
}

// Reset the event-loop histograms so the first sample covers only its own 5 s.
await Promise.all(processes.map((p) => fetch(p.metrics).then((r) => r.text())))
const loadAtStart = loadavg()
const t0 = performance.now()
const sampler = setInterval(() => void sample(), SAMPLE_MS)
const pending = new Set<Promise<void>>()
console.log(`soak: ${SECONDS} s at ${RATE} requests/s through ${gatewayUrl} (warm-up ${WARMUP} s); logs in ${work}`)
for (let i = 0; ; i++) {
  const at = t0 + (i * 1000) / RATE
  if (at - t0 >= SECONDS * 1000) break
  const wait = at - performance.now()
  if (wait > 0) await new Promise((r) => setTimeout(r, wait))
  if (inFlight >= MAX_IN_FLIGHT) {
    // The system is not keeping up: count it as an error rather than queue without bound.
    totals.skipped++
    continue
  }
  const p = one(i).finally(() => pending.delete(p))
  pending.add(p)
}
await Promise.all(pending)
clearInterval(sampler)
const loadAtEnd = loadavg()
await Promise.all(
  [gateway, ...backends.map((b) => b.child)].map(
    (c) =>
      new Promise((r) => {
        c.once('exit', r)
        c.kill('SIGTERM')
      }),
  ),
)
await redis.stop()

// --- results -----------------------------------------------------------------------------------
const { pass } = writeSoakReport({
  date: new Date().toISOString(),
  machine: {
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    node: process.version,
    loadavgAtStart: loadAtStart.map((v) => +v.toFixed(2)),
    loadavgAtEnd: loadAtEnd.map((v) => +v.toFixed(2)),
  },
  settings: {
    seconds: SECONDS,
    rate: RATE,
    warmupSeconds: WARMUP,
    sampleSeconds: SAMPLE_MS / 1000,
    maxTokens: 48,
    maxInFlight: MAX_IN_FLIGHT,
  },
  totals,
  errorSamples,
  samples,
})
console.log('wrote docs/soak.json, docs/soak.md, docs/soak.svg')
process.exit(pass ? 0 : 1)
