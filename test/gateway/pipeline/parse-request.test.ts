import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import {
  apiKeyEntry,
  completionBody,
  createInProcessGateway,
  fakeNodes,
  jsonAnswer,
} from '../../helpers/in-process-gateway.ts'

// Request parsing and validation at the gateway, through the whole app in process: bad input
// gets a 4xx in OpenAI's shape and never reaches a node; good input is forwarded with the
// small edits the later stages need.
const KEY = 'sy-parse-test-key-0123456789abcdef'
const fake = fakeNodes(() => jsonAnswer(200, completionBody()))
const gateway = createInProcessGateway({
  config: {
    auth: { apiKeys: [apiKeyEntry('k', KEY)] },
    cache: { enabled: false },
    server: { maxPromptChars: 100 },
    limits: { defaultMaxTokens: 77 },
  },
  upstream: fake.upstream,
})
after(() => gateway.close())

const post = (path: string, body: string, contentType = 'application/json') =>
  gateway.app.request(path, {
    method: 'POST',
    headers: { authorization: `Bearer ${KEY}`, 'content-type': contentType },
    body,
  })
type ErrorBody = { error: { message: string; type: string; param: string | null; code: string } }

/** Sends the body; asserts a 4xx error in OpenAI's shape that no node saw, and returns it. */
async function refused(path: string, body: string, status: number, contentType?: string): Promise<ErrorBody['error']> {
  const before = fake.requests.length
  const response = await post(path, body, contentType)
  assert.equal(response.status, status, `${path} ${body.slice(0, 80)}`)
  assert.match(response.headers.get('content-type')!, /^application\/json/)
  const { error } = (await response.json()) as ErrorBody
  assert.equal(typeof error.message, 'string')
  assert.ok(error.message.length > 0)
  assert.equal(error.type, 'invalid_request_error')
  assert.equal(fake.requests.length, before, 'bad input never reaches a node')
  return error
}

/** Sends the body; asserts it was forwarded and returns what the node received. */
async function forwarded(path: string, body: object): Promise<Record<string, any>> {
  const response = await post(path, JSON.stringify(body))
  assert.equal(response.status, 200, await response.clone().text())
  return fake.requests.at(-1)!.json!
}

describe('parse-request: refused', () => {
  test('415 unless the body is declared JSON', async () => {
    for (const type of ['text/plain', 'application/x-www-form-urlencoded', '', 'application/jsonx']) {
      assert.equal(
        (await refused('/v1/completions', '{"model":"m","prompt":"hi"}', 415, type)).code,
        'unsupported_media_type',
      )
    }
  })

  test('400 invalid_json for bodies that are not JSON, or nest too deep', async () => {
    for (const body of ['', '{', '{"prompt": "hi",}', 'null x', '\u0000'])
      assert.equal((await refused('/v1/completions', body, 400)).code, 'invalid_json')
    const deep = `${'['.repeat(200)}${']'.repeat(200)}`
    assert.match(
      (await refused('/v1/completions', JSON.stringify({ model: 'm', prompt: 'hi', extra: JSON.parse(deep) }), 400))
        .message,
      /nests deeper/,
    )
  })

  test('400 naming the parameter for values the schemas refuse', async () => {
    const cases: [string, object, string][] = [
      ['/v1/completions', { model: 'm', prompt: 'hi', max_tokens: -1 }, 'max_tokens'],
      ['/v1/completions', { model: 'm', prompt: 'hi', temperature: 'hot' }, 'temperature'],
      ['/v1/completions', { model: 'm', max_tokens: 4 }, 'prompt'],
      ['/v1/chat/completions', { model: 'm', messages: 'hi' }, 'messages'],
      ['/v1/chat/completions', { model: 'm', messages: [{ role: 'wizard', content: 'hi' }] }, 'messages'],
      ['/generate', { model: 'm', prompt: 'hi', num_return_sequences: 99 }, 'num_return_sequences'],
    ]
    for (const [path, body, param] of cases) {
      const error = await refused(path, JSON.stringify(body), 400)
      assert.ok(error.param?.startsWith(param), `${JSON.stringify(body)}: param ${error.param}`)
    }
    for (const body of ['[]', '"prompt"', '42', 'null']) await refused('/v1/completions', body, 400)
  })

  test('clients may not send resume (the gateway’s own continuation field)', async () => {
    const error = await refused(
      '/v1/completions',
      JSON.stringify({ model: 'm', prompt: 'hi', resume: { token_ids: [1], text_offset: 0 } }),
      400,
    )
    assert.deepEqual([error.code, error.param], ['unsupported_parameter', 'resume'])
  })

  test('prompts over maxPromptChars, counted over every prompt and message', async () => {
    const long = 'x'.repeat(101)
    assert.deepEqual(
      await refused('/v1/completions', JSON.stringify({ model: 'm', prompt: long }), 400).then((e) => [
        e.code,
        e.param,
      ]),
      ['prompt_too_large', 'prompt'],
    )
    assert.equal(
      (await refused('/v1/completions', JSON.stringify({ model: 'm', prompt: ['x'.repeat(60), 'x'.repeat(60)] }), 400))
        .code,
      'prompt_too_large',
    )
    const messages = [
      { role: 'system', content: 'x'.repeat(60) },
      { role: 'user', content: [{ type: 'text', text: 'x'.repeat(60) }] },
    ]
    assert.deepEqual(
      await refused('/v1/chat/completions', JSON.stringify({ model: 'm', messages }), 400).then((e) => [
        e.code,
        e.param,
      ]),
      ['prompt_too_large', 'messages'],
    )
  })
})

describe('parse-request: forwarded', () => {
  test('max_tokens is left to the backend; the token reservation counts 16 for completions, defaultMaxTokens for chat', async (t) => {
    // 'hi' is at most 2 tokens, plus 16 per message and 16 for the template: the prompt bound.
    const cases: [string, object, number][] = [
      ['/v1/completions', { model: 'm', prompt: 'hi' }, 2 + 16 + 16],
      ['/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 'hi' }] }, 2 + 32 + 77],
      ['/v1/completions', { model: 'm', prompt: 'hi', max_tokens: 5, n: 3 }, 2 + 16 + 15],
      [
        '/v1/chat/completions',
        { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_completion_tokens: 9 },
        2 + 32 + 9,
      ],
    ]
    for (const [path, body, reserved] of cases) {
      const own = fakeNodes(() => jsonAnswer(200, completionBody()))
      const limited = createInProcessGateway({
        config: {
          auth: { apiKeys: [apiKeyEntry('k', KEY)] },
          cache: { enabled: false },
          limits: { defaultMaxTokens: 77, defaults: { tokensPerMinute: 1000 } },
        },
        upstream: own.upstream,
      })
      t.after(() => limited.close())
      const response = await limited.app.request(path, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      })
      assert.equal(response.status, 200)
      assert.equal(
        response.headers.get('x-ratelimit-remaining-tokens'),
        String(1000 - reserved),
        `${path} ${JSON.stringify(body)}`,
      )
      const sent = own.requests.find((r) => r.path === path)!.json!
      assert.equal(sent.max_tokens, (body as { max_tokens?: number }).max_tokens, 'max_tokens as the client sent it')
    }
  })

  test('unknown fields pass through; an +json content type is JSON', async () => {
    const response = await post(
      '/v1/completions',
      JSON.stringify({ model: 'm', prompt: 'hi', user: 'u-1', logit_bias: { '5': 1 } }),
      'application/vnd.api+json; charset=utf-8',
    )
    assert.equal(response.status, 200)
    const sent = fake.requests.at(-1)!.json!
    assert.equal(sent.user, 'u-1')
    assert.deepEqual(sent.logit_bias, { '5': 1 })
  })

  test('token-id prompts are accepted and not counted as characters', async () => {
    const ids = Array.from({ length: 500 }, (_, i) => i + 3)
    assert.deepEqual((await forwarded('/v1/completions', { model: 'm', prompt: ids })).prompt, ids)
  })
})
