import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { Redis } from 'ioredis'
import { createRedis, isReady } from '../../../../gateway/node/stores/redis-client.ts'
import { type RedisServer, startRedis } from '../../../helpers/redis-server.ts'
import { recordingHooks, timed, untilReady, waitFor } from './support.ts'

describe('createRedis', () => {
  const servers: RedisServer[] = []
  const clients: { disconnect(): void }[] = []
  after(async () => {
    for (const client of clients) client.disconnect()
    for (const server of servers) await server.stop()
  })

  it('is configured to fail fast and reconnect forever', async () => {
    const server = await startRedis()
    servers.push(server)
    const redis = createRedis({ url: server.url, commandTimeoutMs: 250 }, recordingHooks().hooks)
    clients.push(redis)
    assert.ok(redis instanceof Redis)
    const { options } = redis
    assert.equal(options.enableOfflineQueue, false)
    assert.equal(options.commandTimeout, 250)
    assert.ok(typeof options.maxRetriesPerRequest === 'number' && options.maxRetriesPerRequest <= 2)
    const retry = options.retryStrategy!
    assert.equal(typeof retry(1), 'number')
    assert.equal(retry(10_000), 2000, 'backoff is capped and never gives up')
    await untilReady(redis)
    assert.equal(await redis.ping(), 'PONG')
  })

  it('logs an outage once however many errors it causes, and once when Redis is back', async () => {
    const server = await startRedis()
    servers.push(server)
    const recorded = recordingHooks()
    const redis = createRedis({ url: server.url, maxBackoffMs: 50 }, recorded.hooks)
    clients.push(redis)
    await untilReady(redis)
    assert.deepEqual(recorded.storeUp, [true])

    server.child.kill('SIGKILL')
    await waitFor(
      () => recorded.storeErrors.filter((op) => op === 'connection').length >= 5,
      'several reconnect errors',
    )
    // Commands fail at once instead of queueing while Redis is away.
    const { ms } = await timed(() => assert.rejects(redis.get('x')))
    assert.ok(ms < 1000, `took ${ms} ms`)
    assert.equal(isReady(redis), false)

    await server.restart()
    await untilReady(redis)
    assert.equal(await redis.ping(), 'PONG')
    const warnings = recorded.logs.filter((l) => l.level === 'warn')
    assert.equal(warnings.length, 1, JSON.stringify(warnings))
    assert.match(warnings[0].message, /unavailable/)
    assert.equal(recorded.count('available again'), 1)
    assert.deepEqual(recorded.storeUp, [true, false, true])
  })

  it('logs once when Redis is unreachable from the start, and connects when it appears', async () => {
    const server = await startRedis()
    servers.push(server)
    await server.stop()
    const recorded = recordingHooks()
    const redis = createRedis({ url: server.url, maxBackoffMs: 50 }, recorded.hooks)
    clients.push(redis)
    await waitFor(() => recorded.storeErrors.length >= 3, 'connection errors')
    assert.equal(recorded.count('unavailable'), 1)
    assert.deepEqual(recorded.storeUp, [false])
    await server.restart()
    await untilReady(redis)
    assert.deepEqual(recorded.storeUp, [false, true])
  })

  it('needs a master name with sentinels', () => {
    assert.throws(
      () => createRedis({ sentinels: [{ host: '127.0.0.1', port: 1 }] }, recordingHooks().hooks),
      /sentinelName/,
    )
  })
})
