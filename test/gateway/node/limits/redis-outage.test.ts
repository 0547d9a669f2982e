import assert from 'node:assert/strict'
import { once } from 'node:events'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { createRedisRateLimits } from '../../../../gateway/node/limits/redis-rate-limits.ts'
import { createRedis, type RedisClient } from '../../../../gateway/node/stores/redis-client.ts'
import type { RateLimitStore } from '../../../../gateway/types.ts'
import { type RedisServer, startRedis } from '../../../helpers/redis-server.ts'
import { granted, peekTokens } from '../../limits/contract.ts'
import { recordingHooks, timed, untilReady, waitFor } from '../stores/support.ts'

// Generous for a loaded machine: "answers" means well under a second, not stalled for the TCP/retry timeouts.
const ANSWERS_WITHIN_MS = 2000

describe('Redis rate limits when Redis is killed mid-test', () => {
  let server: RedisServer
  let redisA: RedisClient
  let redisB: RedisClient
  let a: RateLimitStore
  let b: RateLimitStore
  const recordedA = recordingHooks()
  const recordedB = recordingHooks()

  before(async () => {
    server = await startRedis()
    redisA = createRedis({ url: server.url, maxBackoffMs: 100 }, recordedA.hooks)
    redisB = createRedis({ url: server.url, maxBackoffMs: 100 }, recordedB.hooks)
    await Promise.all([untilReady(redisA), untilReady(redisB)])
    a = createRedisRateLimits(redisA, recordedA.hooks)
    b = createRedisRateLimits(redisB, recordedB.hooks)
  })
  after(async () => {
    redisA?.disconnect()
    redisB?.disconnect()
    await server?.stop()
  })

  it('counts in Redis, keeps limiting in memory while Redis is down, and uses Redis again after it restarts', async () => {
    // 1. Up: both instances share the Redis counters.
    assert.equal((await a.hitRequest('k', 5, 60)).state.remaining, 4)
    assert.equal((await a.hitRequest('k', 5, 60)).state.remaining, 3)
    assert.equal((await b.hitRequest('k', 5, 60)).state.remaining, 2)
    assert.equal((await a.admit('t', { tokens: { cost: 400, perMinute: 1000 } })).allowed, true)
    assert.equal((await peekTokens(b, 't', 1000)).remaining, 600)

    // 2. Killed: every operation still answers, promptly, from the insurance limiters.
    server.child.kill('SIGKILL')
    await once(server.child, 'exit')
    const hits = []
    for (let i = 0; i < 6; i++) {
      const { value, ms } = await timed(() => a.hitRequest('k', 5, 60))
      assert.ok(ms < ANSWERS_WITHIN_MS, `hit took ${ms} ms`)
      hits.push(value.allowed)
    }
    // In-memory counters start empty, and still enforce the limit.
    assert.deepEqual(hits, [true, true, true, true, true, false])
    const reserve = await timed(() => a.admit('t', { tokens: { cost: 700, perMinute: 1000 } }))
    assert.ok(reserve.ms < ANSWERS_WITHIN_MS, `admit took ${reserve.ms} ms`)
    const reserved = granted(reserve.value)
    assert.equal(reserved.tokens!.remaining, 300)
    assert.equal((await a.admit('t', { tokens: { cost: 400, perMinute: 1000 } })).allowed, false)
    await reserved.settle(500) // 200 of the 700 unused: refunded
    assert.equal((await peekTokens(a, 't', 1000)).remaining, 500)
    const slot = granted(await a.admit('c', { maxConcurrent: 1 }))
    assert.equal((await a.admit('c', { maxConcurrent: 1 })).allowed, false)
    await slot.settle(0)
    assert.equal((await a.admit('c', { maxConcurrent: 1 })).allowed, true)

    // The outage was logged once and counted, not logged per error. (The operations above can
    // all fail before the client has processed the socket close, so wait for it to notice.)
    await waitFor(() => recordedA.storeUp.includes(false), 'the client to notice the outage')
    for (let i = 0; i < 20; i++) await a.hitRequest('k', 5, 60)
    assert.equal(recordedA.count('redis unavailable'), 1)
    assert.equal(recordedA.count('rate limits counting in memory'), 1)
    assert.ok(recordedA.storeErrors.some((op) => op.startsWith('rate_limit')))
    assert.ok(recordedA.storeErrors.includes('admit'))
    assert.deepEqual(recordedA.storeUp, [true, false])

    // 3. Restarted (empty: no persistence): the clients reconnect on their own.
    await server.restart()
    await Promise.all([untilReady(redisA), untilReady(redisB)])
    assert.equal(recordedA.count('redis available again'), 1)
    assert.deepEqual(recordedA.storeUp, [true, false, true])

    // Redis counters again: shared between instances, and visible in Redis itself.
    const errorsBefore = recordedA.storeErrors.length
    assert.equal((await a.hitRequest('k', 5, 60)).state.remaining, 4)
    assert.equal((await b.hitRequest('k', 5, 60)).state.remaining, 3)
    assert.equal(granted(await a.admit('t', { tokens: { cost: 300, perMinute: 1000 } })).tokens!.remaining, 700)
    assert.equal((await peekTokens(b, 't', 1000)).remaining, 700)
    const held = granted(await a.admit('c2', { maxConcurrent: 1 }))
    assert.equal((await b.admit('c2', { maxConcurrent: 1 })).allowed, false)
    await held.settle(0)
    assert.equal((await b.admit('c2', { maxConcurrent: 1 })).allowed, true)
    const raw = new Redis(server.port, '127.0.0.1')
    try {
      assert.equal(await raw.get('sy:rl:requests:60s:k'), '2')
      assert.equal(await raw.hget('sy:{t}:tok', 'u'), '300')
      assert.equal(await raw.zcard('sy:{c2}:slots'), 1, 'the second grant holds its slot in Redis')
    } finally {
      raw.disconnect()
    }
    assert.equal(recordedA.storeErrors.length, errorsBefore, 'no fallback once Redis is back')
  })
})

describe('Redis admission while Redis hangs (SIGSTOP)', () => {
  let server: RedisServer
  let redis: RedisClient
  let store: RateLimitStore
  const recorded = recordingHooks()

  before(async () => {
    server = await startRedis()
    redis = createRedis({ url: server.url, maxBackoffMs: 100 }, recorded.hooks)
    await untilReady(redis)
    store = createRedisRateLimits(redis, recorded.hooks)
  })
  after(async () => {
    server?.child.kill('SIGCONT')
    redis?.disconnect()
    await server?.stop()
  })

  it('answers every admission of a caller from memory within the command timeout, queued ones included, and uses Redis again after', async () => {
    const want = {
      requests: { limit: 1000, windowSeconds: 60 },
      maxConcurrent: 100,
      tokens: { cost: 10, perMinute: 100_000 },
    }
    granted(await store.admit('hang', want))
    server.child.kill('SIGSTOP')
    try {
      // The first goes out at once and hangs; the rest queue behind it, then go as one call that hangs too.
      const started = performance.now()
      const answers = await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          await new Promise((r) => setTimeout(r, i * 10))
          return store.admit('hang', want)
        }),
      )
      const ms = performance.now() - started
      assert.ok(
        answers.every((a) => a.allowed),
        'the memory fallback admits them',
      )
      assert.ok(ms < ANSWERS_WITHIN_MS, `20 admissions took ${ms.toFixed(0)} ms`)
      assert.ok(recorded.storeErrors.includes('admit'), JSON.stringify(recorded.storeErrors))
      for (const answer of answers) if (answer.allowed) await answer.settle(10)
    } finally {
      server.child.kill('SIGCONT')
    }
    // Back: admissions count in Redis again (the one before the hang was the first there).
    await waitFor(
      async () => (await store.admit('hang', want)).allowed && Number(await redis.hget('sy:{hang}:req:60s', 'u')) >= 2,
      'admissions to count in Redis again',
    )
  })
})
