import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'

let backend: BackendProcess
before(async () => {
  backend = await startBackend({ MAX_BODY_BYTES: '4096' })
})
after(async () => backend?.stop())

const completion = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 3 }
const chat = { model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3 }
const generate = { prompt: 'Once upon a time', max_length: 3 }
const bases: Record<string, Record<string, unknown>> = { '/v1/completions': completion, '/v1/chat/completions': chat, '/generate': generate }

/** Every case must get this status (or any 4xx when null) with an OpenAI-shaped JSON error. */
type Case = [name: string, body: unknown, status: number | null, headers?: Record<string, string>]

function casesFor(path: string): Case[] {
  const base = bases[path]
  const promptField = path === '/v1/chat/completions' ? 'messages' : 'prompt'
  const common: Case[] = [
    ['malformed JSON', '{"model": ', 400],
    ['empty body', '', 400],
    ['array body', '[]', 400],
    ['number body', '42', 400],
    ['null body', 'null', 400],
    ['string body', '"hello"', 400],
    [`missing ${promptField}`, { ...base, [promptField]: undefined }, 400],
    ['temperature as a string', { ...base, temperature: 'hot' }, 400],
    ['temperature below range', { ...base, temperature: -1 }, 400],
    ['temperature above range', { ...base, temperature: 3 }, 400],
    ['top_p 0', { ...base, top_p: 0 }, 400],
    ['top_p above 1', { ...base, top_p: 1.5 }, 400],
    ['huge number', { ...base, temperature: 1e308 }, 400],
    ['seed as a string', { ...base, seed: 'x' }, 400],
    ['stop as a number', { ...base, stop: 5 }, 400],
    ['text/plain content type', JSON.stringify(base), 415, { 'content-type': 'text/plain' }],
    ['no content type', JSON.stringify(base), 415, { 'content-type': '' }],
    ['body over MAX_BODY_BYTES', { ...base, padding: 'x'.repeat(10_000) }, 413],
  ]
  if (path === '/generate') {
    return [
      ...common,
      ['prompt as an object', { ...base, prompt: {} }, 400],
      ['max_length 0', { ...base, max_length: 0 }, 400],
      ['max_length as a string', { ...base, max_length: '10' }, 400],
      ['num_return_sequences 0', { ...base, num_return_sequences: 0 }, 400],
      ['num_return_sequences 100', { ...base, num_return_sequences: 100 }, 400],
      ['top_k negative', { ...base, top_k: -3 }, 400],
      ['prompt + max_length over the context', { ...base, max_length: 600 }, 400],
      ['prompt longer than the context', { ...base, prompt: 'word '.repeat(700) }, 400],
      ['unknown model', { ...base, model: 'nope' }, 404],
    ]
  }
  const openai: Case[] = [
    ['missing model', { ...base, model: undefined }, 400],
    ['model as a number', { ...base, model: 5 }, 400],
    ['unknown model', { ...base, model: 'nope' }, 404],
    ['max_tokens as a string', { ...base, max_tokens: '10' }, 400],
    ['max_tokens 0', { ...base, max_tokens: 0 }, 400],
    ['max_tokens negative', { ...base, max_tokens: -5 }, 400],
    ['n 1.5', { ...base, n: 1.5 }, 400],
    ['n 0', { ...base, n: 0 }, 400],
    ['n 100', { ...base, n: 100 }, 400],
    ['stream as a string', { ...base, stream: 'yes' }, 400],
    ['presence_penalty 5', { ...base, presence_penalty: 5 }, 400],
    ['max_tokens over the context', { ...base, max_tokens: 600 }, 400],
    ['logit_bias', { ...base, logit_bias: { '5': 10 } }, 400],
  ]
  if (path === '/v1/completions') {
    return [
      ...common,
      ...openai,
      ['prompt as an object', { ...base, prompt: {} }, 400],
      ['prompt longer than the context', { ...base, prompt: 'word '.repeat(700) }, 400],
      ['token ids beyond the vocabulary', { ...base, prompt: [1, 99999] }, 400],
      ['negative token id', { ...base, prompt: [1, -4] }, 400],
      ['logprobs 10', { ...base, logprobs: 10 }, 400],
      ['suffix', { ...base, suffix: 'x' }, 400],
    ]
  }
  return [
    ...common,
    ...openai,
    ['messages as a string', { ...base, messages: 'x' }, 400],
    ['empty messages', { ...base, messages: [] }, 400],
    ['unknown role', { ...base, messages: [{ role: 'wizard', content: 'x' }] }, 400],
    ['content as a number', { ...base, messages: [{ role: 'user', content: 5 }] }, 400],
    ['top_logprobs 50', { ...base, logprobs: true, top_logprobs: 50 }, 400],
    ['tools', { ...base, tools: [{ type: 'function' }] }, 400],
    ['prompt longer than the context', { ...base, messages: [{ role: 'user', content: 'word '.repeat(700) }] }, 400],
  ]
}

describe('bad input gets a 4xx in OpenAI error shape, never a 5xx', () => {
  for (const path of Object.keys(bases)) {
    test(path, async () => {
      for (const [name, body, status, headers] of casesFor(path)) {
        const response = await postJson(`${backend.url}${path}`, typeof body === 'string' ? body : JSON.stringify(body), headers)
        const text = await response.text()
        if (status === null) assert.ok(response.status >= 400 && response.status < 500, `${path} ${name}: ${response.status} ${text}`)
        else assert.equal(response.status, status, `${path} ${name}: ${text}`)
        const json = JSON.parse(text) as { error: { message: unknown; type: unknown; param: unknown; code: unknown } }
        assert.equal(typeof json.error.message, 'string', `${path} ${name}`)
        assert.equal(typeof json.error.type, 'string', `${path} ${name}`)
        assert.ok('param' in json.error && 'code' in json.error, `${path} ${name}`)
      }
    })
  }

  test('odd but valid input succeeds: unicode, emoji, empty prompt, -0, unknown fields', async () => {
    for (const body of [
      { ...completion, prompt: 'Ünïcödé 🚀 日本語' },
      { ...completion, prompt: '' },
      { ...completion, temperature: -0 },
      { ...completion, some_future_field: true },
      { ...chat, messages: [{ role: 'user', content: [{ type: 'text', text: 'Hi 👋' }] }] },
    ]) {
      const path = 'messages' in body ? '/v1/chat/completions' : '/v1/completions'
      const response = await postJson(`${backend.url}${path}`, body)
      assert.equal(response.status, 200, JSON.stringify(body))
    }
  })

  test('unknown routes and methods get 404 JSON; the server is still healthy afterwards', async () => {
    for (const [method, path] of [['GET', '/nope'], ['GET', '/v1/completions'], ['DELETE', '/generate'], ['POST', '/v1/models']]) {
      const response = await fetch(`${backend.url}${path}`, { method })
      assert.equal(response.status, 404, `${method} ${path}`)
      assert.equal(typeof ((await response.json()) as { error: { message: string } }).error.message, 'string')
    }
    assert.equal((await fetch(`${backend.url}/health`)).status, 200)
    assert.equal((await postJson(`${backend.url}/v1/completions`, completion)).status, 200)
  })
})
