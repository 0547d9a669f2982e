import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import OpenAI from 'openai'
import { type BackendProcess, postJson, readSse, startBackend } from '../helpers/backend-process.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { type RedisServer, startRedis } from '../helpers/redis-server.ts'

const KEY = 'sy-test-key-for-the-gateway-e2e-tests'
const LIMITED_KEY = 'sy-test-key-limited-to-one-model'
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const auth = (key = KEY) => ({ authorization: `Bearer ${key}` })
const greedy = (extra: object = {}) => ({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 20, temperature: 0, ...extra })

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
  ;[gateway, second] = await Promise.all([startGateway(config(), { REDIS_URL: redis.url }), startGateway(config(), { REDIS_URL: redis.url })])
})
after(async () => {
  await Promise.all([gateway?.stop(), second?.stop(), backend?.stop()])
  await redis?.stop()
})

describe('gateway: the public API through the whole pipeline', () => {
  test('the official openai client works through the gateway, streaming and not', async () => {
    const client = new OpenAI({ apiKey: KEY, baseURL: `${gateway.url}/v1` })
    const plain = await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 30, temperature: 0 })
    let streamed = ''
    for await (const chunk of await client.completions.create({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 30, temperature: 0, stream: true })) streamed += chunk.choices[0]?.text ?? ''
    assert.ok(plain.choices[0].text.startsWith(', there was a little girl named Lily'))
    assert.equal(streamed, plain.choices[0].text)
    const chat = await client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10, temperature: 0 })
    let chatStreamed = ''
    for await (const chunk of await client.chat.completions.create({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10, temperature: 0, stream: true })) chatStreamed += chunk.choices[0]?.delta?.content ?? ''
    assert.equal(chatStreamed, chat.choices[0].message.content)
    const models = await client.models.list()
    assert.deepEqual(models.data.map((m) => m.id), ['stories260K'])
  })

  test('/generate passes through; usage chunk is only shown to clients that ask', async () => {
    const gen = await postJson(`${gateway.url}/generate`, { prompt: 'Once upon a time', max_length: 10, temperature: 0 }, auth())
    assert.equal(gen.status, 200)
    assert.equal(((await gen.json()) as { output_tokens: number }).output_tokens, 10)
    const without = await readSse(await postJson(`${gateway.url}/v1/completions`, greedy({ stream: true, max_tokens: 5, temperature: 0.5, seed: 1 }), auth()))
    assert.ok(!without.some((e) => typeof e === 'object' && (e as { usage?: unknown }).usage))
    const withUsage = await readSse(await postJson(`${gateway.url}/v1/completions`, greedy({ stream: true, max_tokens: 5, temperature: 0.5, seed: 1, stream_options: { include_usage: true } }), auth()))
    assert.deepEqual((withUsage.at(-2) as { usage: object }).usage, { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 })
    assert.equal(withUsage.at(-1), '[DONE]')
  })

  test('request ids are accepted or made, and returned; rate-limit headers are on streams too', async () => {
    const mine = await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), { ...auth(), 'x-request-id': 'abc-123' })
    assert.equal(mine.headers.get('x-request-id'), 'abc-123')
    const made = await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), { ...auth(), 'x-request-id': 'bad id\n' })
    assert.match(made.headers.get('x-request-id')!, /^[0-9a-f-]{36}$/)
    const stream = await postJson(`${gateway.url}/v1/completions`, greedy({ stream: true, max_tokens: 3, seed: 5, temperature: 1 }), auth())
    for (const name of ['x-ratelimit-limit-requests', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests', 'x-ratelimit-limit-tokens', 'x-ratelimit-remaining-tokens', 'x-ratelimit-reset-tokens']) {
      assert.ok(stream.headers.get(name), `${name} on a stream`)
    }
    await stream.text()
  })

  test('401 for missing, unknown or malformed credentials, all alike; 403 for a model the key may not use', async () => {
    const bodies = []
    for (const headers of [{}, auth('sy-unknown'), { authorization: 'Basic abc' }, { 'x-api-key': 'nope' }] as Record<string, string>[]) {
      const r = await postJson(`${gateway.url}/v1/completions`, greedy(), headers)
      assert.equal(r.status, 401)
      bodies.push(await r.text())
    }
    assert.equal(new Set(bodies).size, 1)
    const forbidden = await postJson(`${gateway.url}/v1/completions`, greedy(), auth(LIMITED_KEY))
    assert.equal(forbidden.status, 403)
    assert.equal(((await forbidden.json()) as { error: { code: string } }).error.code, 'model_not_allowed')
    assert.equal((await postJson(`${gateway.url}/v1/completions`, greedy(), { 'x-api-key': KEY })).status, 200)
  })

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

  test('admin API: keys created on one instance work on every instance; revoked keys fail at once everywhere', async () => {
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
    assert.equal((await postJson(`${gateway.url}/admin/keys`, { tenant: 't1' })).status, 401)
    const created = await postJson(`${gateway.url}/admin/keys`, { tenant: 't1' }, admin)
    assert.equal(created.status, 201)
    const { id, key } = (await created.json()) as { id: string; key: string }
    assert.equal((await postJson(`${second.url}/v1/completions`, greedy({ max_tokens: 1 }), auth(key))).status, 200)
    const listed = await (await fetch(`${gateway.url}/admin/keys`, { headers: admin })).text()
    assert.ok(listed.includes(id) && !listed.includes(key))
    assert.equal((await fetch(`${second.url}/admin/keys/${id}`, { method: 'DELETE', headers: admin })).status, 200)
    assert.equal((await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 1 }), auth(key))).status, 401)
    assert.equal((await postJson(`${second.url}/v1/completions`, greedy({ max_tokens: 1 }), auth(key))).status, 401)
  })

  test('the cache answers a repeated greedy request with HIT and replays a stream as SSE', async () => {
    const body = greedy({ prompt: 'A cached story', max_tokens: 12 })
    const first = await postJson(`${gateway.url}/v1/completions`, body, auth())
    assert.equal(first.headers.get('x-cache'), 'MISS')
    const firstText = ((await first.json()) as { choices: { text: string }[] }).choices[0].text
    const again = await postJson(`${second.url}/v1/completions`, body, auth())
    assert.equal(again.headers.get('x-cache'), 'HIT')
    assert.equal(((await again.json()) as { choices: { text: string }[] }).choices[0].text, firstText)
    const sampled = await postJson(`${gateway.url}/v1/completions`, { ...body, temperature: 0.8 }, auth())
    assert.equal(sampled.headers.get('x-cache'), 'BYPASS')
    const fresh = await postJson(`${gateway.url}/v1/completions`, body, { ...auth(), 'cache-control': 'no-cache' })
    assert.equal(fresh.headers.get('x-cache'), 'MISS')

    const streamBody = { ...body, stream: true }
    const miss = await postJson(`${gateway.url}/v1/completions`, streamBody, auth())
    assert.equal(miss.headers.get('x-cache'), 'MISS')
    const missEvents = await readSse(miss)
    const hit = await postJson(`${gateway.url}/v1/completions`, streamBody, auth())
    assert.equal(hit.headers.get('x-cache'), 'HIT')
    assert.match(hit.headers.get('content-type')!, /text\/event-stream/)
    const hitEvents = await readSse(hit)
    const text = (events: unknown[]) => events.filter((e) => typeof e === 'object').map((e) => (e as { choices: { text: string }[] }).choices[0]?.text ?? '').join('')
    assert.equal(text(hitEvents), text(missEvents))
    assert.equal(text(hitEvents), firstText)
    assert.equal(hitEvents.at(-1), '[DONE]')
  })

  test('gateway metrics pass promtool check metrics', async () => {
    const text = await (await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text()
    assert.match(text, /switchyard_gateway_requests_total/)
    assert.equal((await fetch(`${gateway.url}/metrics`)).status, 401)
    // Lint only our own metrics: prom-client's default nodejs_* gauges fail promtool's lint.
    const ours = text.split('\n').filter((l) => l.includes('switchyard_')).join('\n') + '\n'
    execFileSync('promtool', ['check', 'metrics'], { input: ours })
  })
})
