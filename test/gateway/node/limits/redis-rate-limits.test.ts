import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { createRedisRateLimits } from '../../../../gateway/node/limits/redis-rate-limits.ts'
import { createRedis, type RedisClient } from '../../../../gateway/node/stores/redis-client.ts'
import type { Admission, RateLimitStore } from '../../../../gateway/types.ts'
import { type RedisServer, startRedis } from '../../../helpers/redis-server.ts'
import { rateLimitContract, uniqueKey } from '../../limits/contract.ts'
import { recordingHooks, untilReady, waitFor } from '../stores/support.ts'

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
    await a.admit(key, { requests: { limit: 10, windowSeconds: 60 } })
    await a.admit(key, { requests: { limit: 10, windowSeconds: 60 } })
    const third = await b.admit(key, { requests: { limit: 10, windowSeconds: 60 } })
    assert.equal(third.requests!.remaining, 7)
    await a.admit(key, { tokens: { cost: 300, perMinute: 1000 } })
    assert.equal((await b.admit(key, { tokens: { cost: 0, perMinute: 1000 } })).tokens!.remaining, 700)
    const slot = await a.admit(key, { maxConcurrent: 1 })
    assert.equal((await b.admit(key, { maxConcurrent: 1 })).allowed, false)
    if (slot.allowed) await slot.settle(0)
    assert.equal((await b.admit(key, { maxConcurrent: 1 })).allowed, true)
  })

  it('reclaims slots that were never released once they expire', async () => {
    const store = createRedisRateLimits(clients[0], { ...recorded.hooks, slotTtlMs: 300 })
    const key = uniqueKey('leak')
    assert.equal((await store.admit(key, { maxConcurrent: 2 })).allowed, true)
    assert.equal((await store.admit(key, { maxConcurrent: 2 })).allowed, true)
    // Neither is settled, as if the gateway holding them had crashed.
    assert.equal((await store.admit(key, { maxConcurrent: 2 })).allowed, false)
    await waitFor(async () => (await store.admit(key, { maxConcurrent: 2 })).allowed, 'leaked slots to expire')
  })

  it('a refund never lands in a later token window', async () => {
    const [store] = instances
    const key = uniqueKey('late-refund')
    const grant = await store.admit(key, { tokens: { cost: 800, perMinute: 1000 } })
    assert.equal(grant.allowed, true)
    // The window ends (as if a minute had passed) and a new one fills up. (Windows are told apart
    // by their reset time in ms; a real one ends a minute after it started, here a few ms.)
    await new Promise((r) => setTimeout(r, 5))
    await clients[0].del(`sy:{${key}}:tok`)
    assert.equal((await store.admit(key, { tokens: { cost: 900, perMinute: 1000 } })).allowed, true)
    if (grant.allowed) await grant.settle(0)
    assert.equal((await store.admit(key, { tokens: { cost: 0, perMinute: 1000 } })).tokens!.remaining, 100)
  })

  it('namespaces every key under the prefix, with the caller key (an id, not a secret) in a hash tag', async () => {
    const store = createRedisRateLimits(clients[0], { ...recorded.hooks, prefix: 'custom:' })
    await store.hitRequest('ip_abc', 5, 30)
    const grant = await store.admit('key_abc', {
      requests: { limit: 5, windowSeconds: 30 },
      maxConcurrent: 3,
      tokens: { cost: 10, perMinute: 100 },
    })
    const keys = (await clients[0].keys('custom:*')).sort()
    assert.deepEqual(keys, [
      'custom:rl:requests:30s:ip_abc',
      'custom:{key_abc}:req:30s',
      'custom:{key_abc}:slots',
      'custom:{key_abc}:tok',
    ])
    if (grant.allowed) await grant.settle(10)
    for (const key of await clients[0].keys('*')) assert.match(key, /^(sy|custom):/)
  })

  it('sends the admissions (and settles) of one caller made together as one script call each', async () => {
    const [store] = instances
    const key = uniqueKey('batch')
    const scriptCalls = async () => {
      const stats = await clients[1].info('commandstats')
      return [...stats.matchAll(/^cmdstat_(evalsha|eval):calls=(\d+)/gm)].reduce((sum, m) => sum + Number(m[2]), 0)
    }
    const before = await scriptCalls()
    const answers = await Promise.all(
      Array.from({ length: 40 }, () =>
        store.admit(key, {
          requests: { limit: 30, windowSeconds: 60 },
          maxConcurrent: 25,
          tokens: { cost: 10, perMinute: 1000 },
        }),
      ),
    )
    const grants = answers.filter((a) => a.allowed) as Extract<Admission, { allowed: true }>[]
    // In order: the first 25 take the slots, the rest are refused by concurrency and count nothing.
    assert.equal(grants.length, 25)
    assert.deepEqual(
      grants.map((g) => g.requests!.remaining),
      Array.from({ length: 25 }, (_, i) => 29 - i),
    )
    await Promise.all(grants.map((g) => g.settle(4)))
    const calls = (await scriptCalls()) - before
    assert.ok(calls <= 4, `${calls} script calls for 40 admissions and 25 settles`)
    const after = await store.admit(key, { maxConcurrent: 25, tokens: { cost: 0, perMinute: 1000 } })
    assert.equal(after.allowed, true, 'every slot was freed')
    assert.equal(after.tokens!.remaining, 1000 - 25 * 4, 'each settle refunded 6 of its 10 tokens')
  })

  it('used Redis throughout: no fallback while Redis was up', () => {
    assert.deepEqual(recorded.storeErrors, [])
    assert.equal(recorded.count('in memory'), 0)
  })
})
