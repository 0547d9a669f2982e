import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { type BackendProcess, postJson, readSse, startBackend } from '../helpers/backend-process.ts'
import { checkAdminKeys, checkAuthentication, checkCache, checkOpenAiClient } from '../helpers/gateway-conformance.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { type RedisServer, startRedis } from '../helpers/redis-server.ts'

const KEY = 'sy-test-key-for-the-gateway-e2e-tests'
const LIMITED_KEY = 'sy-test-key-limited-to-one-model'
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const auth = (key = KEY) => ({ authorization: `Bearer ${key}` })
const greedy = (extra: object = {}) => ({
  model: 'stories260K',
  prompt: 'Once upon a time',
  max_tokens: 20,
  temperature: 0,
  ...extra,
})

let backend: BackendProcess
let redis: RedisServer
let gateway: GatewayProcess
let second: GatewayProcess

const config = () => ({
  backend: { url: backend.url },
  // Small enough that an oversized test body still fits the socket buffers: a server that
  // answers 413 before reading the rest would otherwise reset a client still uploading.
  server: { maxBodyBytes: 65536 },
  auth: {
    apiKeys: [
      { id: 'test', tenant: 'acme', hash: sha(KEY) },
      { id: 'limited', tenant: 'acme', hash: sha(LIMITED_KEY), models: ['other-model'] },
    ],
  },
})

before(async () => {
  ;[backend, redis] = await Promise.all([startBackend(), startRedis()])
  ;[gateway, second] = await Promise.all([
    startGateway(config(), { REDIS_URL: redis.url }),
    startGateway(config(), { REDIS_URL: redis.url }),
  ])
})
after(async () => {
  await Promise.all([gateway?.stop(), second?.stop(), backend?.stop()])
  await redis?.stop()
})

describe('gateway: the public API through the whole pipeline', () => {
  test('the official openai client works through the gateway, streaming and not', () =>
    checkOpenAiClient(gateway.url, KEY))

  test('/generate passes through; usage chunk is only shown to clients that ask', async () => {
    const gen = await postJson(
      `${gateway.url}/generate`,
      { prompt: 'Once upon a time', max_length: 10, temperature: 0 },
      auth(),
    )
    assert.equal(gen.status, 200)
    assert.equal(((await gen.json()) as { output_tokens: number }).output_tokens, 10)
    const without = await readSse(
      await postJson(
        `${gateway.url}/v1/completions`,
        greedy({ stream: true, max_tokens: 5, temperature: 0.5, seed: 1 }),
        auth(),
      ),
    )
    assert.ok(!without.some((e) => typeof e === 'object' && (e as { usage?: unknown }).usage))
    const withUsage = await readSse(
      await postJson(
        `${gateway.url}/v1/completions`,
        greedy({ stream: true, max_tokens: 5, temperature: 0.5, seed: 1, stream_options: { include_usage: true } }),
        auth(),
      ),
    )
    assert.deepEqual((withUsage.at(-2) as { usage: object }).usage, {
      prompt_tokens: 5,
      completion_tokens: 5,
      total_tokens: 10,
    })
    assert.equal(withUsage.at(-1), '[DONE]')
  })

  test('request ids are accepted or made, and returned; rate-limit headers are on streams too', async () => {
    const mine = await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), {
      ...auth(),
      'x-request-id': 'abc-123',
    })
    assert.equal(mine.headers.get('x-request-id'), 'abc-123')
    // The access log line names the key by id (never by the key itself).
    await new Promise((r) => setTimeout(r, 100))
    const line = gateway
      .output()
      .split('\n')
      .find((l) => l.includes('"requestId":"abc-123"') && l.includes('"msg":"request"'))
    assert.ok(line, 'an access log line for the request')
    assert.equal((JSON.parse(line) as { keyId: string }).keyId, 'test')
    assert.ok(!gateway.output().includes(KEY), 'the key never appears in the logs')
    const made = await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), {
      ...auth(),
      'x-request-id': 'bad id\n',
    })
    assert.match(made.headers.get('x-request-id')!, /^[0-9a-f-]{36}$/)
    const stream = await postJson(
      `${gateway.url}/v1/completions`,
      greedy({ stream: true, max_tokens: 3, seed: 5, temperature: 1 }),
      auth(),
    )
    for (const name of [
      'x-ratelimit-limit-requests',
      'x-ratelimit-remaining-requests',
      'x-ratelimit-reset-requests',
      'x-ratelimit-limit-tokens',
      'x-ratelimit-remaining-tokens',
      'x-ratelimit-reset-tokens',
    ]) {
      assert.ok(stream.headers.get(name), `${name} on a stream`)
    }
    await stream.text()
  })

  test('401 for missing, unknown or malformed credentials, all alike; 403 for a model the key may not use', () =>
    checkAuthentication(gateway.url, { key: KEY, limitedKey: LIMITED_KEY }))

  test('bad input gets a 4xx in OpenAI shape before reaching a backend', async () => {
    const cases: [unknown, number, Record<string, string>?][] = [
      ['{nope', 400],
      [{ model: 'stories260K' }, 400],
      [greedy({ temperature: 9 }), 400],
      ['x'.repeat(10), 415, { 'content-type': 'text/plain' }],
      [{ ...greedy(), prompt: 'x'.repeat(100_000) }, 413],
      [greedy({ model: 'no-such-model' }), 404],
    ]
    for (const [body, status, headers] of cases) {
      const r = await postJson(`${gateway.url}/v1/completions`, body, { ...auth(), ...headers })
      assert.equal(r.status, status, JSON.stringify(body).slice(0, 60))
      const json = (await r.json()) as { error: { message: string; type: string } }
      assert.equal(typeof json.error.message, 'string')
    }
  })

  test('admin API: keys created on one instance work on every instance; revoked keys fail at once everywhere', () =>
    checkAdminKeys([gateway.url, second.url], ADMIN_TOKEN))

  test('the cache answers a repeated greedy request with HIT (on any instance) and replays a stream as SSE', () =>
    checkCache([gateway.url, second.url], KEY))

  test('a client that leaves a JSON request stops its generation on the backend, without counting against the node', async () => {
    const sample = (text: string, name: string, labels: string) =>
      Number(new RegExp(`^${name}\\{[^}]*${labels}[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0)
    const backendMetrics = async () => (await fetch(`${backend.url}/metrics`)).text()
    const gatewayMetrics = async () =>
      (await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text()
    const abortedBefore = sample(
      await backendMetrics(),
      'switchyard_backend_sequences_finished_total',
      'reason="aborted"',
    )
    const generatedBefore = sample(
      await backendMetrics(),
      'switchyard_backend_generated_tokens_total',
      'model="stories260K"',
    )
    // Eight sequences of 500 tokens each (about a second here), far longer than the 50 ms the client waits.
    const client = new AbortController()
    setTimeout(() => client.abort(), 50)
    const leave = fetch(`${gateway.url}/v1/completions`, {
      method: 'POST',
      body: JSON.stringify(greedy({ max_tokens: 500, n: 8, ignore_eos: true, seed: 7 })),
      headers: { 'content-type': 'application/json', 'cache-control': 'no-store', ...auth() },
      signal: client.signal,
    }).catch((error: Error) => error)
    assert.ok((await leave) instanceof Error, 'the client gave up')
    const deadline = Date.now() + 10_000
    while (
      sample(await backendMetrics(), 'switchyard_backend_sequences_finished_total', 'reason="aborted"') <
      abortedBefore + 1
    ) {
      assert.ok(Date.now() < deadline, 'the backend never stopped the abandoned generation')
      await new Promise((r) => setTimeout(r, 50))
    }
    const generated =
      sample(await backendMetrics(), 'switchyard_backend_generated_tokens_total', 'model="stories260K"') -
      generatedBefore
    assert.ok(generated < 8 * 500, `generated ${generated} tokens: the abandoned request was cut short`)
    const metrics = await gatewayMetrics()
    assert.equal(sample(metrics, 'switchyard_gateway_upstream_attempts_total', 'outcome="client_closed"'), 1)
    assert.equal(
      sample(metrics, 'switchyard_gateway_upstream_attempts_total', 'outcome="timeout"'),
      0,
      'not counted as a failed try',
    )
    assert.equal(
      (await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), auth())).status,
      200,
      'the node still serves',
    )
  })

  test('a client that leaves a stream stops its generation on the backend', async () => {
    const value = (text: string, name: string) =>
      Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1] ?? 0)
    const backendMetrics = async () => (await fetch(`${backend.url}/metrics`)).text()
    const generatedBefore = value(await backendMetrics(), 'switchyard_backend_generated_tokens_total')
    // Eight sequences of 500 tokens each: about a second of generation if nobody stopped it.
    const response = await postJson(
      `${gateway.url}/v1/completions`,
      greedy({ max_tokens: 500, n: 8, ignore_eos: true, stream: true }),
      auth(),
    )
    const reader = response.body!.getReader()
    await reader.read()
    await reader.cancel()
    const deadline = Date.now() + 10_000
    while (value(await backendMetrics(), 'switchyard_backend_running_sequences') > 0) {
      assert.ok(Date.now() < deadline, 'the backend never stopped the abandoned stream')
      await new Promise((r) => setTimeout(r, 20))
    }
    const generated = value(await backendMetrics(), 'switchyard_backend_generated_tokens_total') - generatedBefore
    assert.ok(generated < (8 * 500) / 2, `generated ${generated} of 4000 tokens: the stream was cut short`)
  })

  test('gateway metrics pass promtool check metrics', async () => {
    const text = await (
      await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).text()
    assert.match(text, /switchyard_gateway_requests_total/)
    assert.equal((await fetch(`${gateway.url}/metrics`)).status, 401)
    // Lint only our own metrics: prom-client's default nodejs_* gauges fail promtool's lint.
    const ours = `${text
      .split('\n')
      .filter((l) => l.includes('switchyard_'))
      .join('\n')}\n`
    execFileSync('promtool', ['check', 'metrics'], { input: ours })
  })
})
