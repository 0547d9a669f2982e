import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { RedisCacheStore, RedisKeyStore } from '../../../../gateway/node/stores/redis.ts'
import { createRedis, type RedisClient } from '../../../../gateway/node/stores/redis-client.ts'
import { type RedisServer, startRedis } from '../../../helpers/redis-server.ts'
import { keyRecord, keyStoreContract } from '../../stores/key-store-contract.ts'
import { recordingHooks, timed, untilReady, waitFor } from './support.ts'

const COMMAND_TIMEOUT_MS = 300
// Slack for a loaded 2-core machine; the point is "bounded", not "fast".
const BOUNDED_MS = COMMAND_TIMEOUT_MS + 1500

describe('RedisKeyStore', () => {
  let server: RedisServer
  let instanceA: RedisClient
  let instanceB: RedisClient
  let prefixes = 0

  before(async () => {
    server = await startRedis()
    instanceA = createRedis({ url: server.url }, recordingHooks().hooks)
    instanceB = createRedis({ url: server.url }, recordingHooks().hooks)
    await Promise.all([untilReady(instanceA), untilReady(instanceB)])
  })
  after(async () => {
    instanceA?.disconnect()
    instanceB?.disconnect()
    await server?.stop()
  })

  // A fresh namespace per test, so the contract's list() sees only its own keys.
  keyStoreContract(() => new RedisKeyStore(instanceA, { prefix: `t${++prefixes}:` }))

  it('a revocation on one instance is seen at once by another instance', async () => {
    const onA = new RedisKeyStore(instanceA, { prefix: 'shared:' })
    const onB = new RedisKeyStore(instanceB, { prefix: 'shared:' })
    const record = keyRecord()
    await onA.create(record)
    assert.deepEqual(await onB.findByHash(record.hash), record)
    assert.equal(await onA.revoke(record.id), true)
    // No cache, no propagation delay: B's very next lookup misses.
    assert.equal(await onB.findByHash(record.hash), null)
    assert.equal((await onB.list()).find((r) => r.id === record.id)?.revoked, true)
    assert.equal(await onB.revoke(record.id), false)
  })

  it('looks a key up with exactly one command', async () => {
    const store = new RedisKeyStore(instanceA, { prefix: 'rt:' })
    const record = keyRecord()
    await store.create(record)
    const observer = new Redis(server.port, '127.0.0.1')
    try {
      await observer.config('RESETSTAT')
      await store.findByHash(record.hash)
      const stats = await observer.info('commandstats')
      const calls = [...stats.matchAll(/cmdstat_(\w+):calls=(\d+)/g)].filter(
        ([, name]) => name !== 'config' && name !== 'info',
      )
      assert.deepEqual(
        calls.map(([, name, n]) => [name, Number(n)]),
        [['get', 1]],
      )
    } finally {
      observer.disconnect()
    }
  })

  it('keeps every key under the prefix and in one cluster slot', async () => {
    const store = new RedisKeyStore(instanceA, { prefix: 'slot:' })
    const record = keyRecord()
    await store.create(record)
    await store.revoke(record.id)
    const keys = await instanceA.keys('slot:*')
    assert.ok(keys.length >= 2)
    for (const key of keys) assert.match(key, /^slot:\{keys\}:/)
  })

  it('propagates Redis errors, without hanging, when Redis is down', async () => {
    const down = await startRedis()
    const client = createRedis({ url: down.url, commandTimeoutMs: COMMAND_TIMEOUT_MS }, recordingHooks().hooks)
    try {
      await untilReady(client)
      await down.stop()
      const store = new RedisKeyStore(client)
      const { ms } = await timed(() => assert.rejects(store.findByHash('a'.repeat(64))))
      assert.ok(ms < BOUNDED_MS, `took ${ms} ms`)
      await assert.rejects(store.create(keyRecord()))
    } finally {
      client.disconnect()
      await down.stop()
    }
  })
})

describe('RedisCacheStore', () => {
  let server: RedisServer
  let redis: RedisClient
  let recorded: ReturnType<typeof recordingHooks>

  before(async () => {
    server = await startRedis()
    recorded = recordingHooks()
    redis = createRedis({ url: server.url, commandTimeoutMs: COMMAND_TIMEOUT_MS, maxBackoffMs: 100 }, recorded.hooks)
    await untilReady(redis)
  })
  after(async () => {
    redis?.disconnect()
    await server?.stop()
  })

  it('gets what was set, under the prefix, until the TTL expires', async () => {
    const cache = new RedisCacheStore(redis, { metrics: recorded.hooks.metrics, prefix: 'c:' })
    await cache.set('k', 'value', 60)
    assert.equal(await cache.get('k'), 'value')
    assert.equal(await redis.get('c:k'), 'value')
    const ttl = await redis.pttl('c:k')
    assert.ok(ttl > 50_000 && ttl <= 60_000, `pttl ${ttl}`)

    await cache.set('short', 'gone soon', 0.3)
    assert.equal(await cache.get('short'), 'gone soon')
    await waitFor(async () => (await cache.get('short')) === null, 'cache entry expiry')
    assert.equal(await cache.get('never set'), null)
  })

  it('with Redis stopped: get answers null and set does nothing, fast, counted as store errors', async () => {
    const cache = new RedisCacheStore(redis, { metrics: recorded.hooks.metrics })
    await cache.set('kept', 'v', 60)
    await server.stop()
    const errorsBefore = recorded.storeErrors.length
    const got = await timed(() => cache.get('kept'))
    const set = await timed(() => cache.set('other', 'v', 60))
    assert.equal(got.value, null)
    assert.equal(set.value, undefined)
    assert.ok(got.ms < BOUNDED_MS && set.ms < BOUNDED_MS, `get ${got.ms} ms, set ${set.ms} ms`)
    assert.ok(recorded.storeErrors.slice(errorsBefore).includes('cache_get'))
    assert.ok(recorded.storeErrors.slice(errorsBefore).includes('cache_set'))

    await server.restart()
    await untilReady(redis)
    await cache.set('again', 'v2', 60)
    assert.equal(await cache.get('again'), 'v2')
  })

  it('with Redis hung (SIGSTOP): get and set give up after the command timeout', async () => {
    const cache = new RedisCacheStore(redis, { metrics: recorded.hooks.metrics })
    await cache.set('kept', 'v', 60)
    server.child.kill('SIGSTOP')
    try {
      const got = await timed(() => cache.get('kept'))
      const set = await timed(() => cache.set('other', 'v', 60))
      assert.equal(got.value, null)
      assert.ok(got.ms >= COMMAND_TIMEOUT_MS - 50, `gave up after ${got.ms} ms: before the timeout?`)
      assert.ok(got.ms < BOUNDED_MS && set.ms < BOUNDED_MS, `get ${got.ms} ms, set ${set.ms} ms`)
    } finally {
      server.child.kill('SIGCONT')
    }
    await waitFor(
      async () => (await new RedisCacheStore(redis, { metrics: recorded.hooks.metrics }).get('kept')) === 'v',
      'cache answering after SIGCONT',
    )
  })
})
