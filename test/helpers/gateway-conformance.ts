/**
 * Public-API checks every gateway build must pass, run against the Node gateway
 * (test/e2e/gateway.test.ts) and the Workers build (test/workers/gateway-worker.test.ts).
 * `urls` are base URLs of instances that share their stores; one URL is fine.
 */
import assert from 'node:assert/strict'
import OpenAI from 'openai'
import { postJson, readSse } from './backend-process.ts'

export const greedy = (extra: object = {}) => ({
  model: 'stories260K',
  prompt: 'Once upon a time',
  max_tokens: 20,
  temperature: 0,
  ...extra,
})
export const bearer = (key: string) => ({ authorization: `Bearer ${key}` })
const base = (url: string) => new URL(url).origin

/** The official openai client, streaming and not, completions and chat; the model list. */
export async function checkOpenAiClient(url: string, key: string): Promise<void> {
  const client = new OpenAI({ apiKey: key, baseURL: `${base(url)}/v1` })
  const plain = await client.completions.create({
    model: 'stories260K',
    prompt: 'Once upon a time',
    max_tokens: 30,
    temperature: 0,
  })
  let streamed = ''
  for await (const chunk of await client.completions.create({
    model: 'stories260K',
    prompt: 'Once upon a time',
    max_tokens: 30,
    temperature: 0,
    stream: true,
  }))
    streamed += chunk.choices[0]?.text ?? ''
  assert.ok(plain.choices[0].text.startsWith(', there was a little girl named Lily'))
  assert.equal(streamed, plain.choices[0].text)
  const chat = await client.chat.completions.create({
    model: 'stories260K',
    messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: 10,
    temperature: 0,
  })
  let chatStreamed = ''
  for await (const chunk of await client.chat.completions.create({
    model: 'stories260K',
    messages: [{ role: 'user', content: 'Hi' }],
    max_tokens: 10,
    temperature: 0,
    stream: true,
  }))
    chatStreamed += chunk.choices[0]?.delta?.content ?? ''
  assert.equal(chatStreamed, chat.choices[0].message.content)
  const models = await client.models.list()
  assert.deepEqual(
    models.data.map((m) => m.id),
    ['stories260K'],
  )
}

/** 401 alike for missing, unknown or malformed credentials; 403 for a model the key may not use. */
export async function checkAuthentication(url: string, keys: { key: string; limitedKey: string }): Promise<void> {
  const endpoint = `${base(url)}/v1/completions`
  const bodies = []
  for (const headers of [{}, bearer('sy-unknown'), { authorization: 'Basic abc' }, { 'x-api-key': 'nope' }] as Record<
    string,
    string
  >[]) {
    const r = await postJson(endpoint, greedy(), headers)
    assert.equal(r.status, 401)
    bodies.push(await r.text())
  }
  assert.equal(new Set(bodies).size, 1)
  const forbidden = await postJson(endpoint, greedy(), bearer(keys.limitedKey))
  assert.equal(forbidden.status, 403)
  assert.equal(((await forbidden.json()) as { error: { code: string } }).error.code, 'model_not_allowed')
  assert.equal((await postJson(endpoint, greedy(), { 'x-api-key': keys.key })).status, 200)
}

/** A key made by the admin API works on every instance; once revoked it fails at once everywhere. */
export async function checkAdminKeys(urls: string[], adminToken: string): Promise<void> {
  const [first, last] = [base(urls[0]), base(urls.at(-1)!)]
  const admin = { authorization: `Bearer ${adminToken}` }
  assert.equal((await postJson(`${first}/admin/keys`, { tenant: 't1' })).status, 401)
  const created = await postJson(`${first}/admin/keys`, { tenant: 't1' }, admin)
  assert.equal(created.status, 201)
  const { id, key } = (await created.json()) as { id: string; key: string }
  assert.equal((await postJson(`${last}/v1/completions`, greedy({ max_tokens: 1 }), bearer(key))).status, 200)
  const listed = await (await fetch(`${first}/admin/keys`, { headers: admin })).text()
  assert.ok(listed.includes(id) && !listed.includes(key))
  assert.equal((await fetch(`${last}/admin/keys/${id}`, { method: 'DELETE', headers: admin })).status, 200)
  for (const url of [first, last])
    assert.equal((await postJson(`${url}/v1/completions`, greedy({ max_tokens: 1 }), bearer(key))).status, 401)
}

/** The cache: HIT for a repeated greedy request (on any instance), BYPASS when sampled, MISS with no-cache; a stream is replayed as SSE. */
export async function checkCache(urls: string[], key: string): Promise<void> {
  const [first, last] = [base(urls[0]), base(urls.at(-1)!)]
  const body = greedy({ prompt: 'A cached story', max_tokens: 12 })
  const first1 = await postJson(`${first}/v1/completions`, body, bearer(key))
  assert.equal(first1.headers.get('x-cache'), 'MISS')
  type Answer = { id: string; created: number; choices: { text: string }[] }
  const firstAnswer = (await first1.json()) as Answer
  const firstText = firstAnswer.choices[0].text
  // Stores write in the background, after the response: give the write a moment to land.
  const again = await untilHit(() => postJson(`${last}/v1/completions`, body, bearer(key)))
  const hitAnswer = (await again.json()) as Answer
  assert.equal(hitAnswer.choices[0].text, firstText)
  // The same content under an identity of its own, as every OpenAI answer has.
  assert.notEqual(hitAnswer.id, firstAnswer.id)
  assert.match(hitAnswer.id, /^cmpl-/)
  assert.ok(hitAnswer.created >= firstAnswer.created)
  const sampled = await postJson(`${first}/v1/completions`, { ...body, temperature: 0.8 }, bearer(key))
  assert.equal(sampled.headers.get('x-cache'), 'BYPASS')
  await sampled.body?.cancel()
  const fresh = await postJson(`${first}/v1/completions`, body, { ...bearer(key), 'cache-control': 'no-cache' })
  assert.equal(fresh.headers.get('x-cache'), 'MISS')
  await fresh.body?.cancel()

  const streamBody = { ...body, stream: true }
  const miss = await postJson(`${first}/v1/completions`, streamBody, bearer(key))
  assert.equal(miss.headers.get('x-cache'), 'MISS')
  const missEvents = await readSse(miss)
  const hit = await untilHit(() => postJson(`${first}/v1/completions`, streamBody, bearer(key)))
  assert.match(hit.headers.get('content-type')!, /text\/event-stream/)
  const hitEvents = await readSse(hit)
  const text = (events: unknown[]) =>
    events
      .filter((e) => typeof e === 'object')
      .map((e) => (e as { choices: { text: string }[] }).choices[0]?.text ?? '')
      .join('')
  assert.equal(text(hitEvents), text(missEvents))
  assert.equal(text(hitEvents), firstText)
  assert.equal(hitEvents.at(-1), '[DONE]')
}

async function untilHit(send: () => Promise<Response>, timeoutMs = 2000): Promise<Response> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const response = await send()
    if (response.headers.get('x-cache') === 'HIT') return response
    assert.equal(response.headers.get('x-cache'), 'MISS')
    await response.body?.cancel()
    if (Date.now() > deadline) assert.fail('the repeated request never became a cache HIT')
    await new Promise((r) => setTimeout(r, 50))
  }
}
