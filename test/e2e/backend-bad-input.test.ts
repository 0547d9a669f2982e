import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { referenceContinuation } from '../helpers/reference.ts'

/**
 * Bad input against a real backend node, table-driven for every generation endpoint: each case
 * must get a 4xx with an OpenAI-shaped JSON error (`{error: {message, type, param, code}}`) and
 * never a 5xx; a few valid-but-odd inputs (unicode, -0, empty prompt) must succeed. Afterwards
 * the node must still serve normally.
 */

const MODEL = 'stories260K'
const MAX_BODY_BYTES = 4096
const CONTEXT = 512
const VOCAB = 512
/** 'x ' × 600 tokenizes to ~1200 tokens, well over the 512-token context. */
const TOO_LONG = 'x '.repeat(600)

let backend: BackendProcess
before(async () => {
  backend = await startBackend({ MAX_BODY_BYTES: String(MAX_BODY_BYTES), MAX_QUEUE: '256' })
})
after(async () => {
  await backend?.stop()
})

interface Endpoint {
  path: string
  base: Record<string, unknown>
  /** Field names differ on /generate. */
  maxTokens: string
  n: string
  promptField: 'prompt' | 'messages'
  prompt: (text: string) => unknown
}

const endpoints: Endpoint[] = [
  {
    path: '/v1/completions',
    base: { model: MODEL, prompt: 'Once upon a time', max_tokens: 2 },
    maxTokens: 'max_tokens',
    n: 'n',
    promptField: 'prompt',
    prompt: (t) => t,
  },
  {
    path: '/v1/chat/completions',
    base: { model: MODEL, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 },
    maxTokens: 'max_tokens',
    n: 'n',
    promptField: 'messages',
    prompt: (t) => [{ role: 'user', content: t }],
  },
  {
    path: '/generate',
    base: { prompt: 'Once upon a time', max_length: 2 },
    maxTokens: 'max_length',
    n: 'num_return_sequences',
    promptField: 'prompt',
    prompt: (t) => t,
  },
]

interface Case {
  name: string
  /** An object is sent as JSON; a string is sent as the raw body. */
  body: unknown
  /** Allowed statuses; 200 marks inputs that are valid. */
  status: number | number[]
  code?: string
  /** Exact, or a pattern (zod names nested paths such as 'prompt.0'). */
  param?: string | null | RegExp
  message?: RegExp
  headers?: Record<string, string>
  todo?: string
}

/** The base body with `key` set to a raw JSON literal (for -0, 1e400 and other values JSON.stringify cannot write). */
function rawWith(base: Record<string, unknown>, key: string, literal: string): string {
  return JSON.stringify({ ...base, [key]: '__RAW__' }).replace('"__RAW__"', literal)
}

const without = (base: Record<string, unknown>, key: string) =>
  Object.fromEntries(Object.entries(base).filter(([k]) => k !== key))

function commonCases(ep: Endpoint): Case[] {
  const b = ep.base
  const set = (key: string, value: unknown) => ({ ...b, [key]: value })
  const invalid = (name: string, key: string, value: unknown, extra: Partial<Case> = {}): Case => ({
    name,
    body: set(key, value),
    status: 400,
    code: 'invalid_value',
    param: key,
    ...extra,
  })
  return [
    // Not JSON, or JSON that is not an object.
    { name: 'malformed JSON', body: '{"model": ', status: 400, code: 'invalid_json' },
    { name: 'truncated JSON object', body: JSON.stringify(b).slice(0, -1), status: 400, code: 'invalid_json' },
    { name: 'trailing garbage after JSON', body: `${JSON.stringify(b)}}`, status: 400, code: 'invalid_json' },
    { name: 'empty body', body: '', status: 400, code: 'invalid_json' },
    { name: 'whitespace body', body: '  \n ', status: 400, code: 'invalid_json' },
    { name: 'JSON array body', body: '[]', status: 400, code: 'invalid_value' },
    { name: 'JSON array of objects body', body: JSON.stringify([b]), status: 400, code: 'invalid_value' },
    { name: 'JSON number body', body: '42', status: 400, code: 'invalid_value' },
    { name: 'JSON null body', body: 'null', status: 400, code: 'invalid_value' },
    { name: 'JSON string body', body: '"hello"', status: 400, code: 'invalid_value' },
    { name: 'JSON boolean body', body: 'true', status: 400, code: 'invalid_value' },
    // Missing or wrongly typed fields.
    {
      name: `missing ${ep.promptField}`,
      body: without(b, ep.promptField),
      status: 400,
      code: 'invalid_value',
      param: ep.promptField,
    },
    invalid('model: 5', 'model', 5),
    invalid('model: ""', 'model', ''),
    invalid(`${ep.promptField}: {}`, ep.promptField, {}),
    invalid(`${ep.promptField}: null`, ep.promptField, null),
    invalid(`${ep.maxTokens}: "10"`, ep.maxTokens, '10'),
    invalid(`${ep.maxTokens}: 2.5`, ep.maxTokens, 2.5),
    invalid('temperature: "hot"', 'temperature', 'hot'),
    invalid(`${ep.n}: 1.5`, ep.n, 1.5),
    invalid(`${ep.n}: "2"`, ep.n, '2'),
    invalid('stop: 5', 'stop', 5),
    invalid('stop: [1, 2]', 'stop', [1, 2]),
    invalid('stop: five strings', 'stop', ['a', 'b', 'c', 'd', 'e']),
    invalid('seed: "x"', 'seed', 'x'),
    invalid('seed: 1.5', 'seed', 1.5),
    invalid('top_p: "x"', 'top_p', 'x'),
    // Out of range.
    invalid('temperature: -1', 'temperature', -1),
    invalid('temperature: 3', 'temperature', 3),
    invalid('top_p: 0', 'top_p', 0),
    invalid('top_p: 1.5', 'top_p', 1.5),
    invalid(`${ep.n}: 0`, ep.n, 0),
    invalid(`${ep.n}: 100`, ep.n, 100),
    invalid(`${ep.maxTokens}: 0`, ep.maxTokens, 0),
    invalid(`${ep.maxTokens}: -5`, ep.maxTokens, -5),
    // Huge numbers; 1e400 parses to Infinity.
    invalid(`${ep.maxTokens}: 1e308`, ep.maxTokens, 1e308),
    invalid('temperature: 1e308', 'temperature', 1e308),
    invalid(`${ep.n}: 1e308`, ep.n, 1e308),
    invalid('seed: 1e308', 'seed', 1e308),
    invalid('seed: -1e308', 'seed', -1e308),
    {
      name: `${ep.maxTokens}: 1e400 (Infinity)`,
      body: rawWith(b, ep.maxTokens, '1e400'),
      status: 400,
      code: 'invalid_value',
      param: ep.maxTokens,
    },
    {
      name: 'temperature: -1e400 (-Infinity)',
      body: rawWith(b, 'temperature', '-1e400'),
      status: 400,
      code: 'invalid_value',
      param: 'temperature',
    },
    // Negative zero: a valid 0 where 0 is allowed, out of range where it is not.
    { name: 'temperature: -0 (greedy)', body: rawWith(b, 'temperature', '-0'), status: 200 },
    { name: 'seed: -0', body: rawWith(b, 'seed', '-0'), status: 200 },
    {
      name: `${ep.maxTokens}: -0`,
      body: rawWith(b, ep.maxTokens, '-0'),
      status: 400,
      code: 'invalid_value',
      param: ep.maxTokens,
    },
    { name: 'top_p: -0', body: rawWith(b, 'top_p', '-0'), status: 400, code: 'invalid_value', param: 'top_p' },
    // Unknown model.
    {
      name: 'unknown model',
      body: set('model', 'no-such-model'),
      status: 404,
      code: 'model_not_found',
      param: 'model',
      message: /no-such-model/,
    },
    // Content type and size.
    {
      name: 'Content-Type text/plain',
      body: JSON.stringify(b),
      headers: { 'content-type': 'text/plain' },
      status: 415,
      code: 'unsupported_media_type',
    },
    {
      name: 'Content-Type form-urlencoded',
      body: JSON.stringify(b),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      status: 415,
      code: 'unsupported_media_type',
    },
    {
      name: 'Content-Type application/json; charset=utf-8 is fine',
      body: JSON.stringify(b),
      headers: { 'content-type': 'application/json; charset=utf-8' },
      status: 200,
    },
    {
      name: `body of 10 KB over MAX_BODY_BYTES=${MAX_BODY_BYTES}`,
      body: set(ep.promptField, ep.prompt('y'.repeat(10_240))),
      status: 413,
      code: 'request_too_large',
    },
    {
      name: '10 KB of padding in an unknown field',
      body: { ...b, padding: 'z'.repeat(10_240) },
      status: 413,
      code: 'request_too_large',
    },
    // The context window.
    {
      name: 'prompt longer than the context',
      body: set(ep.promptField, ep.prompt(TOO_LONG)),
      status: 400,
      code: 'context_length_exceeded',
      message: new RegExp(`maximum context length is ${CONTEXT} tokens`),
    },
    {
      name: `prompt + ${ep.maxTokens} over the context`,
      body: set(ep.maxTokens, CONTEXT),
      status: 400,
      code: 'context_length_exceeded',
      param: 'max_tokens',
      message: new RegExp(`maximum context length is ${CONTEXT} tokens`),
    },
    {
      name: `${ep.maxTokens}: 1000000 (allowed by the schema, over the context)`,
      body: set(ep.maxTokens, 1_000_000),
      status: 400,
      code: 'context_length_exceeded',
    },
    // Valid but unusual text: must be served.
    {
      name: 'unicode and emoji prompt',
      body: set(ep.promptField, ep.prompt('🦄 héllo 日本語 ✓ — “quotes” 👩‍👩‍👧')),
      status: 200,
    },
    { name: 'prompt of only emoji', body: set(ep.promptField, ep.prompt('😀😀😀😀')), status: 200 },
    { name: 'prompt with a NUL character', body: set(ep.promptField, ep.prompt('a\u0000b')), status: [200, 400] },
    {
      name: 'prompt with a lone surrogate',
      body: rawWith(b, ep.promptField, JSON.stringify(ep.prompt('__S__')).replace('__S__', '\\ud800')),
      status: [200, 400],
    },
    { name: 'prompt that spells special tokens', body: set(ep.promptField, ep.prompt('</s><s><unk>')), status: 200 },
    { name: 'empty string prompt', body: set(ep.promptField, ep.prompt('')), status: [200, 400] },
  ]
}

const openAiCases = (ep: Endpoint): Case[] => {
  const b = ep.base
  const invalid = (name: string, key: string, value: unknown): Case => ({
    name,
    body: { ...b, [key]: value },
    status: 400,
    code: 'invalid_value',
    param: key,
  })
  return [
    { name: 'missing model', body: without(b, 'model'), status: 400, code: 'invalid_value', param: 'model' },
    invalid('stream: "yes"', 'stream', 'yes'),
    invalid('stream: 1', 'stream', 1),
    invalid('stream_options: "x"', 'stream_options', 'x'),
    invalid('presence_penalty: 5', 'presence_penalty', 5),
    invalid('frequency_penalty: -3', 'frequency_penalty', -3),
    invalid('top_k: 1.5', 'top_k', 1.5),
    invalid('min_p: 2', 'min_p', 2),
    invalid('repetition_penalty: 0', 'repetition_penalty', 0),
    invalid('ignore_eos: "yes"', 'ignore_eos', 'yes'),
    invalid('user: 5', 'user', 5),
    {
      name: 'logit_bias (non-empty) is refused',
      body: { ...b, logit_bias: { '5': 1 } },
      status: 400,
      code: 'unsupported_parameter',
      param: 'logit_bias',
    },
    {
      name: 'stream: true with an unknown model is a JSON 404, not a stream',
      body: { ...b, stream: true, model: 'nope' },
      status: 404,
      code: 'model_not_found',
    },
    {
      name: 'stream: true with a bad value is a JSON 400, not a stream',
      body: { ...b, stream: true, temperature: 9 },
      status: 400,
      code: 'invalid_value',
    },
  ]
}

const completionCases = (ep: Endpoint): Case[] => {
  const b = ep.base
  const prompt = (value: unknown, status: number | number[] = 400, extra: Partial<Case> = {}): Case => ({
    name: `prompt: ${JSON.stringify(value).slice(0, 40)}`,
    body: { ...b, prompt: value },
    status,
    param: /^prompt(\.\d+)*$/,
    ...extra,
  })
  const ids = (count: number) => Array.from({ length: count }, (_, i) => 10 + (i % 400))
  return [
    prompt([]),
    prompt([[]]),
    prompt([1, 'a']),
    prompt([1.5]),
    prompt([-1]),
    prompt([true]),
    prompt([[1, 2], 'a']),
    { ...prompt([1, VOCAB], 400, { message: new RegExp(`${VOCAB}`) }), name: `token ids >= the vocabulary (${VOCAB})` },
    {
      ...prompt([
        [1, 2],
        [1, 600],
      ]),
      name: 'a list of token-id lists with an id >= the vocabulary',
    },
    { ...prompt([2 ** 31]), name: 'token id 2^31' },
    { ...prompt([1e308]), name: 'token id 1e308' },
    { ...prompt(Array.from({ length: 65 }, () => 'a')), name: '65 prompts (over 64)' },
    {
      name: '511 token ids + max_tokens 1 fills the context exactly',
      body: { ...b, prompt: ids(511), max_tokens: 1 },
      status: 200,
    },
    {
      name: '512 token ids leave no room',
      body: { ...b, prompt: ids(512), max_tokens: 1 },
      status: 400,
      code: 'context_length_exceeded',
      message: /512/,
    },
    {
      name: '500 token ids + max_tokens 12 fit',
      body: { ...b, prompt: ids(500), max_tokens: 12, temperature: 0 },
      status: 200,
    },
    {
      name: '500 token ids + max_tokens 13 do not',
      body: { ...b, prompt: ids(500), max_tokens: 13 },
      status: 400,
      code: 'context_length_exceeded',
      param: 'max_tokens',
      message: /513/,
    },
    { name: 'logprobs: 10', body: { ...b, logprobs: 10 }, status: 400, code: 'invalid_value', param: 'logprobs' },
    { name: 'logprobs: -1', body: { ...b, logprobs: -1 }, status: 400, code: 'invalid_value', param: 'logprobs' },
    { name: 'logprobs: "2"', body: { ...b, logprobs: '2' }, status: 400, code: 'invalid_value', param: 'logprobs' },
    { name: 'echo: "yes"', body: { ...b, echo: 'yes' }, status: 400, code: 'invalid_value', param: 'echo' },
    {
      name: 'suffix is refused',
      body: { ...b, suffix: 'The end.' },
      status: 400,
      code: 'unsupported_parameter',
      param: 'suffix',
    },
    {
      name: 'best_of != n is refused',
      body: { ...b, best_of: 2 },
      status: 400,
      code: 'unsupported_parameter',
      param: 'best_of',
    },
    { name: 'best_of: 100', body: { ...b, best_of: 100 }, status: 400, param: 'best_of' },
    {
      name: 'prompt too long: param names the prompt field',
      body: { ...b, prompt: TOO_LONG },
      status: 400,
      code: 'context_length_exceeded',
      param: 'prompt',
    },
    {
      name: '17 prompts × n=16 (272 sequences, over MAX_QUEUE=256) on an idle node is refused with 4xx, not a retryable 503',
      body: { ...b, prompt: Array.from({ length: 17 }, () => 'a'), n: 16, max_tokens: 1 },
      status: [200, 400, 413, 422],
    },
  ]
}

const chatCases = (ep: Endpoint): Case[] => {
  const b = ep.base
  const messages = (name: string, value: unknown, param = 'messages'): Case => ({
    name,
    body: { ...b, messages: value },
    status: 400,
    code: 'invalid_value',
    param,
  })
  return [
    messages('messages: "x"', 'x'),
    messages('messages: []', []),
    messages('messages: ["hi"]', ['hi'], 'messages.0'),
    messages('messages: [{}]', [{}], 'messages.0.role'),
    messages('role: "wizard"', [{ role: 'wizard', content: 'hi' }], 'messages.0.role'),
    messages('role: 5', [{ role: 5, content: 'hi' }], 'messages.0.role'),
    messages('content: 5', [{ role: 'user', content: 5 }], 'messages.0.content'),
    messages('content: {}', [{ role: 'user', content: {} }], 'messages.0.content'),
    messages(
      'content: an image part',
      [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/x.png' } }] }],
      'messages.0.content',
    ),
    messages(
      'content: a text part without text',
      [{ role: 'user', content: [{ type: 'text' }] }],
      'messages.0.content',
    ),
    messages('name: 5', [{ role: 'user', content: 'hi', name: 5 }], 'messages.0.name'),
    {
      name: 'a second message with a bad role',
      body: {
        ...b,
        messages: [
          { role: 'user', content: 'hi' },
          { role: 'robot', content: 'x' },
        ],
      },
      status: 400,
      param: 'messages.1.role',
    },
    { name: 'logprobs: "x"', body: { ...b, logprobs: 'x' }, status: 400, param: 'logprobs' },
    {
      name: 'top_logprobs: 50',
      body: { ...b, logprobs: true, top_logprobs: 50 },
      status: 400,
      code: 'invalid_value',
      param: 'top_logprobs',
    },
    { name: 'top_logprobs: -1', body: { ...b, logprobs: true, top_logprobs: -1 }, status: 400, param: 'top_logprobs' },
    {
      name: 'max_completion_tokens: 0',
      body: { ...b, max_completion_tokens: 0 },
      status: 400,
      param: 'max_completion_tokens',
    },
    {
      name: 'max_completion_tokens over the context',
      body: { ...b, max_completion_tokens: CONTEXT },
      status: 400,
      code: 'context_length_exceeded',
      message: /512/,
    },
    // stories260K has no chat template, so no tool support (structured-outputs.test.ts covers a model with it).
    {
      name: 'tools are refused by a model without tool support',
      body: { ...b, tools: [{ type: 'function', function: { name: 'f', parameters: {} } }] },
      status: 400,
      code: 'tools_unsupported',
      param: 'tools',
    },
    {
      name: 'response_format of an unknown type',
      body: { ...b, response_format: { type: 'xml' } },
      status: 400,
      param: 'response_format.type',
    },
    {
      name: 'response_format json_object is served',
      body: { ...b, response_format: { type: 'json_object' } },
      status: 200,
    },
    // Valid odd shapes.
    { name: 'content: null', body: { ...b, messages: [{ role: 'user', content: null }] }, status: 200 },
    {
      name: 'content as text parts',
      body: {
        ...b,
        messages: [
          {
            role: 'user',
            content: [
              { type: 'text', text: 'Hi ' },
              { type: 'text', text: '🦄' },
            ],
          },
        ],
      },
      status: 200,
    },
    {
      name: 'every supported role',
      body: {
        ...b,
        messages: ['system', 'developer', 'user', 'assistant', 'tool'].map((role) => ({ role, content: 'x' })),
      },
      status: 200,
    },
  ]
}

const generateCases = (ep: Endpoint): Case[] => {
  const b = ep.base
  const invalid = (name: string, key: string, value: unknown): Case => ({
    name,
    body: { ...b, [key]: value },
    status: 400,
    code: 'invalid_value',
    param: key,
  })
  return [
    { name: 'model may be omitted', body: b, status: 200 },
    invalid('prompt: 5', 'prompt', 5),
    invalid('prompt: ["a"]', 'prompt', ['a']),
    invalid('top_k: -1', 'top_k', -1),
    invalid('top_k: 1.5', 'top_k', 1.5),
    invalid('num_return_sequences: 17', 'num_return_sequences', 17),
    invalid('return_full_text: "yes"', 'return_full_text', 'yes'),
    {
      name: 'prompt too long: param names the prompt field',
      body: { ...b, prompt: TOO_LONG },
      status: 400,
      code: 'context_length_exceeded',
      param: 'prompt',
    },
  ]
}

const allowed = (status: number | number[]) => (Array.isArray(status) ? status : [status])

/** Checks an OpenAI-shaped error body. */
function assertErrorBody(
  text: string,
  contentType: string,
  expected: Pick<Case, 'code' | 'param' | 'message'> = {},
): void {
  assert.match(contentType, /application\/json/, `an error is JSON, got ${contentType}`)
  const body = JSON.parse(text) as { error?: { message?: unknown; type?: unknown; param?: unknown; code?: unknown } }
  assert.equal(typeof body.error, 'object', text)
  const error = body.error!
  assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'param', 'type'], text)
  assert.equal(typeof error.message, 'string')
  assert.ok((error.message as string).length > 0)
  assert.equal(typeof error.type, 'string')
  assert.ok(error.param === null || typeof error.param === 'string', text)
  assert.ok(error.code === null || typeof error.code === 'string', text)
  if (expected.code !== undefined) assert.equal(error.code, expected.code, text)
  if (expected.param instanceof RegExp) assert.match(String(error.param), expected.param, text)
  else if (expected.param !== undefined) assert.equal(error.param, expected.param, text)
  if (expected.message) assert.match(error.message as string, expected.message)
}

async function run(ep: Endpoint, c: Case): Promise<void> {
  const body = typeof c.body === 'string' ? c.body : JSON.stringify(c.body)
  const response = await postJson(`${backend.url}${ep.path}`, body, c.headers)
  const text = await response.text()
  assert.ok(response.status < 500, `never a 5xx: ${response.status} ${text}`)
  const statuses = allowed(c.status)
  assert.ok(
    statuses.includes(response.status),
    `expected ${statuses.join(' or ')}, got ${response.status}: ${text.slice(0, 300)}`,
  )
  const contentType = response.headers.get('content-type') ?? ''
  if (response.status === 200) {
    assert.match(contentType, /application\/json/)
    const parsed = JSON.parse(text) as { choices?: unknown[]; generated_text?: unknown }
    assert.ok(Array.isArray(parsed.choices) || 'generated_text' in parsed, text)
    return
  }
  assert.ok(response.status >= 400 && response.status < 500)
  assertErrorBody(text, contentType, c)
}

for (const ep of endpoints) {
  const cases = [
    ...commonCases(ep),
    ...(ep.path === '/generate' ? generateCases(ep) : openAiCases(ep)),
    ...(ep.path === '/v1/completions' ? completionCases(ep) : []),
    ...(ep.path === '/v1/chat/completions' ? chatCases(ep) : []),
  ]
  describe(`POST ${ep.path} bad input`, () => {
    for (const c of cases) test(c.name, c.todo ? { todo: c.todo } : {}, () => run(ep, c))

    test('no Content-Type header at all → 415', async () => {
      // A Uint8Array body makes fetch send no Content-Type.
      const response = await fetch(`${backend.url}${ep.path}`, {
        method: 'POST',
        body: new TextEncoder().encode(JSON.stringify(ep.base)),
      })
      assert.equal(response.status, 415)
      assertErrorBody(await response.text(), response.headers.get('content-type') ?? '', {
        code: 'unsupported_media_type',
      })
    })

    test('10 KB sent chunked (no Content-Length) → 413', async () => {
      const payload = new TextEncoder().encode(
        JSON.stringify({ ...ep.base, [ep.promptField]: ep.prompt('w'.repeat(10_240)) }),
      )
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          for (let i = 0; i < payload.length; i += 1024) controller.enqueue(payload.subarray(i, i + 1024))
          controller.close()
        },
      })
      const init = {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        duplex: 'half',
      } as RequestInit
      const response = await fetch(`${backend.url}${ep.path}`, init)
      assert.equal(response.status, 413)
      assertErrorBody(await response.text(), response.headers.get('content-type') ?? '', { code: 'request_too_large' })
    })

    test('wrong methods → 404 or 405 JSON', async () => {
      for (const method of ['GET', 'PUT', 'DELETE', 'PATCH']) {
        const response = await fetch(`${backend.url}${ep.path}`, { method })
        assert.ok([404, 405].includes(response.status), `${method} ${ep.path}: ${response.status}`)
        assertErrorBody(await response.text(), response.headers.get('content-type') ?? '')
      }
    })
  })
}

describe('routes', () => {
  test('unknown routes → 404 JSON', async () => {
    for (const [method, path, code] of [
      ['GET', '/'],
      ['GET', '/v2/completions'],
      ['POST', '/v1/nothing'],
      ['POST', '/v1/completions/extra'],
      // Model ids may hold slashes (org/name): this one is an unknown model.
      ['GET', '/v1/models/stories260K/x', 'model_not_found'],
      ['GET', '/%2e%2e/%2e%2e/etc/passwd'],
    ]) {
      const response = await fetch(`${backend.url}${path}`, {
        method,
        ...(method === 'POST' ? { headers: { 'content-type': 'application/json' }, body: '{}' } : {}),
      })
      assert.equal(response.status, 404, `${method} ${path}`)
      assertErrorBody(await response.text(), response.headers.get('content-type') ?? '', { code: code ?? 'not_found' })
    }
  })

  test('wrong methods on the operations routes → 404 or 405 JSON', async () => {
    for (const path of ['/health', '/ready', '/metrics', '/v1/models', '/model/info']) {
      const response = await postJson(`${backend.url}${path}`, {})
      assert.ok([404, 405].includes(response.status), `POST ${path}: ${response.status}`)
      assertErrorBody(await response.text(), response.headers.get('content-type') ?? '')
    }
  })
})

describe('after the matrix', () => {
  test('the node still serves a normal request and /health is 200', async () => {
    assert.equal(backend.child.exitCode, null, 'the process is still running')
    const response = await postJson(`${backend.url}/v1/completions`, {
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 8,
      temperature: 0,
    })
    assert.equal(response.status, 200)
    const body = (await response.json()) as { choices: { text: string }[] }
    assert.ok(
      body.choices[0].text.length > 0 && referenceContinuation().startsWith(body.choices[0].text),
      body.choices[0].text,
    )
    const chat = await postJson(`${backend.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 4,
    })
    assert.equal(chat.status, 200)
    const generate = await postJson(`${backend.url}/generate`, {
      prompt: 'Once upon a time',
      max_length: 4,
      temperature: 0,
    })
    assert.equal(generate.status, 200)
    const generated = ((await generate.json()) as { generated_text: string }).generated_text
    assert.ok(generated.length > 0 && referenceContinuation().startsWith(generated), generated)
    assert.equal((await fetch(`${backend.url}/health`)).status, 200)
    assert.equal((await fetch(`${backend.url}/ready`)).status, 200)
  })

  test('no request was answered with a 500 (metrics)', async () => {
    const text = await (await fetch(`${backend.url}/metrics`)).text()
    const served = text.split('\n').filter((line) => line.startsWith('switchyard_backend_requests_total{'))
    assert.ok(served.length > 0)
    const errors = served.filter((line) => /status="50[0-2]"/.test(line) || /status="50[4-9]"/.test(line))
    assert.deepEqual(errors, [])
  })
})
