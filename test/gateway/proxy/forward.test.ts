import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { UpstreamRequest, UpstreamResponse } from '../../../gateway/upstream/upstream.ts'
import {
  apiKeyEntry,
  completionBody,
  createInProcessGateway,
  eventStreamAnswer,
  fakeNodes,
  jsonAnswer,
  regionOf,
  until,
} from '../../helpers/in-process-gateway.ts'

// Failover in the proxy, through the whole app in process (app.request) with fake backend
// nodes: which nodes are tried, what the client gets, and what the metrics count.
const KEY = 'sy-forward-test-key-0123456789abcdef'
const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }
const body = (extra: object = {}) => JSON.stringify({ model: 'm', prompt: 'Once upon a time', max_tokens: 4, ...extra })

/** The app with `nodes` nodes in one region, no backoff, and the given retry settings. */
function gatewayWith(nodes: number, answer: Parameters<typeof fakeNodes>[0], retry: object = {}, stream: object = {}) {
  const fake = fakeNodes(answer)
  const gateway = createInProcessGateway({
    config: {
      auth: { apiKeys: [apiKeyEntry('k', KEY)] },
      cache: { enabled: false },
      routing: {
        regions: [regionOf(nodes)],
        retry: { backoffBaseMs: 0, ...retry },
        stream,
        outlier: { consecutiveFailures: 100 },
      },
    },
    upstream: fake.upstream,
  })
  const post = (path = '/v1/completions', extra: object = {}, init: RequestInit = {}) =>
    gateway.app.request(path, { method: 'POST', headers: auth, body: body(extra), ...init })
  const metric = async (pattern: RegExp) => {
    const text = (await gateway.metrics.render())!.body
    return text
      .split('\n')
      .filter((line) => pattern.test(line))
      .reduce((sum, line) => sum + Number(line.split(' ').at(-1)), 0)
  }
  return { ...fake, gateway, post, metric }
}

/** Answers in order of arrival: the i-th request to any node gets answers[i] (the last one repeats). */
const inTurn = (...answers: ((request: UpstreamRequest) => UpstreamResponse | Promise<UpstreamResponse>)[]) => {
  let i = 0
  return (_node: string, request: UpstreamRequest) => answers[Math.min(i++, answers.length - 1)](request)
}
const ok = () => jsonAnswer(200, completionBody())
const serverError = () => jsonAnswer(500, { error: { message: 'boom' } })
const busy = () => jsonAnswer(503, { error: { message: 'node busy', code: 'overloaded' } }, { 'retry-after': '7' })
const refused = (): never => {
  throw new Error('ECONNREFUSED')
}

describe('forwarding: failover before the first byte', () => {
  test('a 5xx, a refused connection or a garbled 200 moves to another node; the client sees one answer', async (t) => {
    for (const failure of [serverError, refused, () => jsonAnswer(200, '{"choices": [')]) {
      const g = gatewayWith(3, inTurn(failure, ok))
      t.after(() => g.gateway.close())
      const response = await g.post()
      assert.equal(response.status, 200)
      assert.deepEqual(await response.json(), completionBody())
      const tried = g.nodesTried()
      assert.equal(tried.length, 2)
      assert.notEqual(tried[0], tried[1], 'the second try goes to another node')
      assert.equal(response.headers.get('x-switchyard-attempts'), '2')
      assert.equal(response.headers.get('x-switchyard-backend'), tried[1])
      assert.equal(await g.metric(/^switchyard_gateway_retries_total/), 1)
    }
  })

  test('a 4xx is the client’s: returned as it is, never retried', async (t) => {
    const g = gatewayWith(3, () =>
      jsonAnswer(400, { error: { message: 'prompt too long for this model', code: 'context_length_exceeded' } }),
    )
    t.after(() => g.gateway.close())
    const response = await g.post()
    assert.equal(response.status, 400)
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'context_length_exceeded')
    assert.equal(g.requests.length, 1)
  })

  test('the backend gets the request id and the passed headers; never the client’s key', async (t) => {
    const g = gatewayWith(1, ok)
    t.after(() => g.gateway.close())
    await g.post(
      '/v1/completions',
      {},
      { headers: { ...auth, traceparent: '00-abc-def-01', 'x-request-id': 'client-id-1' } },
    )
    const [sent] = g.requests
    assert.equal(sent.headers.traceparent, '00-abc-def-01')
    assert.ok(sent.headers['x-request-id'])
    assert.ok(!Object.values(sent.headers).some((v) => v.includes(KEY)), 'the API key stays at the gateway')
  })

  test('busy nodes: each tried once, then the backend’s own 503 and retry-after', async (t) => {
    const g = gatewayWith(3, busy)
    t.after(() => g.gateway.close())
    const response = await g.post()
    assert.equal(response.status, 503)
    assert.equal(response.headers.get('retry-after'), '7')
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'overloaded')
    assert.deepEqual([...g.nodesTried()].sort(), ['node-1', 'node-2', 'node-3'])
  })

  test('a busy node is skipped for a free one', async (t) => {
    const g = gatewayWith(2, inTurn(busy, ok))
    t.after(() => g.gateway.close())
    const response = await g.post()
    assert.equal(response.status, 200)
    assert.equal(g.requests.length, 2)
  })

  test('at most maxAttempts tries, then 503 no_backend_available in OpenAI’s shape', async (t) => {
    const g = gatewayWith(4, serverError, { maxAttempts: 2 })
    t.after(() => g.gateway.close())
    const response = await g.post()
    assert.equal(response.status, 503)
    assert.equal(response.headers.get('x-switchyard-attempts'), '2')
    const error = ((await response.json()) as { error: { code: string; type: string; message: string } }).error
    assert.equal(error.code, 'no_backend_available')
    assert.ok(error.message)
    assert.equal(g.requests.length, 2)
  })

  test('a spent retry budget stops retries and is counted', async (t) => {
    const g = gatewayWith(3, inTurn(serverError, ok), { budgetRatio: 0, budgetMinPerSecond: 0 })
    t.after(() => g.gateway.close())
    const response = await g.post()
    assert.equal(response.status, 503)
    assert.equal(g.requests.length, 1, 'no retry without budget')
    assert.equal(await g.metric(/^switchyard_gateway_retry_budget_exhausted_total/), 1)
  })

  test('a try that outlives perTryTimeoutMs is cancelled and the next node answers', async (t) => {
    const cancelled: boolean[] = []
    const hang = (request: UpstreamRequest) =>
      new Promise<UpstreamResponse>((_, reject) => {
        request.cancel!.on('abort', () => {
          cancelled.push(true)
          reject(new Error('aborted'))
        })
      })
    const g = gatewayWith(2, inTurn(hang, ok), { perTryTimeoutMs: 50 })
    t.after(() => g.gateway.close())
    const response = await g.post()
    assert.equal(response.status, 200)
    assert.deepEqual(cancelled, [true])
    assert.equal(await g.metric(/^switchyard_gateway_upstream_attempts_total\{.*outcome="timeout"/), 1)
  })

  test('a model no node serves is a 404, not a 503', async (t) => {
    const fake = fakeNodes(ok)
    const gateway = createInProcessGateway({
      config: {
        auth: { apiKeys: [apiKeyEntry('k', KEY)] },
        routing: { regions: [{ name: 'eu', nodes: [{ id: 'n', url: 'http://n.test', models: ['other'] }] }] },
      },
      upstream: fake.upstream,
    })
    t.after(() => gateway.close())
    const response = await gateway.app.request('/v1/completions', { method: 'POST', headers: auth, body: body() })
    assert.equal(response.status, 404)
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'model_not_found')
    assert.equal(fake.requests.length, 0)
  })
})

describe('forwarding: the client leaving', () => {
  test('before the answer: the try in flight is cancelled and nothing is retried', async (t) => {
    let cancel: UpstreamRequest['cancel']
    const g = gatewayWith(3, (_node, request) => {
      cancel = request.cancel
      return new Promise((_, reject) => request.cancel!.on('abort', () => reject(new Error('aborted'))))
    })
    t.after(() => g.gateway.close())
    const client = new AbortController()
    const pending = g.post('/v1/completions', {}, { signal: client.signal })
    await until(() => g.requests.length === 1, 'the first try')
    client.abort()
    const response = await pending
    assert.equal(response.status, 499)
    assert.equal(cancel!.aborted, true, 'the backend is told to stop')
    assert.equal(g.requests.length, 1, 'no other node is asked')
    await until(
      () => g.gateway.router.status().regions[0].nodes.every((n: { inFlight: number }) => n.inFlight === 0),
      'no request left in flight',
    )
  })

  test('during a stream: cancelling the response cancels the backend’s stream', async (t) => {
    let upstream: ReturnType<typeof eventStreamAnswer> | undefined
    const g = gatewayWith(
      1,
      (_node, request) => (upstream = eventStreamAnswer([chunk(' Once', [1])], 'hang', request.cancel)),
    )
    t.after(() => g.gateway.close())
    const response = await g.post('/v1/completions', { stream: true })
    assert.equal(response.status, 200)
    const reader = response.body!.getReader()
    const first = new TextDecoder().decode((await reader.read()).value)
    assert.match(first, /Once/)
    await reader.cancel()
    await until(() => upstream!.cancelled(), 'the upstream stream cancelled')
  })
})

/** A completions stream chunk, as the backend sends it with return_token_ids. */
const chunk = (text: string, tokenIds: number[], finish: string | null = null, id = 'cmpl-1') => ({
  id,
  object: 'text_completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, text, token_ids: tokenIds, finish_reason: finish }],
})
const usageChunk = (id = 'cmpl-1') => ({
  id,
  object: 'text_completion',
  created: 1,
  model: 'm',
  choices: [],
  usage: { prompt_tokens: 5, completion_tokens: 3, total_tokens: 8 },
})
const events = (text: string) =>
  text
    .split('\n\n')
    .filter(Boolean)
    .map((e) => e.replace(/^data: /, ''))

describe('forwarding: streams continued on another node', () => {
  test('a stream cut mid-way is resumed from the tokens so far; the client sees one stream', async (t) => {
    const g = gatewayWith(
      2,
      inTurn(
        () => eventStreamAnswer([chunk(' Once', [10]), chunk(' upon', [11])], 'cut'),
        () => eventStreamAnswer([chunk(' a', [12], 'length', 'cmpl-2'), usageChunk('cmpl-2')]),
      ),
    )
    t.after(() => g.gateway.close())
    const response = await g.post('/v1/completions', { stream: true, max_tokens: 3 })
    assert.equal(response.status, 200)
    const received = events(await response.text())
    assert.equal(received.at(-1), '[DONE]')
    const chunks = received.slice(0, -1).map((e) => JSON.parse(e))
    assert.equal(chunks.map((c) => c.choices[0].text).join(''), ' Once upon a')
    assert.ok(
      chunks.every((c) => c.id === 'cmpl-1'),
      'the first node’s id throughout',
    )
    assert.ok(
      chunks.every((c) => c.choices[0].token_ids === undefined),
      'token ids the client did not ask for are dropped',
    )
    assert.ok(
      chunks.every((c) => c.usage === undefined),
      'the usage chunk the client did not ask for is dropped',
    )
    const [first, second] = g.requests
    assert.equal(first.json?.return_token_ids, true, 'the gateway asks for token ids to be able to resume')
    assert.deepEqual(second.json?.resume, { token_ids: [10, 11], text_offset: ' Once upon'.length })
    assert.notEqual(first.node, second.node)
    assert.equal(await g.metric(/^switchyard_gateway_failovers_total\{.*scope="stream"/), 1)
  })

  test('when no node can continue, the stream ends with an error event, never a silent [DONE]', async (t) => {
    const g = gatewayWith(
      2,
      inTurn(() => eventStreamAnswer([chunk(' Once', [10])], 'error'), serverError),
    )
    t.after(() => g.gateway.close())
    const response = await g.post('/v1/completions', { stream: true })
    const received = events(await response.text())
    assert.notEqual(received.at(-1), '[DONE]')
    assert.equal(JSON.parse(received.at(-1)!).error.code, 'stream_interrupted')
  })

  test('with resume off a broken stream is not continued', async (t) => {
    const g = gatewayWith(
      2,
      inTurn(() => eventStreamAnswer([chunk(' Once', [10])], 'cut'), ok),
      {},
      { resume: false },
    )
    t.after(() => g.gateway.close())
    const received = events(await (await g.post('/v1/completions', { stream: true })).text())
    assert.equal(JSON.parse(received.at(-1)!).error.code, 'stream_interrupted')
    assert.equal(g.requests.length, 1)
    assert.equal(g.requests[0].json?.return_token_ids, undefined)
  })
})
