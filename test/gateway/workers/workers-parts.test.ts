import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import { LimitCounters } from '../../../gateway/limits/counters.ts'
import { readWorkerSettings, type WorkerEnv } from '../../../gateway/workers/config.ts'
import { keepAlive, withRequestContext } from '../../../gateway/workers/keep-alive.ts'
import { KvCacheStore } from '../../../gateway/workers/kv-cache.ts'
import { createConsoleLogger } from '../../../gateway/workers/logger.ts'
import { createWorkersMetrics } from '../../../gateway/workers/metrics.ts'
import type { ExecutionContext, KVNamespace } from '../../../gateway/workers/runtime.ts'

// The Workers parts that need no workerd (their objects run on workerd in test/workers/).
// LimitCounters (limits/counters.ts) is the logic inside each RateLimiterObject and the memory store.
describe('LimitCounters', () => {
  const want = (cost: number) => ({
    requests: { limit: 2, windowSeconds: 10 },
    maxConcurrent: 1,
    tokens: { cost, perMinute: 100 },
  })
  /** The token budget at `now`, read with a zero-cost admission. */
  const tokensLeft = (counters: LimitCounters, now: number, perMinute = 1000) => {
    const peek = counters.admit({ tokens: { cost: 0, perMinute } }, '', 0, now)
    assert.equal(peek.allowed, true)
    return peek.tokens!.remaining
  }

  test('hit: a fixed window counts, refuses with the time left, and starts afresh after the reset', () => {
    const counters = new LimitCounters()
    assert.deepEqual(counters.hit(2, 10_000, 0), { allowed: true, state: { limit: 2, remaining: 1, resetSeconds: 10 } })
    assert.equal(counters.hit(2, 10_000, 1000).allowed, true)
    assert.deepEqual(counters.hit(2, 10_000, 2500), {
      allowed: false,
      state: { limit: 2, remaining: 0, resetSeconds: 7.5 },
      retryAfterSeconds: 8,
    })
    assert.deepEqual(counters.hit(2, 10_000, 10_000), {
      allowed: true,
      state: { limit: 2, remaining: 1, resetSeconds: 10 },
    })
    // Another window length is another count.
    assert.deepEqual(counters.hit(2, 5000, 10_000), {
      allowed: true,
      state: { limit: 2, remaining: 1, resetSeconds: 5 },
    })
  })

  test('admit takes requests, a slot and tokens all or nothing; a refusal counts nothing', () => {
    const counters = new LimitCounters()
    const refusedTokens = counters.admit(want(101), 'a', 5000, 0)
    assert.deepEqual(refusedTokens, {
      allowed: false,
      refusedBy: 'tokens',
      retryAfterSeconds: 60,
      requests: { limit: 2, remaining: 2, resetSeconds: 0 },
      tokens: { limit: 100, remaining: 100, resetSeconds: 0 },
    })
    assert.deepEqual(counters.state, { windows: {}, slots: {} })
    assert.equal(counters.dirty, false)

    assert.deepEqual(counters.admit(want(60), 'a', 5000, 0), {
      allowed: true,
      requests: { limit: 2, remaining: 1, resetSeconds: 10 },
      tokens: { limit: 100, remaining: 40, resetSeconds: 60 },
      tokenWindow: 60_000,
    })
    let before = structuredClone(counters.state)
    // The slot is held: refused by concurrency, which takes no request and no tokens; retry when the slot surely frees (its expiry, 4 s on).
    assert.deepEqual(counters.admit(want(10), 'b', 5000, 1000), {
      allowed: false,
      refusedBy: 'concurrency',
      retryAfterSeconds: 4,
      requests: { limit: 2, remaining: 1, resetSeconds: 9 },
      tokens: { limit: 100, remaining: 40, resetSeconds: 59 },
    })
    assert.deepEqual(counters.state, before)

    counters.settle('a', 0, 60_000, 2000)
    before = structuredClone(counters.state)
    // Refused by tokens once the slot is free: the request and the slot are not taken either.
    const over = counters.admit(want(41), 'c', 5000, 3000)
    assert.ok(!over.allowed && over.refusedBy === 'tokens' && over.retryAfterSeconds === 57, JSON.stringify(over))
    assert.deepEqual(counters.state, before)

    const last = counters.admit(want(40), 'd', 5000, 4000)
    assert.ok(last.allowed && last.requests!.remaining === 0 && last.tokens!.remaining === 0, JSON.stringify(last))
    counters.settle('d', 0, 60_000, 4000)
    // Requests are checked first: refused by them, with the time to their reset.
    before = structuredClone(counters.state)
    assert.deepEqual(counters.admit(want(0), 'e', 5000, 4000), {
      allowed: false,
      refusedBy: 'requests',
      retryAfterSeconds: 6,
      requests: { limit: 2, remaining: 0, resetSeconds: 6 },
      tokens: { limit: 100, remaining: 0, resetSeconds: 56 },
    })
    assert.deepEqual(counters.state, before)
    // Once the request window has passed (the token window has not), a zero-cost admission is granted.
    const next = counters.admit(want(0), 'f', 5000, 10_000)
    assert.ok(
      next.allowed && next.requests!.remaining === 1 && next.tokens!.remaining === 0 && next.tokenWindow === undefined,
      JSON.stringify(next),
    )
  })

  test('tokens never overshoot the budget; refusals reserve nothing; a zero-cost admission only reads', () => {
    const counters = new LimitCounters()
    let granted = 0
    for (let i = 0; i < 50; i++) {
      const cost = 20 + ((i * 37) % 61) // 20..80, ~2,500 in all
      const before = tokensLeft(counters, i)
      const answer = counters.admit({ tokens: { cost, perMinute: 1000 } }, '', 0, i)
      if (answer.allowed) {
        granted += cost
        assert.equal(answer.tokens!.remaining, before - cost)
      } else {
        assert.equal(answer.refusedBy, 'tokens')
        assert.ok(answer.retryAfterSeconds >= 1 && answer.retryAfterSeconds <= 60)
        assert.equal(answer.tokens!.remaining, before, 'a refusal reserves nothing')
      }
      assert.ok(granted <= 1000, `granted ${granted}`)
    }
    assert.ok(granted > 900, `granted ${granted}: smaller reservations still fit`)
    assert.equal(tokensLeft(counters, 100), 1000 - granted)
    // Reading changes nothing.
    counters.dirty = false
    const stateBefore = structuredClone(counters.state)
    assert.deepEqual(counters.admit({ tokens: { cost: 0, perMinute: 1000 } }, '', 0, 200), {
      allowed: true,
      requests: undefined,
      tokens: { limit: 1000, remaining: 1000 - granted, resetSeconds: 59.8 },
    })
    assert.deepEqual(counters.state, stateBefore)
    assert.equal(counters.dirty, false)
    // Bigger than the whole budget: refused for a full window, even when the window is empty.
    const fresh = new LimitCounters()
    const huge = fresh.admit({ tokens: { cost: 1001, perMinute: 1000 } }, '', 0, 0)
    assert.ok(!huge.allowed && huge.refusedBy === 'tokens' && huge.retryAfterSeconds === 60, JSON.stringify(huge))
    assert.equal(tokensLeft(fresh, 0), 1000)
    // A fractional cost is rounded up.
    assert.equal(fresh.admit({ tokens: { cost: 0.5, perMinute: 1000 } }, '', 0, 0).tokens!.remaining, 999)
  })

  test('settle refunds only into the token window it reserved in, and never below zero', () => {
    const counters = new LimitCounters()
    const first = counters.admit({ tokens: { cost: 600, perMinute: 1000 } }, '', 0, 0)
    assert.ok(first.allowed && first.tokenWindow === 60_000, JSON.stringify(first))
    counters.settle(undefined, 5000, first.tokenWindow, 1000)
    assert.equal(tokensLeft(counters, 1000), 1000, 'never below zero')

    const second = counters.admit({ tokens: { cost: 300, perMinute: 1000 } }, '', 0, 2000)
    assert.ok(second.allowed && second.tokenWindow === 60_000, 'the same window')
    // The window passes and a new one starts and fills up.
    const third = counters.admit({ tokens: { cost: 900, perMinute: 1000 } }, '', 0, 60_000)
    assert.ok(third.allowed && third.tokenWindow === 120_000, JSON.stringify(third))
    counters.dirty = false
    counters.settle(undefined, 300, second.tokenWindow, 61_000)
    assert.equal(counters.dirty, false)
    assert.equal(tokensLeft(counters, 61_000), 100, 'the old window’s refund does not land in the new one')
    counters.settle(undefined, 200, undefined, 61_000)
    assert.equal(tokensLeft(counters, 61_000), 100, 'no window, no refund')
    counters.settle(undefined, 200, third.tokenWindow, 62_000)
    assert.equal(tokensLeft(counters, 62_000), 300)
    // After its window has ended nothing is given back, not even into an empty new window.
    counters.settle(undefined, 700, third.tokenWindow, 120_000)
    assert.equal(tokensLeft(counters, 120_000), 1000)
    assert.deepEqual(counters.admit({ tokens: { cost: 0, perMinute: 1000 } }, '', 0, 120_000).tokens, {
      limit: 1000,
      remaining: 1000,
      resetSeconds: 0,
    })
  })

  test('slots restored from stored state count against the limit until they expire', () => {
    const counters = new LimitCounters({ slots: { a: 5000, b: 7000 } })
    const slot = (id: string, now: number) => counters.admit({ maxConcurrent: 2 }, id, 1000, now).allowed
    assert.equal(slot('c', 1000), false, 'two stored slots held')
    counters.settle('a', 0, undefined, 1000)
    assert.equal(slot('c', 1000), true, 'one freed by settle')
    assert.equal(slot('d', 1500), false)
    counters.settle('a', 0, undefined, 1500)
    assert.equal(slot('d', 1500), false, 'settling a freed slot again frees nothing')
    assert.equal(slot('d', 2001), true, 'c expired at 2000')
    assert.equal(slot('e', 7001), true, 'b and d expired')
  })

  test('slots expire after their lifetime; settle frees only its own; expiresAt covers everything held', () => {
    const counters = new LimitCounters()
    const slot = (id: string, now: number) => counters.admit({ maxConcurrent: 2 }, id, 1000, now).allowed
    assert.equal(counters.expiresAt(0), null)
    assert.equal(slot('a', 0), true)
    assert.equal(slot('b', 500), true)
    assert.equal(slot('c', 600), false)
    counters.settle('nobody', 0, undefined, 650)
    assert.equal(slot('c', 700), false)
    assert.equal(slot('c', 1000), true, 'a expired')
    counters.hit(1, 5000, 1000)
    assert.equal(counters.expiresAt(1000), 6000)
    counters.settle('b', 0, undefined, 1000)
    counters.settle('c', 0, undefined, 1000)
    assert.equal(counters.expiresAt(1000), 6000)
    assert.equal(counters.expiresAt(6000), null)
    assert.deepEqual(counters.state, { windows: {}, slots: {} }, 'what expired is dropped')
    // A token reservation is held until its window ends; an unsettled slot until its lifetime ends.
    counters.admit({ maxConcurrent: 1, tokens: { cost: 10, perMinute: 100 } }, 'd', 90_000, 6000)
    assert.equal(counters.expiresAt(6000), 96_000)
    assert.equal(counters.expiresAt(66_000), 96_000)
    assert.equal(counters.expiresAt(96_000), null)
  })

  test('marks itself dirty only when something changed, and picks up a stored state', () => {
    const counters = new LimitCounters()
    counters.admit({ tokens: { cost: 0, perMinute: 10 } }, '', 0, 0)
    counters.admit({ tokens: { cost: 11, perMinute: 10 } }, '', 0, 0)
    counters.admit({ maxConcurrent: 0 }, 'a', 1000, 0)
    counters.settle('nobody', 5, 60_000, 0)
    assert.equal(counters.dirty, false)
    counters.admit({ maxConcurrent: 1, tokens: { cost: 4, perMinute: 10 } }, 'a', 1000, 0)
    assert.equal(counters.dirty, true)
    // A Durable Object restarted with its stored (JSON) state carries on from it.
    const restored = new LimitCounters(JSON.parse(JSON.stringify(counters.state)))
    assert.equal(restored.admit({ maxConcurrent: 1 }, 'b', 1000, 10).allowed, false)
    assert.equal(tokensLeft(restored, 10, 10), 6)
  })
})

describe('KvCacheStore', () => {
  function fakeKv() {
    const puts: { key: string; options: unknown }[] = []
    const values = new Map<string, { value: string; metadata: unknown }>()
    const kv: KVNamespace = {
      async getWithMetadata<M>(key: string) {
        const entry = values.get(key)
        return { value: entry?.value ?? null, metadata: (entry?.metadata ?? null) as M | null }
      },
      async put(key, value, options) {
        puts.push({ key, options })
        values.set(key, { value, metadata: options?.metadata })
      },
    }
    return { kv, puts }
  }

  test('stores with KV’s 60 s minimum expiry but never serves past the configured TTL', async () => {
    let now = 1_000_000
    const { kv, puts } = fakeKv()
    const store = new KvCacheStore(kv, { now: () => now })
    await store.set('k', 'value', 5)
    assert.deepEqual(puts, [{ key: 'cache:k', options: { expirationTtl: 60, metadata: { expiresAt: 1_005_000 } } }])
    assert.equal(await store.get('k'), 'value')
    now += 5000
    assert.equal(await store.get('k'), null)
    assert.equal(await store.get('never'), null)
    await store.set('z', 'v', 0)
    assert.equal(puts.length, 1)
  })

  test('the write keeps the request alive', async () => {
    const waited: Promise<unknown>[] = []
    const ctx = {
      waitUntil: (p: Promise<unknown>) => void waited.push(p),
      passThroughOnException() {},
      props: {},
    } as ExecutionContext
    await withRequestContext(ctx, () => new KvCacheStore(fakeKv().kv).set('k', 'v', 300))
    assert.equal(waited.length, 1)
  })
})

describe('keepAlive', () => {
  test('hands work to the request it belongs to, across awaits and in stream callbacks; outside a request it only passes through', async () => {
    const waits = { a: 0, b: 0 }
    const ctx = (name: 'a' | 'b') =>
      ({ waitUntil: () => void waits[name]++, passThroughOnException() {}, props: {} }) as ExecutionContext
    const body = withRequestContext(
      ctx('a'),
      () =>
        new ReadableStream({ pull: (controller) => void keepAlive(Promise.resolve()).then(() => controller.close()) }),
    )
    await withRequestContext(ctx('b'), async () => {
      await new Promise((r) => setTimeout(r, 1))
      await keepAlive(Promise.reject(new Error('failed work is still waited for'))).catch(() => {})
    })
    await new Response(body).text()
    assert.deepEqual(waits, { a: 1, b: 1 })
    assert.equal(await keepAlive(Promise.resolve(7)), 7)
  })
})

describe('createWorkersMetrics', () => {
  test('writes one Analytics Engine data point per event; health only on failures and changes; no scrape endpoint', async () => {
    const points: unknown[] = []
    const metrics = createWorkersMetrics({ writeDataPoint: (p) => void points.push(p) })
    metrics.request({ route: '/v1/completions', status: 200, keyId: 'k1' }, 0.25)
    metrics.tokens({ keyId: 'k1', kind: 'completion' }, 40)
    const node = { region: 'eu', backend: 'eu-1' }
    metrics.routing.health(node, true, true)
    metrics.routing.health(node, true, true)
    metrics.routing.health(node, false, true)
    metrics.routing.breaker(node, 'closed', false)
    metrics.routing.inFlight(node, 3)
    assert.deepEqual(points, [
      { indexes: ['request'], blobs: ['request', '/v1/completions', '200', 'k1'], doubles: [0.25] },
      { indexes: ['tokens'], blobs: ['tokens', 'k1', 'completion'], doubles: [40] },
      { indexes: ['health_check'], blobs: ['health_check', 'eu', 'eu-1', 'pass', 'healthy'], doubles: [1] },
      { indexes: ['health_check'], blobs: ['health_check', 'eu', 'eu-1', 'fail', 'healthy'], doubles: [1] },
    ])
    assert.equal(await metrics.render(), null)
    createWorkersMetrics(undefined).request({ route: '/', status: 200, keyId: 'k' }, 1)
  })
})

describe('createConsoleLogger', () => {
  test('JSON lines with level, time, service and msg; below the level nothing', (t) => {
    const log = t.mock.method(console, 'log', () => {})
    const warn = t.mock.method(console, 'warn', () => {})
    createConsoleLogger('warn').info({ a: 1 }, 'hidden')
    createConsoleLogger('info').warn({ keyId: 'k' }, 'shown')
    assert.equal(log.mock.callCount(), 0)
    const line = JSON.parse(warn.mock.calls[0].arguments[0] as string)
    assert.deepEqual(
      { ...line, time: typeof line.time },
      { level: 'warn', time: 'string', service: 'switchyard-gateway', keyId: 'k', msg: 'shown' },
    )
  })
})

describe('readWorkerSettings', () => {
  const bindings = { RATE_LIMITER: {}, API_KEY_INDEX: {}, API_KEYS: {} } as unknown as WorkerEnv
  const env = (vars: Record<string, unknown>) => ({ ...bindings, ...vars }) as WorkerEnv
  const config = JSON.stringify({ backend: { url: 'http://10.0.0.1:8000' }, cache: { ttlSeconds: 60 } })

  test('reads the JSON config and the string vars; bindings are not vars', async () => {
    const { config: parsed, signingKey } = readWorkerSettings(
      env({ GATEWAY_CONFIG_JSON: config, ADMIN_TOKEN: 'a-long-enough-admin-token', LOG_LEVEL: 'warn' }),
    )
    assert.equal(parsed.routing.regions[0].nodes[0].id, 'default')
    assert.equal(parsed.cache.ttlSeconds, 60)
    assert.deepEqual([parsed.env.ADMIN_TOKEN, parsed.env.LOG_LEVEL], ['a-long-enough-admin-token', 'warn'])
    assert.equal(signingKey, undefined)
  })

  test('refuses what cannot work on Workers, naming it', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ GATEWAY_CONFIG_JSON: '{oops' }, /GATEWAY_CONFIG_JSON: not valid JSON/],
      [{ GATEWAY_CONFIG_JSON: config, REDIS_URL: 'redis://r:6379' }, /REDIS_URL is not used by the Workers gateway/],
      [{ GATEWAY_CONFIG_JSON: config, RATE_LIMITER: undefined }, /RATE_LIMITER Durable Object binding is missing/],
      [
        {
          GATEWAY_CONFIG_JSON: JSON.stringify({
            routing: { regions: [{ name: 'eu', nodes: [{ id: 'p', dns: 'pods.local', port: 80 }] }] },
          }),
        },
        /nodes found by DNS need the Node gateway/,
      ],
      [{ GATEWAY_CONFIG_JSON: config, BACKEND_SIGNING_KEY: '{' }, /BACKEND_SIGNING_KEY: not valid JSON/],
      [{}, /no backend/],
    ]
    for (const [vars, message] of cases) assert.throws(() => readWorkerSettings(env(vars)), message)
  })

  test('the signing key secret must be a private EdDSA or ES256 JWK with a kid', async () => {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
    const publicJwk = JSON.stringify({ ...(await exportJWK(publicKey)), kid: 'k1' })
    assert.throws(
      () => readWorkerSettings(env({ GATEWAY_CONFIG_JSON: config, BACKEND_SIGNING_KEY: publicJwk })),
      /BACKEND_SIGNING_KEY: .*private key/,
    )
    const { signingKey } = readWorkerSettings(
      env({
        GATEWAY_CONFIG_JSON: config,
        BACKEND_SIGNING_KEY: JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'k1' }),
      }),
    )
    assert.deepEqual([signingKey?.kid, signingKey?.alg], ['k1', 'EdDSA'])
  })
})
