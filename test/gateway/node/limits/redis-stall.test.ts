import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { createRedisRateLimits } from '../../../../gateway/node/limits/redis-rate-limits.ts'
import { createRedis, type RedisClient } from '../../../../gateway/node/stores/redis-client.ts'
import type { AdmissionRequest, RateLimitStore } from '../../../../gateway/types.ts'
import { type RedisServer, startRedis } from '../../../helpers/redis-server.ts'
import { uniqueKey } from '../../limits/contract.ts'
import { recordingHooks, untilReady, waitFor } from '../stores/support.ts'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const LIMIT = 8

/**
 * 4 clients in a loop on one key (maxConcurrent 8, a token budget), Redis stopped (SIGSTOP) for
 * a while and continued: admissions that timed out on the client but ran late in Redis must not
 * hold slots or tokens afterwards.
 */
describe('Redis admission when Redis stalls (SIGSTOP) under load', () => {
  let server: RedisServer
  let redis: RedisClient
  let raw: Redis
  let store: RateLimitStore
  const recorded = recordingHooks()

  before(async () => {
    server = await startRedis()
    redis = createRedis({ url: server.url, maxBackoffMs: 100 }, recorded.hooks)
    raw = new Redis(server.port, '127.0.0.1')
    await untilReady(redis)
    store = createRedisRateLimits(redis, recorded.hooks)
  })
  after(async () => {
    server?.child.kill('SIGCONT')
    redis?.disconnect()
    raw?.disconnect()
    await server?.stop()
  })

  for (const stallMs of [500, 1000, 3000]) {
    it(`holds only what is really in flight within 2 s of SIGCONT after a ${stallMs} ms stall`, async () => {
      const key = uniqueKey('stall')
      const want: AdmissionRequest = { maxConcurrent: LIMIT, tokens: { cost: 100, perMinute: 1_000_000 } }
      let running = true
      let inFlight = 0
      const client = async () => {
        while (running) {
          const answer = await store.admit(key, want)
          if (!answer.allowed) {
            await sleep(5)
            continue
          }
          inFlight++
          await sleep(2)
          inFlight--
          // The whole reservation is refunded: afterwards no tokens may stay used.
          await answer.settle(0)
        }
      }
      const clients = Array.from({ length: 4 }, client)
      await sleep(100)
      server.child.kill('SIGSTOP')
      await sleep(stallMs)
      server.child.kill('SIGCONT')
      const continued = Date.now()
      await sleep(200)
      running = false
      await Promise.all(clients)
      assert.equal(inFlight, 0)
      // Within 2 s of SIGCONT: no slot held in Redis, no tokens left reserved.
      await waitFor(
        async () => (await raw.zcard(`sy:{${key}}:slots`)) === 0,
        'leaked slots to be gone',
        2000 - (Date.now() - continued),
      )
      const used = Number((await raw.hget(`sy:{${key}}:tok`, 'u')) ?? 0)
      assert.equal(used, 0, 'no token reservation left behind')
      // And the whole limit can be taken again, from Redis.
      const grants = await Promise.all(Array.from({ length: LIMIT }, () => store.admit(key, { maxConcurrent: LIMIT })))
      assert.ok(
        grants.every((g) => g.allowed),
        'all 8 slots are free',
      )
      assert.equal(await raw.zcard(`sy:{${key}}:slots`), LIMIT, 'taken in Redis, not in the memory fallback')
      for (const g of grants) if (g.allowed) await g.settle(0)
    })
  }

  it('a settle made while the client is disconnected is sent when it reconnects: the slot is released in Redis', async () => {
    const key = uniqueKey('blip')
    const grant = await store.admit(key, { maxConcurrent: 2 })
    assert.ok(grant.allowed)
    assert.equal(await raw.zcard(`sy:{${key}}:slots`), 1)
    redis.disconnect()
    await waitFor(() => redis.status !== 'ready', 'the client to be disconnected')
    await grant.settle(0)
    assert.equal(await raw.zcard(`sy:{${key}}:slots`), 1, 'not sent yet')
    await redis.connect()
    await untilReady(redis)
    await waitFor(async () => (await raw.zcard(`sy:{${key}}:slots`)) === 0, 'the held-back settle to release the slot')
  })

  it('an admission that ran in time but whose reply the client read too late (its event loop was blocked) gives back what it took', async () => {
    const key = uniqueKey('late-reader')
    const want: AdmissionRequest = {
      requests: { limit: 100, windowSeconds: 60 },
      maxConcurrent: 2,
      tokens: { cost: 100, perMinute: 1000 },
    }
    const warm = await store.admit(key, want)
    assert.ok(warm.allowed)
    await warm.settle(0)
    const pending = store.admit(key, want)
    // Redis answers at once, but this process reads the reply only after the command timeout fired.
    const until = performance.now() + 600
    while (performance.now() < until) {}
    const answer = await pending
    assert.ok(answer.allowed, 'answered from memory')
    assert.ok(recorded.storeErrors.includes('admit'))
    await waitFor(async () => (await raw.zcard(`sy:{${key}}:slots`)) === 0, 'the undo to release the slot', 2000)
    assert.equal(Number(await raw.hget(`sy:{${key}}:tok`, 'u')), 0, 'its tokens given back')
    assert.equal(
      Number(await raw.hget(`sy:{${key}}:req:60s`, 'u')),
      1,
      'its request given back (only the warm-up one counts)',
    )
    if (answer.allowed) await answer.settle(0)
  })

  it('a release sent during a stall runs when Redis continues, even the first ever on a server (its script is loaded at connect)', async () => {
    await raw.script('FLUSH')
    redis.disconnect()
    await waitFor(() => redis.status === 'end', 'the client to be disconnected')
    await redis.connect()
    await untilReady(redis)
    const key = uniqueKey('first-settle')
    const grant = await store.admit(key, { maxConcurrent: 2 })
    assert.ok(grant.allowed)
    server.child.kill('SIGSTOP')
    try {
      await grant.settle(0)
      await sleep(400)
    } finally {
      server.child.kill('SIGCONT')
    }
    await waitFor(async () => (await raw.zcard(`sy:{${key}}:slots`)) === 0, 'the release to run', 2000)
  })
})
