import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { Agent, fetch as undiciFetch } from 'undici'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { ADMIN_TOKEN, startGateway } from '../helpers/gateway-process.ts'
import { startRedis } from '../helpers/redis-server.ts'
import { testCertificate } from '../helpers/tls-certificate.ts'

const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const key = (name: string) => `sy-limits-test-${name}`
const auth = (name: string) => ({ authorization: `Bearer ${key(name)}` })
const request = (extra: object = {}) => ({
  model: 'stories260K',
  prompt: 'Once upon a time',
  max_tokens: 20,
  temperature: 0.7,
  seed: 1,
  ...extra,
})

let backend: BackendProcess
before(async () => {
  backend = await startBackend({ MAX_BATCH_SIZE: '64' })
})
after(async () => backend?.stop())

const apiKey = (name: string, limits: object) => ({ id: name, tenant: 'acme', hash: sha(key(name)), limits })

describe('gateway rate limits (real Redis)', () => {
  test('50 concurrent requests never overshoot a tokens-per-minute budget; unused tokens are refunded', async () => {
    const redis = await startRedis()
    const gateway = await startGateway(
      {
        backend: { url: backend.url },
        auth: { apiKeys: [apiKey('tpm', { tokensPerMinute: 700 })] },
        cache: { enabled: false },
      },
      { REDIS_URL: redis.url },
    )
    try {
      const results = await Promise.all(
        Array.from({ length: 50 }, async (_, i) => {
          const r = await postJson(
            `${gateway.url}/v1/completions`,
            request({ seed: i, max_tokens: 40, ignore_eos: true }),
            auth('tpm'),
          )
          const body = (await r.json()) as { usage?: { total_tokens: number } }
          return {
            status: r.status,
            used: body.usage?.total_tokens ?? 0,
            remaining: r.headers.get('x-ratelimit-remaining-tokens'),
          }
        }),
      )
      const granted = results.filter((r) => r.status === 200)
      const refused = results.filter((r) => r.status === 429)
      assert.equal(granted.length + refused.length, 50)
      assert.ok(refused.length > 0, 'the budget ran out')
      assert.ok(granted.length > 0)
      const used = granted.reduce((sum, r) => sum + r.used, 0)
      assert.ok(used <= 700, `used ${used} of 700`)
      // Each reservation was prompt bound (16 bytes + template allowance) + 40; refunds made room for more.
      const after = await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), auth('tpm'))
      assert.equal(after.status, 200, 'refunded tokens are available again')
    } finally {
      await gateway.stop()
      await redis.stop()
    }
  })

  test('requests per window and concurrency limits answer 429 with Retry-After', async () => {
    const gateway = await startGateway({
      backend: { url: backend.url },
      auth: {
        apiKeys: [
          apiKey('rpm', { requestsPerWindow: 3, requestWindowSeconds: 60 }),
          apiKey('conc', { maxConcurrent: 2 }),
        ],
      },
    })
    try {
      const statuses = []
      for (let i = 0; i < 4; i++)
        statuses.push((await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), auth('rpm'))).status)
      assert.deepEqual(statuses, [200, 200, 200, 429])
      const limited = await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), auth('rpm'))
      assert.ok(Number(limited.headers.get('retry-after')) >= 1)
      assert.equal(limited.headers.get('x-ratelimit-remaining-requests'), '0')
      assert.equal(((await limited.json()) as { error: { type: string } }).error.type, 'rate_limit_error')

      const streams = await Promise.all(
        [1, 2].map(() =>
          postJson(
            `${gateway.url}/v1/completions`,
            request({ stream: true, max_tokens: 400, ignore_eos: true }),
            auth('conc'),
          ),
        ),
      )
      const third = await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), auth('conc'))
      assert.equal(third.status, 429)
      assert.equal(((await third.json()) as { error: { code: string } }).error.code, 'concurrency_limit_exceeded')
      await Promise.all(streams.map((s) => s.text()))
      assert.equal(
        (await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), auth('conc'))).status,
        200,
      )
    } finally {
      await gateway.stop()
    }
  })

  test('spoofed X-Forwarded-For from an untrusted peer does not escape the per-IP limit', async () => {
    const gateway = await startGateway({
      backend: { url: backend.url },
      limits: { perIp: { requestsPerWindow: 4, requestWindowSeconds: 60 } },
    })
    try {
      const statuses = []
      for (let i = 0; i < 6; i++)
        statuses.push(
          (await postJson(`${gateway.url}/v1/completions`, request(), { 'x-forwarded-for': `10.0.0.${i}` })).status,
        )
      assert.deepEqual(statuses, [401, 401, 401, 401, 429, 429])
    } finally {
      await gateway.stop()
    }
  })

  test('Redis killed mid-test: requests keep succeeding on in-memory limits, and Redis is used again when it returns', async () => {
    const redis = await startRedis()
    const gateway = await startGateway(
      {
        backend: { url: backend.url },
        auth: { apiKeys: [apiKey('chaos', { requestsPerWindow: 1000, tokensPerMinute: 100_000 })] },
      },
      { REDIS_URL: redis.url },
    )
    const metric = async () =>
      (
        await (await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text()
      ).match(/^switchyard_gateway_store_up (\d)$/m)![1]
    try {
      assert.equal(
        (await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 2 }), auth('chaos'))).status,
        200,
      )
      await redis.stop()
      for (let i = 0; i < 10; i++) {
        const r = await postJson(
          `${gateway.url}/v1/completions`,
          request({ max_tokens: 2, temperature: 0 }),
          auth('chaos'),
        )
        assert.equal(r.status, 200, await r.text())
        assert.ok(r.headers.get('x-ratelimit-remaining-requests'))
      }
      assert.equal(await metric(), '0')
      await redis.restart()
      let up = '0'
      for (let i = 0; i < 100 && up === '0'; i++) {
        await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), auth('chaos'))
        up = await metric()
        if (up === '0') await new Promise((r) => setTimeout(r, 100))
      }
      assert.equal(up, '1')
      assert.equal(
        (await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), auth('chaos'))).status,
        200,
      )
      const keys = execFileSync('redis-cli', ['-p', String(redis.port), '--scan']).toString()
      assert.match(keys, /chaos/, 'limit counters are back in Redis')
      assert.equal(
        gateway
          .output()
          .split('\n')
          .filter((l) => /redis.*(down|unavailable|lost)/i.test(l)).length <= 2,
        true,
        'the outage is logged once, not per request',
      )
    } finally {
      await gateway.stop()
      await redis.stop()
    }
  })

  test('issue 16: key isolation, the per-IP guard behind a NAT, and admin-API keys through a Redis stall', async () => {
    const redis = await startRedis()
    const gateway = await startGateway(
      {
        backend: { url: backend.url },
        auth: { apiKeys: [apiKey('lim2', { requestsPerWindow: 1000 })] },
        limits: { perIp: { requestsPerWindow: 20, requestWindowSeconds: 60 } },
        cache: { enabled: false },
      },
      { REDIS_URL: redis.url },
    )
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' }
    const metrics = async () => (await fetch(`${gateway.url}/metrics`, { headers: admin })).text()
    try {
      // Key isolation: a config-file id is taken for the admin API, and cannot be revoked there.
      const taken = await fetch(`${gateway.url}/admin/keys`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify({ tenant: 'other', id: 'lim2' }),
      })
      assert.equal(taken.status, 409)
      assert.equal(((await taken.json()) as { error: { code: string } }).error.code, 'key_exists')
      const del = await fetch(`${gateway.url}/admin/keys/lim2`, { method: 'DELETE', headers: admin })
      assert.equal(del.status, 409)
      assert.match(((await del.json()) as { error: { message: string } }).error.message, /config file/)
      assert.equal(
        (await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), auth('lim2'))).status,
        200,
      )

      // A key made through the admin API, used once (verified in Redis).
      const created = (await (
        await fetch(`${gateway.url}/admin/keys`, {
          method: 'POST',
          headers: admin,
          body: JSON.stringify({ tenant: 'acme' }),
        })
      ).json()) as { key: string; id: string }
      const stored = { authorization: `Bearer ${created.key}` }
      assert.equal((await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), stored)).status, 200)
      const counters = execFileSync('redis-cli', [
        '-p',
        String(redis.port),
        '--scan',
        '--pattern',
        '*api_key*',
      ]).toString()
      assert.match(counters, /\{api_key:config:lim2\}/)
      assert.match(counters, new RegExp(`\\{api_key:store:${created.id}\\}`))

      // Per-IP guard: a flood of wrong keys from this address, then valid keys from the same address.
      const flood: number[] = []
      for (let i = 0; i < 60; i++)
        flood.push(
          (await postJson(`${gateway.url}/v1/completions`, request(), { authorization: `Bearer sy-wrong-${i}` }))
            .status,
        )
      // 20 failures allowed, then 429 (a 503 only if a key lookup timed out on a loaded machine).
      assert.ok(
        flood.every((s) => s === 401 || s === 429 || s === 503),
        JSON.stringify(flood),
      )
      assert.equal(flood.slice(0, 20).filter((s) => s === 429).length, 0, JSON.stringify(flood))
      assert.deepEqual(flood.slice(-20), Array(20).fill(429), JSON.stringify(flood))
      assert.equal(
        (await postJson(`${gateway.url}/v1/completions`, request(), { authorization: 'Bearer sy-wrong-again' })).status,
        429,
      )
      assert.equal(
        (await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), auth('lim2'))).status,
        200,
      )
      assert.equal((await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), stored)).status, 200)
      const text = await metrics()
      assert.match(text, /^switchyard_gateway_ip_guard_blocked_addresses 1$/m)
      assert.match(text, /^switchyard_gateway_ip_guard_events_total\{event="passed"\} 2$/m)

      // Redis stopped (SIGSTOP): the admin-API key keeps working from the verified-key cache.
      const linesBefore = gateway.output().split('\n').length
      redis.child.kill('SIGSTOP')
      const statuses: number[] = []
      try {
        for (let i = 0; i < 4; i++)
          statuses.push((await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), stored)).status)
        for (let i = 0; i < 3; i++)
          statuses.push(
            (
              await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 1 }), {
                authorization: 'Bearer sy-never-verified',
              })
            ).status,
          )
      } finally {
        redis.child.kill('SIGCONT')
      }
      assert.deepEqual(statuses, [...Array(4).fill(200), ...Array(3).fill(503)])
      const outageLines = gateway
        .output()
        .split('\n')
        .slice(linesBefore)
        .filter((l) => l.includes('authentication unavailable'))
      // One line (none if a lookup timed out moments before, in the same 10 s interval), not one per 503.
      assert.ok(outageLines.length <= 1, `one line for the outage, not one per request: ${outageLines.length}`)
    } finally {
      redis.child.kill('SIGCONT')
      await gateway.stop()
      await redis.stop()
    }
  })

  test('issue 16: Redis stopped (SIGSTOP) for 1 s under 4 clients: no slot of the key is left held in Redis', async () => {
    const redis = await startRedis()
    const gateway = await startGateway(
      {
        backend: { url: backend.url },
        auth: { apiKeys: [apiKey('conc8', { maxConcurrent: 8 })] },
        cache: { enabled: false },
      },
      { REDIS_URL: redis.url },
    )
    const slots = () =>
      Number(
        execFileSync('redis-cli', ['-p', String(redis.port), 'zcard', 'sy:{api_key:config:conc8}:slots'])
          .toString()
          .trim(),
      )
    try {
      let running = true
      const statuses: number[] = []
      const client = async () => {
        while (running) {
          const r = await postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 2 }), auth('conc8'))
          statuses.push(r.status)
          await r.text()
        }
      }
      const clients = Array.from({ length: 4 }, client)
      await new Promise((r) => setTimeout(r, 300))
      redis.child.kill('SIGSTOP')
      await new Promise((r) => setTimeout(r, 1000))
      redis.child.kill('SIGCONT')
      const continued = Date.now()
      await new Promise((r) => setTimeout(r, 200))
      running = false
      await Promise.all(clients)
      assert.ok(
        statuses.every((s) => s === 200),
        `only 200s: ${[...new Set(statuses)]}`,
      )
      while (slots() !== 0 && Date.now() - continued < 2000) await new Promise((r) => setTimeout(r, 50))
      assert.equal(slots(), 0, 'within 2 s of SIGCONT nothing is held: nothing is in flight')
      const burst = await Promise.all(
        Array.from({ length: 8 }, () =>
          postJson(`${gateway.url}/v1/completions`, request({ max_tokens: 2 }), auth('conc8')).then((r) => r.status),
        ),
      )
      assert.deepEqual(burst, Array(8).fill(200))
    } finally {
      redis.child.kill('SIGCONT')
      await gateway.stop()
      await redis.stop()
    }
  })

  test('HTTPS with a test certificate', async () => {
    const { cert, key } = testCertificate()
    const gateway = await startGateway(
      { backend: { url: backend.url }, auth: { apiKeys: [apiKey('tls', {})] } },
      { TLS_CERT_FILE: cert, TLS_KEY_FILE: key },
    )
    try {
      assert.match(gateway.url, /^https:/)
      const dispatcher = new Agent({ connect: { ca: readFileSync(cert) } })
      const r = await undiciFetch(`${gateway.url}/v1/completions`, {
        method: 'POST',
        dispatcher,
        headers: { 'content-type': 'application/json', ...auth('tls') },
        body: JSON.stringify(request({ max_tokens: 3 })),
      })
      assert.equal(r.status, 200)
      assert.equal(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 3)
      await assert.rejects(undiciFetch(`${gateway.url}/health`), 'an untrusted certificate is refused by default')
    } finally {
      await gateway.stop()
    }
  })
})
