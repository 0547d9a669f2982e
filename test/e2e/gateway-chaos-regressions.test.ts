import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, test } from 'node:test'
import { Agent, fetch as undiciFetch } from 'undici'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { startFaultyNode } from '../helpers/faulty-node.ts'
import { startGateway } from '../helpers/gateway-process.ts'

// Gateway bugs the chaos test (test/chaos/) found, each pinned down on its own.
const KEY = 'sy-test-key-for-chaos-regressions-00'
const auth = { authorization: `Bearer ${KEY}` }
const backends: Record<string, BackendProcess> = {}
const config = (nodes: object[]) => ({
  auth: { apiKeys: [{ id: 'k', tenant: 't', hash: createHash('sha256').update(KEY).digest('hex') }] },
  cache: { enabled: false },
  routing: {
    regions: [{ name: 'eu', nodes }],
    breaker: { volumeThreshold: 1000 },
    outlier: { consecutiveFailures: 1000 },
  },
})
before(async () => {
  const [a, b] = await Promise.all([startBackend(), startBackend()])
  Object.assign(backends, { a, b })
})
after(async () => {
  await Promise.all(Object.values(backends).map((b) => b.stop('SIGKILL')))
})

test('a 200 whose JSON body is cut short is a failed try: retried on another node, never passed on', async () => {
  const faulty = await startFaultyNode('malformed', backends.a.url)
  const gateway = await startGateway(
    config([
      { id: 'faulty', url: faulty.url, weight: 1000 },
      { id: 'good', url: backends.b.url, weight: 1 },
    ]),
  )
  try {
    const body = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 }
    const reference = await (await postJson(`${backends.b.url}/v1/completions`, body)).json()
    for (let i = 0; i < 5; i++) {
      const response = await postJson(`${gateway.url}/v1/completions`, body, auth)
      assert.equal(response.status, 200)
      assert.equal(response.headers.get('x-switchyard-backend'), 'good')
      const answer = (await response.json()) as { choices: unknown }
      assert.deepEqual(answer.choices, (reference as { choices: unknown }).choices)
    }
    assert.ok((faulty.state.faults.truncated_json ?? 0) >= 1, 'the faulty node was tried')
  } finally {
    await gateway.stop()
    await faulty.stop()
  }
})

test('a gateway draining on SIGTERM still continues a stream whose node dies, then exits 0', async () => {
  // The router (breakers) was shut before the requests in flight were finished.
  const gateway = await startGateway(
    config([
      { id: 'a', url: backends.a.url },
      { id: 'b', url: backends.b.url },
    ]),
  )
  const body = {
    model: 'stories260K',
    prompt: 'Once upon a time',
    max_tokens: 400,
    ignore_eos: true,
    temperature: 0,
    stream: true,
  }
  const reference = (
    (await (await postJson(`${backends.a.url}/v1/completions`, { ...body, stream: false })).json()) as {
      choices: { text: string }[]
    }
  ).choices[0].text
  const response = await postJson(`${gateway.url}/v1/completions`, body, auth)
  const serving = backends[response.headers.get('x-switchyard-backend')!]
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let raw = decoder.decode((await reader.read()).value, { stream: true })
  const exited = gateway.stop('SIGTERM')
  await new Promise((r) => setTimeout(r, 50))
  serving.child.kill('SIGKILL')
  for (let r = await reader.read(); !r.done; r = await reader.read()) raw += decoder.decode(r.value, { stream: true })
  const events = raw
    .trim()
    .split('\n\n')
    .map((e) => e.slice(6))
  assert.equal(events.at(-1), '[DONE]', 'the stream was continued on the other node')
  const text = events
    .slice(0, -1)
    .map((e) => (JSON.parse(e) as { choices: { text: string }[] }).choices[0]?.text ?? '')
    .join('')
  assert.equal(text, reference)
  assert.equal(await exited, 0)
})

test('a gateway stopping on SIGTERM closes keep-alive connections as they go idle instead of waiting them out', async () => {
  // Node's server.close() waits for kept-alive connections to time out (seconds) unless they are closed.
  // Both nodes are listed: the test above kills one of them.
  const gateway = await startGateway(
    config([
      { id: 'a', url: backends.a.url },
      { id: 'b', url: backends.b.url },
    ]),
  )
  const agent = new Agent({ keepAliveTimeout: 60_000 })
  try {
    // A request in flight at SIGTERM: its connection becomes idle only after the answer.
    const inFlight = undiciFetch(`${gateway.url}/v1/completions`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ model: 'stories260K', prompt: 'Once', max_tokens: 300, ignore_eos: true }),
    })
    await new Promise((r) => setTimeout(r, 30))
    const exited = gateway.stop('SIGTERM')
    const answer = await inFlight
    assert.equal(answer.status, 200, 'the request in flight is finished')
    await answer.text()
    const answeredAt = Date.now()
    assert.equal(await exited, 0)
    assert.ok(Date.now() - answeredAt < 1000, `exited ${Date.now() - answeredAt} ms after its last answer`)
  } finally {
    await gateway.stop('SIGKILL')
    await agent.close()
  }
})
