import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createRedisRateLimits } from '../../../gateway/limits/rate-limit-store.ts'
import { createRedis, type RedisClient } from '../../../gateway/stores/redis-client.ts'
import type { RateLimitStore } from '../../../gateway/types.ts'
import { type RedisServer, startRedis } from '../../helpers/redis-server.ts'
import { recordingHooks, untilReady, waitFor } from '../stores/support.ts'
import { rateLimitContract, uniqueKey } from './contract.ts'

describe('createRedisRateLimits', () => {
  let server: RedisServer
  const clients: RedisClient[] = []
  const recorded = recordingHooks()
  // Two gateway instances: own client, own limiter objects, same Redis counters.
  let instances: RateLimitStore[] = []

  before(async () => {
    server = await startRedis()
    for (let i = 0; i < 2; i++) clients.push(createRedis({ url: server.url }, recorded.hooks))
    await Promise.all(clients.map(untilReady))
    instances = clients.map((redis) => createRedisRateLimits(redis, recorded.hooks))
  })
  after(async () => {
    for (const client of clients) client.disconnect()
    await server?.stop()
  })

  rateLimitContract(() => instances)

  it('shares counters between instances', async () => {
    const [a, b] = instances
    const key = uniqueKey('shared')
    await a.hitRequest(key, 10, 60)
    await a.hitRequest(key, 10, 60)
    assert.equal((await b.hitRequest(key, 10, 60)).state.remaining, 7)
    await a.reserveTokens(key, 300, 1000)
    assert.equal((await b.peekTokens(key, 1000)).remaining, 700)
    const slot = await a.acquireSlot(key, 1)
    assert.equal((await b.acquireSlot(key, 1)).allowed, false)
    if (slot.allowed) await slot.release()
    assert.equal((await b.acquireSlot(key, 1)).allowed, true)
  })

  it('reclaims slots that were never released once they expire', async () => {
    const store = createRedisRateLimits(clients[0], { ...recorded.hooks, slotTtlMs: 300 })
    const key = uniqueKey('leak')
    assert.equal((await store.acquireSlot(key, 2)).allowed, true)
    assert.equal((await store.acquireSlot(key, 2)).allowed, true)
    // Neither is released, as if the gateway holding them had crashed.
    assert.equal((await store.acquireSlot(key, 2)).allowed, false)
    await waitFor(async () => (await store.acquireSlot(key, 2)).allowed, 'leaked slots to expire')
  })

  it('namespaces every key under the prefix, with the caller key (an id, not a secret) at the end', async () => {
    const store = createRedisRateLimits(clients[0], { ...recorded.hooks, prefix: 'custom:' })
    await store.hitRequest('key_abc', 5, 30)
    await store.reserveTokens('key_abc', 10, 100)
    const slot = await store.acquireSlot('key_abc', 3)
    const keys = (await clients[0].keys('custom:*')).sort()
    assert.deepEqual(keys, ['custom:rl:requests:30s:key_abc', 'custom:rl:tokens:60s:key_abc', 'custom:slots:key_abc'])
    if (slot.allowed) await slot.release()
    for (const key of await clients[0].keys('*')) assert.match(key, /^(sy|custom):/)
  })

  it('used Redis throughout: no fallback while Redis was up', () => {
    assert.deepEqual(recorded.storeErrors, [])
    assert.equal(recorded.count('in memory'), 0)
  })
})
