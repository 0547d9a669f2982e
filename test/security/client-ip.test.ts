import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { request } from 'node:http'
import { after, before, describe, test } from 'node:test'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { type RedisServer, startRedis } from '../helpers/redis-server.ts'

/**
 * Per-IP limits cannot be dodged with X-Forwarded-For (complements the untrusted-peer case in
 * test/e2e/gateway-limits.test.ts). The gateway trusts 127.0.0.1 as its proxy; connections from
 * 127.0.0.2 (Linux routes all of 127/8 to loopback) play an untrusted client. Requests carry no
 * credentials, so each one is a 401 that counts against the client's address (3 per minute).
 */

const PROXY = '127.0.0.1'
const UNTRUSTED = '127.0.0.2'

let backend: BackendProcess
let redis: RedisServer
let gateway: GatewayProcess
before(async () => {
  ;[backend, redis] = await Promise.all([startBackend(), startRedis()])
  gateway = await startGateway(
    {
      backend: { url: backend.url },
      limits: { trustedProxies: [PROXY], perIp: { requestsPerWindow: 3, requestWindowSeconds: 60 } },
    },
    { REDIS_URL: redis.url },
  )
})
after(async () => {
  await gateway?.stop()
  await backend?.stop()
  await redis?.stop()
})

/** An unauthenticated POST from `from`, with X-Forwarded-For line(s) as given; resolves with the status. */
function attempt(xff: string | string[] | undefined, from = PROXY): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | string[]> = { 'content-type': 'application/json' }
    if (xff !== undefined) headers['x-forwarded-for'] = xff
    const req = request(
      `${gateway.url}/v1/completions`,
      { method: 'POST', headers, localAddress: from, agent: false },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode!))
      },
    )
    req.on('error', reject)
    req.end('{"model":"stories260K","prompt":"x","max_tokens":1}')
  })
}

async function statuses(
  count: number,
  xff: (i: number) => string | string[] | undefined,
  from = PROXY,
): Promise<number[]> {
  const out = []
  for (let i = 0; i < count; i++) out.push(await attempt(xff(i), from))
  return out
}

describe('client address behind a trusted proxy', () => {
  test('the right-most address the proxy did not write is the client; what the client wrote to its left is ignored', async () => {
    // The client forges a new left-most address each time; the proxy appends the real one.
    assert.deepEqual(await statuses(5, (i) => `10.9.9.${i}, 203.0.113.7`), [401, 401, 401, 429, 429])
    assert.equal(await attempt('203.0.113.8'), 401, 'another client behind the same proxy is not blocked')
  })

  test('trusted hops on the right are skipped', async () => {
    assert.deepEqual(await statuses(3, () => '203.0.113.9, 127.0.0.1'), [401, 401, 401])
    assert.equal(await attempt('203.0.113.9'), 429, 'the same client, with or without the proxy hop')
  })

  test('several X-Forwarded-For lines are read as one list', async () => {
    assert.deepEqual(await statuses(3, (i) => [`10.8.8.${i}`, '203.0.113.30']), [401, 401, 401])
    assert.equal(await attempt('203.0.113.30'), 429)
  })

  test('garbage from the client never becomes a limiter key; the valid right-most address still counts', async () => {
    const junk = ['not-an-ip', '<script>alert(1)</script>', `${'9'.repeat(4000)}`, 'ip:admin', '1.2.3.4:80', '', ' , ,']
    for (const value of junk) assert.ok([401, 429].includes(await attempt(`${value}, 203.0.113.40`)))
    assert.equal(await attempt('203.0.113.40'), 429, 'the garbage was skipped and 203.0.113.40 counted')
    const keys = execFileSync('redis-cli', ['-p', String(redis.port), '--scan', '--pattern', '*ip:*'])
      .toString()
      .trim()
      .split('\n')
    assert.ok(keys.length > 0)
    for (const key of keys)
      assert.match(key.slice(key.lastIndexOf('ip:') + 3), /^[0-9a-fA-F:.]+$/, `an IP-shaped limiter key: ${key}`)
  })
})

describe('client address from an untrusted peer', () => {
  test('its X-Forwarded-For is ignored, so rotating it does not escape the limit', async () => {
    assert.deepEqual(await statuses(5, (i) => `203.0.113.${100 + i}`, UNTRUSTED), [401, 401, 401, 429, 429])
    assert.equal(await attempt(undefined, UNTRUSTED), 429, 'blocked as itself')
    // It cannot get a victim blocked either: the address it named was never counted.
    assert.equal(await attempt('203.0.113.100'), 401)
  })
})
