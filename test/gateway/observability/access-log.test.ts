import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  apiKeyEntry,
  completionBody,
  createInProcessGateway,
  eventStreamAnswer,
  fakeNodes,
  jsonAnswer,
  recordingLogger,
  until,
} from '../../helpers/in-process-gateway.ts'

// The access log and request metrics, through the whole app in process: one line per request,
// written when the request really ends (a stream's last byte, or its client leaving), with ids,
// counts and durations, and never keys or prompt text.
const KEY = 'sy-access-log-test-key-0123456789ab'
const PROMPT = 'a secret prompt about Zanzibar'
const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }
const chunk = (text: string, finish: string | null = null) => ({
  id: 'c',
  object: 'text_completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, text, finish_reason: finish }],
})
const usage = {
  id: 'c',
  object: 'text_completion',
  created: 1,
  model: 'm',
  choices: [],
  usage: { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 },
}

function gatewayWith(answer: Parameters<typeof fakeNodes>[0], afterResponse?: (run: () => void) => void) {
  const fake = fakeNodes(answer)
  const { logger, lines } = recordingLogger()
  const gateway = createInProcessGateway({
    config: { auth: { apiKeys: [apiKeyEntry('key-a', KEY)] }, cache: { enabled: false } },
    upstream: fake.upstream,
    logger,
    deps: afterResponse ? { afterResponse } : {},
  })
  const requestLines = () => lines.filter((l) => l.message === 'request')
  const post = (body: object = {}, init: RequestInit = {}) =>
    gateway.app.request('/v1/completions', {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ model: 'm', prompt: PROMPT, ...body }),
      ...init,
    })
  const metrics = async () => (await gateway.metrics.render())!.body
  return { gateway, lines, requestLines, post, metrics }
}

describe('access log', () => {
  test('one line per JSON request with ids, status, model, tokens and durations; the request id is the response’s', async (t) => {
    const g = gatewayWith(() => jsonAnswer(200, completionBody(' hi', { prompt_tokens: 7, completion_tokens: 2 })))
    t.after(() => g.gateway.close())
    const response = await g.post()
    assert.equal(response.status, 200)
    await until(() => g.requestLines().length === 1, 'the log line')
    const [line] = g.requestLines()
    assert.equal(line.level, 'info')
    assert.deepEqual(
      { ...line.fields, durationMs: typeof line.fields.durationMs, firstByteMs: typeof line.fields.firstByteMs },
      {
        requestId: response.headers.get('x-request-id'),
        method: 'POST',
        route: '/v1/completions',
        status: 200,
        keyId: 'key-a',
        model: 'm',
        cache: undefined,
        outcome: 'ok',
        durationMs: 'number',
        firstByteMs: 'number',
        promptTokens: 7,
        completionTokens: 2,
      },
    )
    const text = await g.metrics()
    assert.match(text, /switchyard_gateway_requests_total\{route="\/v1\/completions",status="200",key_id="key-a"\} 1/)
    assert.match(text, /switchyard_gateway_tokens_total\{key_id="key-a",kind="completion"\} 2/)
  })

  test('refusals and unknown routes are logged too, as anonymous and unmatched', async (t) => {
    const g = gatewayWith(() => jsonAnswer(200, completionBody()))
    t.after(() => g.gateway.close())
    assert.equal(
      (await g.post({}, { headers: { ...auth, authorization: 'Bearer sy-nope-0123456789abcdef0123456789' } })).status,
      401,
    )
    assert.equal((await g.gateway.app.request('/v2/nothing')).status, 404)
    await until(() => g.requestLines().length === 2, 'two log lines')
    assert.deepEqual(
      g.requestLines().map((l) => [l.fields.route, l.fields.status, l.fields.keyId]),
      [
        ['/v1/completions', 401, undefined],
        ['unmatched', 404, undefined],
      ],
    )
    assert.match(
      await g.metrics(),
      /switchyard_gateway_requests_total\{route="unmatched",status="404",key_id="anonymous"\} 1/,
    )
  })

  test('never a key, a token or prompt text, whatever the outcome', async (t) => {
    const g = gatewayWith(() => jsonAnswer(500, { error: { message: `failed on ${PROMPT}` } }))
    t.after(() => g.gateway.close())
    await g.post()
    await g.post({}, { headers: { ...auth, authorization: `Bearer ${KEY}x` } })
    await until(() => g.requestLines().length === 2, 'two log lines')
    const everything = JSON.stringify(g.lines)
    for (const secret of [KEY, 'Zanzibar', 'secret prompt']) assert.ok(!everything.includes(secret), secret)
  })

  test('a JSON request ends after its response, through afterResponse', async (t) => {
    const deferred: (() => void)[] = []
    const g = gatewayWith(
      () => jsonAnswer(200, completionBody()),
      (run) => void deferred.push(run),
    )
    t.after(() => g.gateway.close())
    assert.equal((await g.post()).status, 200)
    assert.equal(g.requestLines().length, 0, 'not before the runtime runs the end')
    assert.equal(deferred.length, 1)
    deferred[0]()
    await until(() => g.requestLines().length === 1, 'the log line')
  })

  test('a stream is logged at its last byte with its usage', async (t) => {
    const g = gatewayWith(() => eventStreamAnswer([chunk(' Once'), chunk(' upon', 'length'), usage]))
    t.after(() => g.gateway.close())
    const response = await g.post({ stream: true })
    const reader = response.body!.getReader()
    await reader.read()
    assert.equal(g.requestLines().length, 0, 'not while the stream is open')
    while (!(await reader.read()).done) {}
    await until(() => g.requestLines().length === 1, 'the log line')
    const { fields } = g.requestLines()[0]
    assert.deepEqual([fields.status, fields.outcome, fields.promptTokens, fields.completionTokens], [200, 'ok', 7, 2])
  })

  test('a stream whose client leaves is logged as client_closed', async (t) => {
    const g = gatewayWith((_node, request) => eventStreamAnswer([chunk(' Once')], 'hang', request.cancel))
    t.after(() => g.gateway.close())
    const response = await g.post({ stream: true })
    const reader = response.body!.getReader()
    await reader.read()
    await reader.cancel()
    await until(() => g.requestLines().length === 1, 'the log line')
    assert.equal(g.requestLines()[0].fields.outcome, 'client_closed')
  })
})
