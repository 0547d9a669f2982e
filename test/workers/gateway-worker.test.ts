import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import type { RateLimiterRpc } from '../../gateway/workers/rate-limits.ts'
import type { DurableObjectNamespace } from '../../gateway/workers/runtime.ts'
import { type BackendProcess, postJson, readSse, startBackend } from '../helpers/backend-process.ts'
import {
  bearer,
  checkAdminKeys,
  checkAuthentication,
  checkCache,
  checkOpenAiClient,
  greedy,
} from '../helpers/gateway-conformance.ts'
import { ADMIN_TOKEN } from '../helpers/gateway-process.ts'
import { buildWorker, type RunningWorker, startWorker, type WorkerBuild } from '../helpers/worker-runtime.ts'

// The Workers build of the gateway (the bundle `wrangler deploy` would upload) on workerd,
// in front of real backend nodes that accept only requests signed with the Worker's secret
// key: the same public-API checks as the Node gateway, then limits, streams and failover.
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const key = (name: string) => `sy-worker-test-${name}-0123456789`
const apiKey = (name: string, extra: object = {}) => ({ id: name, tenant: 'acme', hash: sha(key(name)), ...extra })
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
type NodeStatus = { id: string; healthy: boolean; usable: boolean; lastCheck: { at: string } | null }

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

const backends: Record<'a' | 'b' | 'c', BackendProcess> = {} as never
let build: WorkerBuild
let worker: RunningWorker
const scratch = mkdtempSync(join(tmpdir(), 'switchyard-worker-keys-'))

const config = () => ({
  auth: {
    apiKeys: [
      apiKey('main', { limits: { requestsPerWindow: 100_000, tokensPerMinute: 100_000_000, maxConcurrent: 10_000 } }),
      apiKey('limited', { models: ['other-model'] }),
      apiKey('rpm', { limits: { requestsPerWindow: 3, requestWindowSeconds: 60 } }),
      apiKey('conc', { limits: { maxConcurrent: 2 } }),
      apiKey('tpm', { limits: { tokensPerMinute: 700 } }),
      apiKey('refund', { limits: { tokensPerMinute: 1000 } }),
    ],
  },
  limits: { perIp: { requestsPerWindow: 20, requestWindowSeconds: 60 } },
  routing: {
    region: 'eu',
    regions: [
      {
        name: 'eu',
        fallback: ['us'],
        nodes: [
          { id: 'eu-1', url: backends.a.url },
          { id: 'eu-2', url: backends.b.url },
        ],
      },
      { name: 'us', fallback: ['eu'], nodes: [{ id: 'us-1', url: backends.c.url }] },
    ],
    edgeRegions: { FRA: 'eu', JP: 'us' },
    healthCheck: { intervalMs: 300, timeoutMs: 1000, unhealthyAfter: 2, healthyAfter: 1 },
    retry: { maxAttempts: 3, perTryTimeoutMs: 30_000, budgetRatio: 0.5, budgetMinPerSecond: 10 },
  },
})

before(async () => {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
  const verifyKeys = join(scratch, 'verify.json')
  writeFileSync(
    verifyKeys,
    JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'worker', alg: 'EdDSA', use: 'sig' }] }),
  )
  const env = { GATEWAY_VERIFY_KEYS_FILE: verifyKeys, MAX_BATCH_SIZE: '64' }
  ;[build, backends.a, backends.b, backends.c] = await Promise.all([
    buildWorker(),
    startBackend(env),
    startBackend(env),
    startBackend(env),
  ])
  const signingKey = JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'worker', alg: 'EdDSA' })
  worker = await startWorker(build, config(), { BACKEND_SIGNING_KEY: signingKey })
})
after(async () => {
  await worker?.stop()
  await Promise.all(Object.values(backends).map((b) => b.stop('SIGKILL')))
  build?.remove()
  rmSync(scratch, { recursive: true, force: true })
})

const completions = (name: string, body: object, headers: Record<string, string> = {}) =>
  postJson(`${worker.url}/v1/completions`, body, { ...bearer(key(name)), ...headers })
const status = async () =>
  (
    (await (await fetch(`${worker.url}/status`, { headers: admin })).json()) as { regions: { nodes: NodeStatus[] }[] }
  ).regions.flatMap((r) => r.nodes)

describe('Workers build: bundle', () => {
  test('wrangler bundles the Worker offline, under 1 MiB gzipped, with the bindings of wrangler.toml', (t) => {
    const figure = `worker bundle: ${(build.bytes / 1024).toFixed(1)} KiB, ${(build.gzipBytes / 1024).toFixed(1)} KiB gzipped`
    t.diagnostic(figure)
    console.log(figure)
    assert.ok(build.gzipBytes < 1024 * 1024, figure)
    for (const binding of [
      'RATE_LIMITER (RateLimiterObject)',
      'API_KEYS (ApiKeyObject)',
      'API_KEY_INDEX (ApiKeyIndexObject)',
      'RESPONSE_CACHE',
      'METRICS',
    ])
      assert.ok(build.output.includes(binding), binding)
  })
})

describe('Workers build: the public API (same checks as the Node gateway)', () => {
  test('the official openai client, streaming and not', () => checkOpenAiClient(worker.url, key('main')))
  test('401 alike for bad credentials; 403 for a model the key may not use', () =>
    checkAuthentication(worker.url, { key: key('main'), limitedKey: key('limited') }))
  test('admin API keys (Durable Objects): usable at once, revoked at once', () =>
    checkAdminKeys([worker.url], ADMIN_TOKEN))
  test('the cache (KV): HIT, MISS, BYPASS, and a stream replayed as SSE', () => checkCache([worker.url], key('main')))

  test('gateway → backend tokens come from the BACKEND_SIGNING_KEY secret: backends refuse direct calls', async () => {
    assert.equal((await postJson(`${backends.a.url}/v1/completions`, greedy())).status, 401)
    const through = await completions('main', greedy({ max_tokens: 2 }))
    assert.equal(through.status, 200)
    await through.body?.cancel()
  })

  test('/metrics answers 404 with a reason; /health answers; one JSON log line per request, without keys', async () => {
    const metrics = await fetch(`${worker.url}/metrics`, { headers: admin })
    assert.equal(metrics.status, 404)
    assert.match(
      ((await metrics.json()) as { error: { message: string } }).error.message,
      /not exposed by this runtime/,
    )
    assert.equal((await fetch(`${worker.url}/health`)).status, 200)
    const lines = worker
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; route?: string; status?: number })
    assert.ok(lines.some((l) => l.msg === 'request' && l.route === '/v1/completions' && l.status === 200))
    assert.ok(!worker.output().includes(key('main')), 'no API key in the logs')
  })
})

describe('Workers build: limits on Durable Objects', () => {
  test('requests per window and concurrency: 429 with Retry-After and x-ratelimit-* headers; slots are freed when streams end', async () => {
    const statuses = []
    for (let i = 0; i < 4; i++) {
      const r = await completions('rpm', greedy({ max_tokens: 1 }))
      statuses.push(r.status)
      if (i < 3) await r.body?.cancel()
      else {
        assert.ok(Number(r.headers.get('retry-after')) >= 1)
        assert.equal(r.headers.get('x-ratelimit-remaining-requests'), '0')
        assert.equal(r.headers.get('x-ratelimit-limit-requests'), '3')
        assert.equal(((await r.json()) as { error: { type: string } }).error.type, 'rate_limit_error')
      }
    }
    assert.deepEqual(statuses, [200, 200, 200, 429])

    const streams = await Promise.all(
      [1, 2].map((i) =>
        completions('conc', greedy({ stream: true, max_tokens: 400, ignore_eos: true, temperature: 0.7, seed: i })),
      ),
    )
    for (const s of streams) {
      assert.match(s.headers.get('content-type')!, /text\/event-stream/)
      for (const name of [
        'x-ratelimit-limit-requests',
        'x-ratelimit-remaining-requests',
        'x-ratelimit-reset-requests',
        'x-ratelimit-limit-tokens',
        'x-ratelimit-remaining-tokens',
        'x-ratelimit-reset-tokens',
      ])
        assert.ok(s.headers.get(name), `${name} on a stream`)
    }
    const third = await completions('conc', greedy({ max_tokens: 1 }))
    assert.equal(third.status, 429)
    assert.equal(((await third.json()) as { error: { code: string } }).error.code, 'concurrency_limit_exceeded')
    for (const s of streams) assert.equal((await readSse(s)).at(-1), '[DONE]')
    // The slots are released after the last byte, in the background of the stream's request.
    await until(
      'slots freed',
      async () => {
        const r = await completions('conc', greedy({ max_tokens: 1, seed: 99, temperature: 0.5 }))
        await r.body?.cancel()
        return r.status === 200
      },
      3000,
    )
  })

  test('50 concurrent requests never overshoot a tokens-per-minute budget; unused tokens are refunded', async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const r = await completions('tpm', greedy({ seed: i, temperature: 0.7, max_tokens: 40, ignore_eos: true }))
        const body = (await r.json()) as { usage?: { total_tokens: number } }
        return { status: r.status, used: body.usage?.total_tokens ?? 0 }
      }),
    )
    const granted = results.filter((r) => r.status === 200)
    assert.equal(granted.length + results.filter((r) => r.status === 429).length, 50)
    assert.ok(granted.length > 0 && granted.length < 50, `${granted.length} granted`)
    const used = granted.reduce((sum, r) => sum + r.used, 0)
    assert.ok(used <= 700, `used ${used} of 700`)
    await until(
      'refunded tokens available again',
      async () => {
        const r = await completions('tpm', greedy({ max_tokens: 1, temperature: 0.5, seed: 1000 }))
        await r.body?.cancel()
        return r.status === 200
      },
      3000,
    )
  })

  test('a stream’s unused tokens are refunded after its last byte', async () => {
    const limiter = await worker.namespace<DurableObjectNamespace<RateLimiterRpc>>('RATE_LIMITER')
    // One object per caller, named by the limit key the middleware uses (limits/middleware.ts limitKey).
    const counter = limiter.get(limiter.idFromName('api_key:config:refund'))
    // A zero-cost admission reads the token budget without counting anything.
    const remaining = async () =>
      (await counter.admit({ tokens: { cost: 0, perMinute: 1000 } }, '', 0)).tokens!.remaining
    // Greedy text stops at "girl" after a few tokens, far below max_tokens.
    const response = await completions(
      'refund',
      greedy({ stream: true, max_tokens: 200, stop: ['girl'], stream_options: { include_usage: true } }),
      { 'cache-control': 'no-store' },
    )
    const reserved = 1000 - Number(response.headers.get('x-ratelimit-remaining-tokens'))
    const events = await readSse(response)
    const usage = (events.at(-2) as { usage: { total_tokens: number } }).usage
    assert.ok(reserved > usage.total_tokens + 150, `reserved ${reserved}, used ${usage.total_tokens}`)
    await until('the refund lands', async () => (await remaining()) === 1000 - usage.total_tokens, 3000)
  })

  test('failed authentication counts per client IP (CF-Connecting-IP): 429 past the limit, other addresses unaffected', async () => {
    const statuses = []
    for (let i = 0; i < 22; i++)
      statuses.push(
        (
          await postJson(`${worker.url}/v1/completions`, greedy(), {
            'cf-connecting-ip': '192.0.2.7',
            ...bearer('sy-wrong'),
          })
        ).status,
      )
    assert.deepEqual([statuses.slice(0, 20).every((s) => s === 401), statuses.slice(20)], [true, [429, 429]])
    assert.equal(
      (
        await postJson(`${worker.url}/v1/completions`, greedy(), {
          'cf-connecting-ip': '192.0.2.8',
          ...bearer('sy-wrong'),
        })
      ).status,
      401,
    )
  })
})

describe('Workers build: routing', () => {
  test("identical concurrent streams are not coalesced on Workers (a request's I/O dies with it): same text, own calls", async () => {
    const body = greedy({ prompt: 'Shared by three', stream: true, max_tokens: 120, ignore_eos: true })
    const responses = await Promise.all([0, 1, 2].map(() => completions('main', body)))
    const events = await Promise.all(responses.map((r) => readSse(r)))
    assert.equal(responses.filter((r) => r.headers.get('x-cache-coalesced') === '1').length, 0)
    // Own backend calls: chunk ids differ, the greedy text does not.
    const texts = events.map((e) =>
      e
        .slice(0, -1)
        .map((chunk) => (chunk as { choices: { text: string }[] }).choices[0]?.text ?? '')
        .join(''),
    )
    assert.equal(new Set(texts).size, 1)
    assert.ok(events.every((e) => e.at(-1) === '[DONE]'))
  })

  test('the edge location picks the region: the data center if mapped, else the country', async () => {
    const region = async (cf: { colo: string; country: string }) => {
      const r = await worker.mf.dispatchFetch(`${worker.url}/v1/completions`, {
        method: 'POST',
        cf,
        headers: { 'content-type': 'application/json', ...bearer(key('main')) },
        body: JSON.stringify(greedy({ max_tokens: 1, temperature: 0.5 })),
      })
      await r.text()
      return r.headers.get('x-switchyard-region')
    }
    assert.equal(await region({ colo: 'FRA', country: 'DE' }), 'eu')
    assert.equal(await region({ colo: 'NRT', country: 'JP' }), 'us')
    assert.equal(await region({ colo: 'DFW', country: 'US' }), 'eu', 'unmapped: the gateway’s own region')
  })

  test('health checks run without timers, in the background of requests', async () => {
    const before = await status()
    assert.ok(before.every((n) => n.lastCheck && n.healthy))
    await sleep(400)
    await fetch(`${worker.url}/health`)
    await until(
      'a newer round of checks',
      async () => (await status()).every((n, i) => n.lastCheck!.at > before[i].lastCheck!.at),
      3000,
    )
  })

  test('kill -9 of a node while 30 requests are in flight: all succeed; health checks take it out', async () => {
    // A request the client saw fail says why, with the Worker's last log lines.
    const requests = Array.from({ length: 30 }, (_, i) =>
      completions('main', greedy({ max_tokens: 48, seed: i, temperature: 0.8, prompt: `Failover ${i}` })).catch(
        (error: Error) =>
          assert.fail(
            `request ${i}: ${error.message} (${(error.cause as Error)?.message})\n${worker.output().slice(-3000)}`,
          ),
      ),
    )
    await sleep(100)
    backends.a.child.kill('SIGKILL')
    const responses = await Promise.all(requests)
    const bodies = await Promise.all(
      responses.map((r) => r.json() as Promise<{ choices?: { text: string }[]; error?: { code: string } }>),
    )
    assert.deepEqual(
      responses.flatMap((r, i) => (r.status === 200 ? [] : [`${r.status} ${bodies[i].error?.code}`])),
      [],
    )
    assert.ok(bodies.every((b) => typeof b.choices?.[0].text === 'string'))
    await until('eu-1 unhealthy', async () => (await status()).find((n) => n.id === 'eu-1')!.healthy === false)
  })

  test('a node killed mid-stream: the stream completes on another node, identical to an uninterrupted run', async () => {
    const body = {
      model: 'stories260K',
      prompt: 'Once upon a time',
      max_tokens: 400,
      ignore_eos: true,
      temperature: 0,
      stream: true,
    }
    const reference = await completions('main', { ...body, stream: false }, { 'cache-control': 'no-store' })
    const referenceText = ((await reference.json()) as { choices: { text: string }[] }).choices[0].text
    const response = await completions('main', body, { 'cache-control': 'no-store' })
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('x-switchyard-backend'), 'eu-2')
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let raw = decoder.decode((await reader.read()).value, { stream: true })
    backends.b.child.kill('SIGKILL')
    for (let r = await reader.read(); !r.done; r = await reader.read()) raw += decoder.decode(r.value, { stream: true })
    const events = raw
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.slice(6))
    assert.equal(events.at(-1), '[DONE]', 'the stream ended normally')
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { id: string; choices: { text: string }[] })
    assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'one stream id throughout')
    assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), referenceText)
  })
})

describe('Workers build: configuration', () => {
  test('an invalid config: every request gets a 500 naming no detail, and the log says what is wrong', async () => {
    const broken = await startWorker(build, {
      routing: { regions: [{ name: 'eu', nodes: [{ id: 'pool', dns: 'backends.internal', port: 8000 }] }] },
    })
    try {
      const r = await fetch(`${broken.url}/health`)
      assert.equal(r.status, 500)
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'gateway_misconfigured')
      await until('the log line', async () => /nodes found by DNS need the Node gateway/.test(broken.output()), 2000)
    } finally {
      await broken.stop()
    }
  })
})
