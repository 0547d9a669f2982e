import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { createRedisRateLimits } from '../../../../gateway/node/limits/redis-rate-limits.ts'
import { RedisKeyStore } from '../../../../gateway/node/stores/redis.ts'
import { createRedis, type RedisClient } from '../../../../gateway/node/stores/redis-client.ts'
import { type RedisServer, startRedis } from '../../../helpers/redis-server.ts'
import { keyRecord } from '../../stores/key-store-contract.ts'
import { recordingHooks, type SentinelProcess, startSentinel, untilReady, waitFor } from './support.ts'

describe('Redis through Sentinel', () => {
  let master: RedisServer
  let replica: RedisServer
  let sentinel: SentinelProcess
  let redis: RedisClient
  let direct: Redis

  before(async () => {
    // Full sync without the default 5 s wait for more replicas to share it.
    master = await startRedis(['--repl-diskless-sync-delay', '0'])
    replica = await startRedis(['--replicaof', '127.0.0.1', String(master.port)])
    direct = new Redis(master.port, '127.0.0.1')
    direct.on('error', () => {}) // the master is killed below
    // Sentinel learns about replicas from the master's INFO, which it reads at once on start
    // and then only every 10 s: attach the replica first.
    await waitFor(async () => /slave0:.*state=online/.test(await direct.info('replication')), 'replica in sync')
    sentinel = await startSentinel(master.port, 'mymaster')
    redis = createRedis(
      { sentinels: [{ host: '127.0.0.1', port: sentinel.port }], sentinelName: 'mymaster', maxBackoffMs: 100 },
      recordingHooks().hooks,
    )
    await untilReady(redis)
  })
  after(async () => {
    redis?.disconnect()
    direct?.disconnect()
    await sentinel?.stop()
    await replica?.stop()
    await master?.stop()
  })

  it('finds the master through the sentinel', async () => {
    const asker = new Redis(sentinel.port, '127.0.0.1')
    try {
      const [host, port] = (await asker.call('SENTINEL', 'get-master-addr-by-name', 'mymaster')) as string[]
      assert.deepEqual([host, Number(port)], ['127.0.0.1', master.port])
    } finally {
      asker.disconnect()
    }
    assert.equal(await redis.set('probe', '1'), 'OK')
    assert.equal(await direct.get('probe'), '1', 'the write landed on the master')
  })

  it('runs the key store', async () => {
    const store = new RedisKeyStore(redis)
    const record = keyRecord()
    await store.create(record)
    assert.deepEqual(await store.findByHash(record.hash), record)
    assert.deepEqual(await store.list(), [record])
    assert.equal(await store.revoke(record.id), true)
    assert.equal(await store.findByHash(record.hash), null)
    assert.equal(await direct.exists(`sy:{keys}:hash:${record.hash}`), 0)
  })

  it('runs a token reservation and its settle on the master', async () => {
    const recorded = recordingHooks()
    const limits = createRedisRateLimits(redis, recorded.hooks)
    const grant = await limits.admit('key_s', { maxConcurrent: 1, tokens: { cost: 700, perMinute: 1000 } })
    assert.equal(grant.allowed, true)
    assert.equal((await limits.admit('key_s', { tokens: { cost: 400, perMinute: 1000 } })).allowed, false)
    assert.equal(await direct.hget('sy:{key_s}:tok', 'u'), '700')
    assert.equal(await direct.zcard('sy:{key_s}:slots'), 1)
    if (grant.allowed) await grant.settle(500)
    assert.equal(await direct.hget('sy:{key_s}:tok', 'u'), '500', 'the unused 200 were refunded')
    assert.equal(await direct.zcard('sy:{key_s}:slots'), 0, 'the slot was freed')
    assert.deepEqual(recorded.storeErrors, [], 'Redis answered: no in-memory fallback')
  })

  it('follows a failover to the promoted replica', async () => {
    const store = new RedisKeyStore(redis, { prefix: 'fo:' })
    const record = keyRecord()
    await store.create(record)
    // WAIT counts the writes of its own connection: ask on the client that wrote.
    // (Short WAITs: the client's command timeout is 300 ms.)
    await waitFor(async () => (await redis.call('WAIT', '1', '100')) === 1, 'the write to reach the replica')
    master.child.kill('SIGKILL')
    // Sentinel notices after down-after-milliseconds (500 ms), promotes the replica, and the client
    // asks it for the new master on its next reconnect.
    await waitFor(
      async () => (await store.findByHash(record.hash).catch(() => null)) !== null,
      'the key store on the new master',
      20_000,
    ).catch((error) => {
      throw new Error(`${error.message}; sentinel said:\n${sentinel.output()}`)
    })
    const promoted = new Redis(replica.port, '127.0.0.1')
    try {
      assert.match(await promoted.info('replication'), /role:master/)
    } finally {
      promoted.disconnect()
    }
    assert.equal(await store.revoke(record.id), true, 'writes go to the new master')
  })
})
