import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ConsoleStats, STEP_SECONDS, STEPS, statsFor, teeMetrics } from '../../gateway/console/stats.ts'
import { type GatewayMetrics, noopRoutingMetrics } from '../../gateway/types.ts'

const STEP_MS = STEP_SECONDS * 1000

function clock(start = 1_700_000_000_000) {
  const time = { now: start - (start % STEP_MS) }
  return { time, stats: new ConsoleStats(() => time.now) }
}

describe('ConsoleStats', () => {
  test('a step appears once it is finished, as per-second rates', () => {
    const { time, stats } = clock()
    for (let i = 0; i < 10; i++) stats.request('/v1/completions', 200, 0.05)
    stats.request('/v1/chat/completions', 429, 0.001)
    stats.request('/generate', 503, 0.2)
    stats.tokens('prompt', 50)
    stats.tokens('completion', 400)
    assert.equal(stats.series().length, STEPS)
    assert.equal(stats.series().at(-1)!.requestsPerSecond, null, 'the step in progress is not shown')
    time.now += STEP_MS
    const last = stats.series().at(-1)!
    assert.equal(last.at, time.now - STEP_MS)
    assert.equal(last.requestsPerSecond, 12 / STEP_SECONDS)
    assert.equal(last.clientErrorsPerSecond, 1 / STEP_SECONDS)
    assert.equal(last.serverErrorsPerSecond, 1 / STEP_SECONDS)
    assert.equal(last.promptTokensPerSecond, 10)
    assert.equal(last.completionTokensPerSecond, 80)
    assert.deepEqual(stats.totalsSinceStart(), {
      since: new Date(time.now - STEP_MS).toISOString(),
      requests: 12,
      serverErrors: 1,
      promptTokens: 50,
      completionTokens: 400,
    })
  })

  test('steps before the process started have no data; the step it started in is as long as it ran', () => {
    const { time } = clock()
    time.now += 3000 // start 2 s before the end of a step
    const stats = new ConsoleStats(() => time.now)
    for (let i = 0; i < 4; i++) stats.request('/v1/completions', 200, 0.01)
    time.now += 2000
    const series = stats.series()
    assert.equal(series.at(-1)!.requestsPerSecond, 2, '4 requests in the 2 s it ran')
    assert.ok(series.slice(0, -1).every((p) => p.requestsPerSecond === null && p.latencyP50Ms === null))
    time.now += STEP_MS
    assert.equal(stats.series().at(-1)!.requestsPerSecond, 0, 'a quiet step after the start is zero, not missing')
  })

  test('only client traffic counts: /status, /metrics, the console and unmatched routes do not', () => {
    const { time, stats } = clock()
    for (const route of ['/status', '/metrics', '/console/api/snapshot', '/console', 'unmatched', '/health'])
      stats.request(route, 200, 0.001)
    stats.request('/v1/models', 200, 0.01)
    time.now += STEP_MS
    const last = stats.series().at(-1)!
    assert.equal(last.requestsPerSecond, 1 / STEP_SECONDS)
    assert.equal(last.latencyP50Ms, null, 'listing models is not a generation latency')
  })

  test('latency percentiles come from successful generation requests and are within 5%', () => {
    const { time, stats } = clock()
    // 1..100 ms, one of each, plus errors that must not count.
    for (let ms = 1; ms <= 100; ms++) stats.request('/v1/completions', 200, ms / 1000)
    for (let i = 0; i < 50; i++) stats.request('/v1/completions', 500, 30)
    for (let ms = 100; ms <= 400; ms += 100) stats.firstByte('/v1/completions', ms / 1000)
    stats.firstByte('/v1/models', 60)
    time.now += STEP_MS
    const last = stats.series().at(-1)!
    const near = (actual: number | null, expected: number) =>
      assert.ok(actual !== null && Math.abs(actual - expected) / expected <= 0.05, `${actual} ≈ ${expected}`)
    near(last.latencyP50Ms, 50)
    near(last.latencyP95Ms, 95)
    near(last.latencyP99Ms, 99)
    near(last.firstByteP50Ms, 200)
    stats.request('/v1/completions', 200, 0.0004)
    time.now += STEP_MS
    assert.equal(stats.series().at(-1)!.latencyP50Ms, 0.5, 'below 1 ms')
  })

  test('cache hit rate counts coalesced requests as hits and leaves bypasses out', () => {
    const { time, stats } = clock()
    stats.cache('hit')
    stats.cache('coalesced')
    stats.cache('miss')
    stats.cache('miss')
    stats.cache('bypass')
    time.now += STEP_MS
    assert.equal(stats.series().at(-1)!.cacheHitRate, 0.5)
    time.now += STEP_MS
    assert.equal(stats.series().at(-1)!.cacheHitRate, null, 'no lookups: no rate')
  })

  test('steps older than the window are forgotten, and a reused slot starts empty', () => {
    const { time, stats } = clock()
    stats.request('/v1/completions', 200, 0.01)
    time.now += STEP_MS
    assert.equal(stats.series().filter((p) => (p.requestsPerSecond ?? 0) > 0).length, 1)
    time.now += (STEPS - 1) * STEP_MS
    assert.equal(stats.series()[0].requestsPerSecond, 1 / STEP_SECONDS, 'the oldest step shown')
    time.now += STEP_MS
    assert.equal(stats.series().filter((p) => (p.requestsPerSecond ?? 0) > 0).length, 0)
    stats.request('/v1/completions', 200, 0.01) // writes into the ring slot the first step used
    time.now += STEP_MS
    assert.equal(stats.series().at(-1)!.requestsPerSecond, 1 / STEP_SECONDS)
    assert.deepEqual(
      stats
        .series()
        .map((p) => p.at)
        .slice(-2),
      [time.now - 2 * STEP_MS, time.now - STEP_MS],
      'points are consecutive steps',
    )
  })
})

describe('teeMetrics', () => {
  test('forwards every call to the gateway metrics and feeds the console from the same calls', async () => {
    const calls: string[] = []
    const metrics: GatewayMetrics = {
      request: (l) => void calls.push(`request ${l.route} ${l.status}`),
      firstByte: (l) => void calls.push(`firstByte ${l.route}`),
      tokens: (l, n) => void calls.push(`tokens ${l.kind} ${n}`),
      rateLimited: (l) => void calls.push(`rateLimited ${l.limit}`),
      cache: (r) => void calls.push(`cache ${r}`),
      storeError: () => void calls.push('storeError'),
      storeUp: (up) => void calls.push(`storeUp ${up}`),
      render: async () => ({ contentType: 'text/plain', body: 'rendered' }),
      routing: noopRoutingMetrics,
    }
    const stats = statsFor(metrics)
    assert.equal(statsFor(metrics), stats, 'one history per metrics object (it survives a config reload)')
    const tee = teeMetrics(metrics, stats)
    tee.request({ route: '/v1/completions', status: 200, keyId: 'k' }, 0.01)
    tee.firstByte({ route: '/v1/completions' }, 0.005)
    tee.tokens({ keyId: 'k', kind: 'completion' }, 7)
    tee.cache('miss')
    tee.rateLimited({ limit: 'tokens' })
    tee.storeUp(false)
    assert.equal((await tee.render())?.body, 'rendered')
    assert.equal(tee.routing, noopRoutingMetrics)
    assert.deepEqual(calls, [
      'request /v1/completions 200',
      'firstByte /v1/completions',
      'tokens completion 7',
      'cache miss',
      'rateLimited tokens',
      'storeUp false',
    ])
    assert.equal(stats.totalsSinceStart().requests, 1)
    assert.equal(stats.totalsSinceStart().completionTokens, 7)
  })
})
