import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { Cluster } from 'ioredis'
import { createRedisRateLimits } from '../../../../gateway/node/limits/redis-rate-limits.ts'
import { RedisCacheStore, RedisKeyStore } from '../../../../gateway/node/stores/redis.ts'
import { createRedis, type RedisClient } from '../../../../gateway/node/stores/redis-client.ts'
import type { RateLimitStore } from '../../../../gateway/types.ts'
import { freePort, type RedisServer, startRedis } from '../../../helpers/redis-server.ts'
import { keyRecord, keyStoreContract } from '../../stores/key-store-contract.ts'
import { recordingHooks, untilReady, waitFor } from './support.ts'

/** Runs `redis-cli --cluster create` over the nodes (three masters, no replicas). */
async function createCluster(ports: number[]): Promise<void> {
  const child = spawn(
    'redis-cli',
    ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let output = ''
  child.stdout.on('data', (d) => (output += d))
  child.stderr.on('data', (d) => (output += d))
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  if (code !== 0 || !output.includes('All 16384 slots covered')) throw new Error(`cluster create failed: ${output}`)
}

describe('Redis Cluster', () => {
  const nodes: RedisServer[] = []
  let redis: RedisClient
  const recorded = recordingHooks()

  before(async () => {
    for (let i = 0; i < 3; i++) {
      // The cluster bus defaults to port + 10000, which may be taken or past 65535: pick it too.
      const busPort = await freePort()
      nodes.push(
        await startRedis([
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          'nodes.conf',
          '--cluster-port',
          String(busPort),
          '--cluster-node-timeout',
          '2000',
        ]),
      )
    }
    await createCluster(nodes.map((n) => n.port))
    // A generous command timeout: these tests check placement over slots, and a loaded machine (test files run in parallel) must not push a command onto the in-memory fallback.
    redis = createRedis(
      { clusterNodes: nodes.map((n) => ({ host: '127.0.0.1', port: n.port })), commandTimeoutMs: 5_000 },
      recorded.hooks,
    )
    assert.ok(redis instanceof Cluster)
    await untilReady(redis)
    // Every node must agree the cluster is up before writes to any slot succeed.
    await waitFor(async () => (await redis.cluster('INFO')).includes('cluster_state:ok'), 'cluster_state:ok')
  })
  after(async () => {
    redis?.disconnect()
    for (const node of nodes) await node.stop()
  })

  let prefixes = 0
  describe('key store', () => keyStoreContract(() => new RedisKeyStore(redis, { prefix: `c${++prefixes}:` })))

  it('cache get/set', async () => {
    const cache = new RedisCacheStore(redis, { metrics: recorded.hooks.metrics })
    for (let i = 0; i < 20; i++) await cache.set(`sy:cache:${i}`, `v${i}`, 60)
    for (let i = 0; i < 20; i++) assert.equal(await cache.get(`sy:cache:${i}`), `v${i}`)
  })

  it('rate limits and admissions on keys spread over the slots', async () => {
    const limits: RateLimitStore = createRedisRateLimits(redis, recorded.hooks)
    const peek = async (key: string) =>
      (await limits.admit(key, { tokens: { cost: 0, perMinute: 1000 } })).tokens!.remaining
    const want = (cost: number) => ({
      requests: { limit: 2, windowSeconds: 60 },
      maxConcurrent: 1,
      tokens: { cost, perMinute: 1000 },
    })
    const slotsUsed = new Set<number>()
    for (let i = 0; i < 10; i++) {
      const key = `key_${i}`
      assert.equal((await limits.hitRequest(key, 2, 60)).allowed, true)
      // One script over the caller's three keys (requests, slots, tokens): they share a hash tag.
      const grant = await limits.admit(key, want(600))
      assert.equal(grant.allowed, true, JSON.stringify(grant))
      if (!grant.allowed) continue
      assert.equal(grant.requests!.remaining, 1)
      assert.equal(grant.tokens!.remaining, 400)
      const busy = await limits.admit(key, want(100))
      assert.ok(!busy.allowed && busy.refusedBy === 'concurrency', JSON.stringify(busy))
      await grant.settle(200)
      assert.equal(await peek(key), 800, 'the unused 400 were refunded')
      const tooMany = await limits.admit(key, want(900))
      assert.ok(!tooMany.allowed && tooMany.refusedBy === 'tokens', JSON.stringify(tooMany))
      const last = await limits.admit(key, want(800))
      assert.equal(last.allowed, true, 'the slot was freed and the refused admission counted nothing')
      if (last.allowed) await last.settle(800)
      slotsUsed.add(Number(await redis.cluster('KEYSLOT', `sy:{${key}}:tok`)))
    }
    assert.ok(slotsUsed.size > 1, 'the callers hash to different slots')
    assert.deepEqual(recorded.storeErrors, [], 'every operation ran on the cluster, none on the in-memory fallback')
  })

  it('keeps a caller’s admission keys in a single slot', async () => {
    const limits: RateLimitStore = createRedisRateLimits(redis, recorded.hooks)
    const grant = await limits.admit('key_one', {
      requests: { limit: 5, windowSeconds: 30 },
      maxConcurrent: 2,
      tokens: { cost: 10, perMinute: 100 },
    })
    assert.equal(grant.allowed, true)
    const keys = ['sy:{key_one}:req:30s', 'sy:{key_one}:slots', 'sy:{key_one}:tok']
    const slots = await Promise.all(keys.map((k) => redis.cluster('KEYSLOT', k)))
    assert.equal(new Set(slots).size, 1)
    for (const k of keys) assert.equal(await redis.exists(k), 1, k)
    if (grant.allowed) await grant.settle(10)
    assert.deepEqual(recorded.storeErrors, [])
  })

  it('keeps the key store in a single slot', async () => {
    const store = new RedisKeyStore(redis, { prefix: 'one:' })
    const record = keyRecord()
    await store.create(record)
    const slots = await Promise.all(
      ['one:{keys}:ids', `one:{keys}:id:${record.id}`, `one:{keys}:hash:${record.hash}`].map((k) =>
        redis.cluster('KEYSLOT', k),
      ),
    )
    assert.equal(new Set(slots).size, 1)
  })
})
