import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import { readWorkerSettings, type WorkerEnv } from '../../../gateway/workers/config.ts'
import { keepAlive, withRequestContext } from '../../../gateway/workers/keep-alive.ts'
import { KvCacheStore } from '../../../gateway/workers/kv-cache.ts'
import { LimitCounters } from '../../../gateway/workers/limit-counters.ts'
import { createConsoleLogger } from '../../../gateway/workers/logger.ts'
import { createWorkersMetrics } from '../../../gateway/workers/metrics.ts'
import type { ExecutionContext, KVNamespace } from '../../../gateway/workers/runtime.ts'

// The Workers parts that need no workerd (their objects run on workerd in test/workers/).
describe('LimitCounters', () => {
  test('a fixed window: counts, refuses with the time left, and starts afresh after the reset', () => {
    const counters = new LimitCounters()
    assert.deepEqual(counters.hit(2, 10_000, 0), { allowed: true, state: { limit: 2, remaining: 1, resetSeconds: 10 } })
    assert.equal(counters.hit(2, 10_000, 1000).allowed, true)
    assert.deepEqual(counters.hit(2, 10_000, 2500), { allowed: false, state: { limit: 2, remaining: 0, resetSeconds: 7.5 }, retryAfterSeconds: 8 })
    assert.deepEqual(counters.hit(2, 10_000, 10_000), { allowed: true, state: { limit: 2, remaining: 1, resetSeconds: 10 } })
  })

  test('reservations are all or nothing; refunds stay in their window and never go below zero', () => {
    const counters = new LimitCounters()
    assert.equal(counters.reserve(600, 1000, 60_000, 0).allowed, true)
    const refused = counters.reserve(500, 1000, 60_000, 1000)
    assert.equal(refused.allowed, false)
    assert.equal(counters.peek(1000, 1000).remaining, 400)
    counters.refund(5000, 2000)
    assert.equal(counters.peek(1000, 2000).remaining, 1000)
    counters.reserve(300, 1000, 60_000, 3000)
    counters.refund(300, 60_000) // the window ended: nothing to give back into
    assert.deepEqual(counters.peek(1000, 60_000), { limit: 1000, remaining: 1000, resetSeconds: 0 })
  })

  test('slots expire after their lifetime; release frees only its own; expiresAt covers everything held', () => {
    const counters = new LimitCounters()
    assert.equal(counters.expiresAt(0), null)
    assert.equal(counters.acquire('a', 2, 1000, 0), true)
    assert.equal(counters.acquire('b', 2, 1000, 500), true)
    assert.equal(counters.acquire('c', 2, 1000, 600), false)
    counters.release('nobody')
    assert.equal(counters.acquire('c', 2, 1000, 700), false)
    assert.equal(counters.acquire('c', 2, 1000, 1000), true, 'a expired')
    counters.hit(1, 5000, 1000)
    assert.equal(counters.expiresAt(1000), 6000)
    counters.release('b')
    counters.release('c')
    assert.equal(counters.expiresAt(1000), 6000)
    assert.equal(counters.expiresAt(6000), null)
  })

  test('marks itself dirty only when something changed', () => {
    const counters = new LimitCounters()
    counters.peek(10, 0)
    counters.reserve(11, 10, 60_000, 0)
    assert.equal(counters.dirty, false)
    counters.reserve(1, 10, 60_000, 0)
    assert.equal(counters.dirty, true)
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
    const ctx = { waitUntil: (p: Promise<unknown>) => void waited.push(p), passThroughOnException() {}, props: {} } as ExecutionContext
    await withRequestContext(ctx, () => new KvCacheStore(fakeKv().kv).set('k', 'v', 300))
    assert.equal(waited.length, 1)
  })
})

describe('keepAlive', () => {
  test('hands work to the request it belongs to, across awaits and in stream callbacks; outside a request it only passes through', async () => {
    const waits = { a: 0, b: 0 }
    const ctx = (name: 'a' | 'b') => ({ waitUntil: () => void waits[name]++, passThroughOnException() {}, props: {} }) as ExecutionContext
    const body = withRequestContext(ctx('a'), () => new ReadableStream({ pull: (controller) => void keepAlive(Promise.resolve()).then(() => controller.close()) }))
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
    assert.deepEqual({ ...line, time: typeof line.time }, { level: 'warn', time: 'string', service: 'switchyard-gateway', keyId: 'k', msg: 'shown' })
  })
})

describe('readWorkerSettings', () => {
  const bindings = { RATE_LIMITER: {}, API_KEY_INDEX: {}, API_KEYS: {} } as unknown as WorkerEnv
  const env = (vars: Record<string, unknown>) => ({ ...bindings, ...vars }) as WorkerEnv
  const config = JSON.stringify({ backend: { url: 'http://10.0.0.1:8000' }, cache: { ttlSeconds: 60 } })

  test('reads the JSON config and the string vars; bindings are not vars', async () => {
    const { config: parsed, signingKey } = readWorkerSettings(env({ GATEWAY_CONFIG_JSON: config, ADMIN_TOKEN: 'a-long-enough-admin-token', LOG_LEVEL: 'warn' }))
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
      [{ GATEWAY_CONFIG_JSON: JSON.stringify({ routing: { regions: [{ name: 'eu', nodes: [{ id: 'p', dns: 'pods.local', port: 80 }] }] } }) }, /nodes found by DNS need the Node gateway/],
      [{ GATEWAY_CONFIG_JSON: config, BACKEND_SIGNING_KEY: '{' }, /BACKEND_SIGNING_KEY: not valid JSON/],
      [{}, /no backend/],
    ]
    for (const [vars, message] of cases) assert.throws(() => readWorkerSettings(env(vars)), message)
  })

  test('the signing key secret must be a private EdDSA or ES256 JWK with a kid', async () => {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
    const publicJwk = JSON.stringify({ ...(await exportJWK(publicKey)), kid: 'k1' })
    assert.throws(() => readWorkerSettings(env({ GATEWAY_CONFIG_JSON: config, BACKEND_SIGNING_KEY: publicJwk })), /BACKEND_SIGNING_KEY: .*private key/)
    const { signingKey } = readWorkerSettings(env({ GATEWAY_CONFIG_JSON: config, BACKEND_SIGNING_KEY: JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'k1' }) }))
    assert.deepEqual([signingKey?.kid, signingKey?.alg], ['k1', 'EdDSA'])
  })
})

