import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { createKeyLookup } from '../../../gateway/auth/api-keys.ts'
import { authenticate } from '../../../gateway/auth/middleware.ts'
import { ipGuard } from '../../../gateway/limits/ip-guard.ts'
import { createMemoryRateLimits } from '../../../gateway/limits/rate-limit-store.ts'
import { createPromMetrics } from '../../../gateway/node/prom-metrics.ts'
import { DEFAULT_LIMITS, hexSha256, MemoryKeyStore, RecordingLogger } from '../auth/helpers.ts'

const VALID = 'sy-valid-key-behind-the-nat'

/** The guard in front of the real authentication stage, with a store key and the real Prometheus metrics. */
async function buildGuarded(limit: number) {
  const store = new MemoryKeyStore()
  await store.create({
    id: 'team',
    hash: await hexSha256(VALID),
    tenant: 'acme',
    limits: {},
    createdAt: 'now',
    source: 'store',
  })
  const metrics = createPromMetrics({ defaultMetrics: false })
  const app = new Hono()
  app.use(
    '/v1/*',
    ipGuard({
      store: createMemoryRateLimits(),
      limit,
      windowSeconds: 60,
      metrics,
      ip: (c) => c.req.header('x-test-ip') ?? 'none',
    }),
  )
  app.use(
    '/v1/*',
    authenticate({
      lookup: createKeyLookup({ configKeys: [], store }),
      defaultLimits: DEFAULT_LIMITS,
      logger: new RecordingLogger(),
    }),
  )
  app.get('/v1/whoami', (c) => c.json({ id: c.get('principal').id }))
  app.onError((error) =>
    error instanceof HTTPException ? error.getResponse() : new Response('unexpected', { status: 500 }),
  )
  const get = async (ip: string, headers: Record<string, string> = {}) =>
    app.request('/v1/whoami', { headers: { 'x-test-ip': ip, ...headers } })
  const metric = async (name: string) => {
    const text = await metrics.registry.metrics()
    return Number(text.match(new RegExp(`^${name.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm'))?.[1] ?? 0)
  }
  return { store, get, metric }
}

describe('per-IP failed-authentication guard', () => {
  test('a flood of wrong keys from one address blocks the failures only: a valid key from that address still gets 200', async () => {
    const { store, get, metric } = await buildGuarded(20)
    const statuses = new Map<number, number>()
    for (let i = 0; i < 300; i++) {
      const res = await get('198.51.100.7', { authorization: `Bearer sy-wrong-${i}` })
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    }
    assert.deepEqual(Object.fromEntries(statuses), { 401: 20, 429: 280 })
    const lookupsDuringFlood = store.findCalls

    const valid = await get('198.51.100.7', { authorization: `Bearer ${VALID}` })
    assert.equal(valid.status, 200)
    assert.deepEqual(await valid.json(), { id: 'team' })
    assert.equal((await get('198.51.100.7', { 'x-api-key': VALID })).status, 200)
    // Still blocked for failures, and for requests with no usable credential (refused before any lookup).
    assert.equal((await get('198.51.100.7', { authorization: 'Bearer sy-wrong-again' })).status, 429)
    const before = store.findCalls
    assert.equal((await get('198.51.100.7')).status, 429)
    assert.equal((await get('198.51.100.7', { authorization: 'Basic abc' })).status, 429)
    assert.equal(store.findCalls, before, 'no lookup for a request without a well-formed credential')
    assert.ok(lookupsDuringFlood <= 300)
    // Other addresses are not affected.
    assert.equal((await get('198.51.100.8', { authorization: 'Bearer sy-wrong' })).status, 401)

    // The guard's state is in the metrics.
    assert.equal(await metric('switchyard_gateway_ip_guard_blocked_addresses'), 1)
    assert.equal(await metric('switchyard_gateway_ip_guard_events_total{event="blocked"}'), 1)
    assert.equal(await metric('switchyard_gateway_ip_guard_events_total{event="passed"}'), 2)
    assert.equal(await metric('switchyard_gateway_ip_guard_events_total{event="refused"}'), 283)
    assert.equal(await metric('switchyard_gateway_rate_limited_total{limit="ip"}'), 283)
  })

  test('valid keys never count: an address with only valid requests is never blocked', async () => {
    const { get } = await buildGuarded(3)
    for (let i = 0; i < 50; i++)
      assert.equal((await get('198.51.100.9', { authorization: `Bearer ${VALID}` })).status, 200)
    assert.deepEqual(await Promise.all([1, 2, 3].map(() => get('198.51.100.9').then((r) => r.status))), [401, 401, 401])
    assert.equal((await get('198.51.100.9')).status, 429)
  })
})
