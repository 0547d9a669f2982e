import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { resolve } from 'node:path'
import { Hono } from 'hono'
import pino from 'pino'
import { createMemoryRateLimits } from '../../gateway/limits/rate-limit-store.ts'
import { createRedisRateLimits } from '../../gateway/node/limits/redis-rate-limits.ts'
import { createPromMetrics } from '../../gateway/node/prom-metrics.ts'
import { createRedis } from '../../gateway/node/stores/redis-client.ts'
import type { UpstreamFetch } from '../../gateway/upstream/upstream.ts'
import { apiKeyEntry, createInProcessGateway } from '../helpers/in-process-gateway.ts'
import { REPO_ROOT } from '../helpers/paths.ts'
import { startRedis } from '../helpers/redis-server.ts'

/**
 * npm run bench:gateway:pipeline — the gateway's pipeline alone, in one process: the Hono app
 * called with `app.fetch` and a fake upstream that answers at once, against a one-route Hono
 * app with the same fake upstream (the baseline). No sockets, no other processes: the CPU per
 * request is the pipeline's own JavaScript, so differences of a few microseconds show, where
 * the wrk benchmark (`bench:gateway`) moves by ±15% between runs on this shared machine.
 * Per-key limits use the memory store, and Redis (a real redis-server) in one variant.
 */
const REQUESTS = Number(process.env.BENCH_REQUESTS ?? 30_000)
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5)
const CONCURRENCY = 16
const KEY = 'sy-bench-key-0123456789abcdef'

const answer = JSON.stringify({
  id: 'cmpl-bench',
  object: 'text_completion',
  created: 0,
  model: 'bench',
  choices: [{ index: 0, text: ' hello world', logprobs: null, finish_reason: 'length' }],
  usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
})
const answerHeaders: Record<string, string> = {
  'content-type': 'application/json',
  'content-length': String(answer.length),
}
const upstream: UpstreamFetch = async () => ({
  status: 200,
  headers: { get: (name) => answerHeaders[name.toLowerCase()] ?? null },
  body: null as never,
  text: async () => answer,
})

const redisServer = await startRedis()
const limitsOn = { requestsPerWindow: 1e9, requestWindowSeconds: 60, tokensPerMinute: 1e12, maxConcurrent: 100_000 }
function gateway(options: { limits: 'memory' | 'redis' | 'off'; logLevel: string }) {
  const limits = {
    defaults: options.limits === 'off' ? {} : limitsOn,
    perIp: { requestsPerWindow: 1e9, requestWindowSeconds: 60 },
  }
  const config = {
    backend: { url: 'http://127.0.0.1:9' },
    auth: { apiKeys: [apiKeyEntry('bench', KEY)] },
    limits,
    cache: { enabled: false },
  }
  // As the Node entry logs (pino, synchronous), into /dev/null.
  const pinoLogger = pino(
    { level: options.logLevel, base: { service: 'switchyard-gateway' } },
    pino.destination('/dev/null'),
  )
  const logger = {
    info: (f: object, m: string) => pinoLogger.info(f, m),
    warn: (f: object, m: string) => pinoLogger.warn(f, m),
    error: (f: object, m: string) => pinoLogger.error(f, m),
  }
  const metrics = createPromMetrics()
  const redis = options.limits === 'redis' ? createRedis({ url: redisServer.url }, { logger, metrics }) : undefined
  const { app, close } = createInProcessGateway({
    config,
    env: { LOG_LEVEL: options.logLevel },
    upstream,
    logger,
    metrics,
    timers: true,
    deps: {
      rateLimits: redis ? createRedisRateLimits(redis, { logger, metrics }) : createMemoryRateLimits(),
      afterResponse: (run) => void setImmediate(run),
      watchClient: () => () => {},
    },
  })
  return {
    fetch: (request: Request) => app.fetch(request),
    close: () => {
      close()
      redis?.disconnect()
    },
  }
}

const baselineApp = new Hono().post('/v1/completions', async (c) => {
  await c.req.text()
  const response = await upstream({ url: '', method: 'POST', headers: {} })
  return c.body(await response.text(), 200, { 'content-type': 'application/json' })
})
const variants = [
  {
    name: 'baseline: one-route Hono app, same fake upstream',
    app: { fetch: (request: Request) => baselineApp.fetch(request), close: () => {} },
  },
  { name: 'full pipeline, per-key limits in memory', app: gateway({ limits: 'memory', logLevel: 'info' }) },
  { name: 'full pipeline, per-key limits in Redis', app: gateway({ limits: 'redis', logLevel: 'info' }) },
  { name: 'without per-key limits', app: gateway({ limits: 'off', logLevel: 'info' }) },
  { name: 'without the access log line (LOG_LEVEL=warn)', app: gateway({ limits: 'memory', logLevel: 'warn' }) },
  { name: 'without both', app: gateway({ limits: 'off', logLevel: 'warn' }) },
]

const body = JSON.stringify({ model: 'bench', prompt: 'Once upon a time', max_tokens: 8, temperature: 0.7 })
const headers = {
  'content-type': 'application/json',
  authorization: `Bearer ${KEY}`,
  'content-length': String(body.length),
}
/** CPU microseconds per request over `count` requests, CONCURRENCY at a time; the next turn of the loop between requests, as a server has. */
async function measure(
  app: { fetch: (request: Request) => Response | Promise<Response> },
  count: number,
): Promise<number> {
  let left = count
  const started = process.cpuUsage()
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (left-- > 0) {
        const response = await app.fetch(
          new Request('http://127.0.0.1/v1/completions', { method: 'POST', headers, body }),
        )
        if (response.status !== 200) throw new Error(`status ${response.status}: ${await response.text()}`)
        await response.text()
        await new Promise((r) => setImmediate(r))
      }
    }),
  )
  const used = process.cpuUsage(started)
  return (used.user + used.system) / count
}

for (const v of variants) await measure(v.app, REQUESTS / 2) // warm-up: JIT, pools, Redis script load
const runs = variants.map(() => [] as number[])
for (let round = 0; round < ROUNDS; round++)
  for (const [i, v] of variants.entries()) runs[i].push(await measure(v.app, REQUESTS))
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]
const results = variants.map((v, i) => ({ variant: v.name, cpuPerRequestUs: median(runs[i]), runs: runs[i] }))
for (const v of variants) v.app.close()
await redisServer.stop()

const baseline = results[0].cpuPerRequestUs
const rows = results.map(
  (r) =>
    `| ${r.variant} | ${r.cpuPerRequestUs.toFixed(1)} | ${(r.cpuPerRequestUs / baseline).toFixed(2)}× | ${r === results[0] ? '—' : (r.cpuPerRequestUs - baseline).toFixed(1)} |`,
)
const result = {
  date: new Date().toISOString(),
  command: 'npm run bench:gateway:pipeline',
  requests: REQUESTS,
  rounds: ROUNDS,
  concurrency: CONCURRENCY,
  machine: { cpu: cpus()[0].model, cores: cpus().length, node: process.version },
  results,
}
mkdirSync(resolve(REPO_ROOT, 'docs/bench'), { recursive: true })
writeFileSync(resolve(REPO_ROOT, 'docs/bench/gateway-pipeline.json'), `${JSON.stringify(result, null, 2)}\n`)
writeFileSync(
  resolve(REPO_ROOT, 'docs/bench/gateway-pipeline.md'),
  `# Gateway pipeline benchmark (in process)

Command: \`npm run bench:gateway:pipeline\` (${REQUESTS} requests per run, ${CONCURRENCY} in flight, median of ${ROUNDS} interleaved rounds). Machine: ${result.machine.cpu}, ${result.machine.cores} cores, Node ${process.version}; ${result.date}.

The gateway's Hono app is called with \`app.fetch\` in this process, with a fake upstream that
answers at once; the baseline is a one-route Hono app with the same upstream. Both pay for
building a Web \`Request\` per call, so read the difference: it is the CPU of the pipeline's own
code (request id, access log, metrics, authentication, parsing and validation, per-key limits,
routing, breaker, the answer's parse and headers). Not included: sockets, HTTP parsing and
writing, the undici client (measured end to end by \`npm run bench:gateway\`).

| variant | CPU µs/request | × baseline | pipeline µs/request (− baseline) |
|---|---|---|---|
${rows.join('\n')}
`,
)
console.log(`CPU per request (median of ${ROUNDS}):`)
for (const r of results)
  console.log(
    `  ${r.variant}: ${r.cpuPerRequestUs.toFixed(1)} µs (${(r.cpuPerRequestUs / baseline).toFixed(2)}×); runs ${r.runs.map((x) => x.toFixed(0)).join(' ')}`,
  )
process.exit(0)
