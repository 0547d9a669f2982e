import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Ajv } from 'ajv'
import OpenAI from 'openai'
import { zodResponseFormat } from 'openai/helpers/zod'
import { z } from 'zod'
import { type BackendProcess, postJson, readSse, startBackend } from '../helpers/backend-process.ts'
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { buildQwen3ToolModel } from '../helpers/tool-model.ts'

/**
 * Structured outputs and tool calls with the official openai client, against a real backend
 * process and through a real gateway process. The model is a random-weight graph with Qwen3's
 * real tokenizer and chat template: without the grammar its output would never parse. Greedy:
 * sampling flat random logits over 151k tokens makes the sampler sort the whole vocabulary per
 * token (seconds per answer); the sampled path is covered on small vocabularies elsewhere.
 */
const KEY = 'sy-test-key-for-structured-outputs'
const MODEL = 'qwen3-tool-test'
const weather = {
  type: 'function' as const,
  function: {
    name: 'get_weather',
    description: 'Current weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 12 }, unit: { enum: ['celsius', 'fahrenheit'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
}
const time = {
  type: 'function' as const,
  function: {
    name: 'get_time',
    parameters: {
      type: 'object',
      properties: { zone: { type: 'string', pattern: '^[A-Z]{3}$' } },
      required: ['zone'],
      additionalProperties: false,
    },
  },
}
const Person = z.object({
  name: z.string().max(10),
  age: z.number().int().min(0).max(120),
  pets: z.array(z.enum(['cat', 'dog'])).max(3),
})
const ajv = new Ajv({ strict: false })
const user = (content: string) => ({ role: 'user' as const, content })

let dir: string
let backend: BackendProcess
let gateway: GatewayProcess
const clients: Record<string, OpenAI> = {}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-tools-'))
  await buildQwen3ToolModel(join(dir, 'model'))
  backend = await startBackend({ MODEL_DIR: join(dir, 'model'), MODEL_ID: MODEL }, { timeoutMs: 60_000 })
  gateway = await startGateway({
    backend: { url: backend.url },
    auth: { apiKeys: [{ id: 'test', tenant: 'acme', hash: createHash('sha256').update(KEY).digest('hex') }] },
  })
  clients.backend = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: 'unused', maxRetries: 0 })
  clients.gateway = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 })
})
after(async () => {
  await Promise.all([gateway?.stop(), backend?.stop()])
  await rm(dir, { recursive: true, force: true })
})

for (const via of ['backend', 'gateway'] as const) {
  describe(`structured outputs with the openai client (${via})`, () => {
    test('chat.completions.parse with zodResponseFormat returns a parsed, valid object', async () => {
      const completion = await clients[via].chat.completions.parse({
        model: MODEL,
        messages: [user('Describe a person.')],
        response_format: zodResponseFormat(Person, 'person'),
        max_tokens: 200,
        temperature: 0,
      })
      const choice = completion.choices[0]
      assert.equal(choice.finish_reason, 'stop')
      assert.deepEqual(Person.parse(choice.message.parsed), choice.message.parsed)
    })

    test('a json_schema stream concatenates to valid JSON', async () => {
      const schema = {
        type: 'object',
        properties: {
          ok: { type: 'boolean' },
          tags: { type: 'array', items: { type: 'string', maxLength: 5 }, maxItems: 2 },
        },
        required: ['ok', 'tags'],
        additionalProperties: false,
      }
      const stream = await clients[via].chat.completions.create({
        model: MODEL,
        messages: [user('JSON please')],
        response_format: { type: 'json_schema', json_schema: { name: 'flags', schema, strict: true } },
        stream: true,
        max_tokens: 200,
        temperature: 0,
      })
      let text = ''
      let finish: string | null = null
      let pieces = 0
      for await (const chunk of stream) {
        text += chunk.choices[0]?.delta?.content ?? ''
        if (chunk.choices[0]?.delta?.content) pieces++
        finish = chunk.choices[0]?.finish_reason ?? finish
      }
      assert.equal(finish, 'stop')
      assert.ok(pieces > 1, 'the answer arrived in several pieces')
      assert.ok(ajv.validate(schema, JSON.parse(text)), text)
    })

    test('tool_choice "required" forces calls whose arguments match their schema', async () => {
      const completion = await clients[via].chat.completions.create({
        model: MODEL,
        messages: [user('Weather and time in Paris?')],
        tools: [weather, time],
        tool_choice: 'required',
        max_tokens: 300,
        temperature: 0,
      })
      const choice = completion.choices[0]
      assert.equal(choice.finish_reason, 'tool_calls')
      const calls = choice.message.tool_calls ?? []
      assert.ok(calls.length >= 1)
      for (const call of calls) {
        assert.equal(call.type, 'function')
        assert.match(call.id, /^call_/)
        if (call.type !== 'function') continue
        const tool = [weather, time].find((t) => t.function.name === call.function.name)
        assert.ok(tool, call.function.name)
        assert.ok(ajv.validate(tool.function.parameters, JSON.parse(call.function.arguments)), call.function.arguments)
      }
    })

    test('a named tool_choice streams delta.tool_calls for that function; parallel_tool_calls false gives one call', async () => {
      const stream = await clients[via].chat.completions.create({
        model: MODEL,
        messages: [user('Time in Tokyo?')],
        tools: [weather, time],
        tool_choice: { type: 'function', function: { name: 'get_time' } },
        parallel_tool_calls: false,
        stream: true,
        max_tokens: 200,
        temperature: 0,
      })
      const calls: { id?: string; name?: string; arguments: string }[] = []
      let finish: string | null = null
      for await (const chunk of stream) {
        for (const piece of chunk.choices[0]?.delta?.tool_calls ?? []) {
          calls[piece.index] ??= { arguments: '' }
          calls[piece.index].id ??= piece.id
          calls[piece.index].name ??= piece.function?.name
          calls[piece.index].arguments += piece.function?.arguments ?? ''
        }
        finish = chunk.choices[0]?.finish_reason ?? finish
      }
      assert.equal(finish, 'tool_calls')
      assert.equal(calls.length, 1)
      assert.equal(calls[0].name, 'get_time')
      assert.ok(ajv.validate(time.function.parameters, JSON.parse(calls[0].arguments)), calls[0].arguments)
    })

    test('tool_choice "auto": a model that answers in text gets a plain answer', async () => {
      const completion = await clients[via].chat.completions.create({
        model: MODEL,
        messages: [user('Say hello.')],
        tools: [weather],
        tool_choice: 'auto',
        max_tokens: 12,
        temperature: 0,
      })
      const choice = completion.choices[0]
      // Random weights write text (a call would need them to pick <tool_call> first); the
      // grammar leaves text free, so the answer is plain content.
      assert.equal(choice.message.tool_calls ?? undefined, undefined)
      assert.equal(typeof choice.message.content, 'string')
      assert.ok(['stop', 'length'].includes(choice.finish_reason))
    })

    test('a tool result round trip: the call and the tool message render back into the prompt', async () => {
      const first = await clients[via].chat.completions.create({
        model: MODEL,
        messages: [user('Weather in Oslo?')],
        tools: [weather],
        tool_choice: 'required',
        max_tokens: 200,
        temperature: 0,
      })
      const message = first.choices[0].message
      const call = message.tool_calls![0]
      const followUp = [
        user('Weather in Oslo?'),
        message,
        { role: 'tool' as const, tool_call_id: call.id, content: '{"temperature": 4}' },
      ]
      const second = await clients[via].chat.completions.create({
        model: MODEL,
        messages: followUp,
        tools: [weather],
        max_tokens: 8,
        temperature: 0,
      })
      // The rendered history is longer than the first prompt by the call and the tool result.
      assert.ok(
        second.usage!.prompt_tokens > first.usage!.prompt_tokens + 15,
        `${second.usage!.prompt_tokens} vs ${first.usage!.prompt_tokens}`,
      )
      assert.equal(typeof second.choices[0].message.content, 'string')
    })
  })
}

describe('structured outputs: bad input is a 400 naming the problem', () => {
  const base = { model: MODEL, messages: [user('hi')], max_tokens: 5 }
  const cases: [string, object, RegExp][] = [
    [
      'an unsupported schema type',
      { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'integer-ish' } } } },
      /Unsupported type/,
    ],
    ['an invalid regex', { guided_regex: '[a-' }, /guided_regex/],
    ['an invalid EBNF grammar', { guided_grammar: 'root ::= (' }, /guided_grammar/],
    ['two output formats', { guided_regex: 'a+', guided_choice: ['x'] }, /Only one output format/],
    ['guided_json text that is not a schema', { guided_json: 'not json' }, /guided_json/],
    [
      'tool_choice naming an unknown function',
      { tools: [weather], tool_choice: { type: 'function', function: { name: 'nope' } } },
      /not in tools/,
    ],
    ['tool_choice without tools', { tool_choice: 'required' }, /needs tools/],
    [
      'tools with a response_format',
      { tools: [weather], response_format: { type: 'json_object' } },
      /cannot be combined with tools/,
    ],
    ['a tool without a name', { tools: [{ type: 'function', function: {} }] }, /tools/],
    [
      'a schema larger than MAX_GRAMMAR_CHARS',
      { guided_json: { type: 'object', description: 'x'.repeat(70_000) } },
      /at most 65536/,
    ],
  ]
  for (const [name, extra, message] of cases) {
    test(name, async () => {
      for (const url of [backend.url, gateway.url]) {
        const response = await postJson(
          `${url}/v1/chat/completions`,
          { ...base, ...extra },
          { authorization: `Bearer ${KEY}` },
        )
        const body = (await response.json()) as { error: { message: string } }
        assert.equal(response.status, 400, `${url}: ${JSON.stringify(body)}`)
        assert.match(body.error.message, message)
      }
    })
  }

  test('a model whose template has no tool support refuses tools (stories260K has no chat template)', async () => {
    const stories = await startBackend()
    try {
      const response = await postJson(`${stories.url}/v1/chat/completions`, {
        ...base,
        model: 'stories260K',
        tools: [weather],
      })
      assert.equal(response.status, 400)
      assert.match(((await response.json()) as { error: { message: string } }).error.message, /does not support tools/)
    } finally {
      await stories.stop()
    }
  })

  test('a grammar max_tokens cannot finish ends with finish_reason "length"', async () => {
    const response = await postJson(`${backend.url}/v1/chat/completions`, {
      ...base,
      guided_regex: 'a{50}',
      max_tokens: 3,
    })
    const body = (await response.json()) as { choices: { finish_reason: string; message: { content: string } }[] }
    assert.equal(body.choices[0].finish_reason, 'length')
    assert.match(body.choices[0].message.content, /^a+$/)
  })

  test('resume ids that do not follow the grammar are a 400 on resume.token_ids (backend; the gateway refuses resume from clients)', async () => {
    const response = await postJson(`${backend.url}/v1/chat/completions`, {
      ...base,
      guided_regex: 'a+',
      resume: { token_ids: [33, 34, 35], text_offset: 0 },
    })
    const body = (await response.json()) as { error: { param: string; message: string } }
    assert.equal(response.status, 400, JSON.stringify(body))
    assert.equal(body.error.param, 'resume.token_ids')
    assert.match(body.error.message, /do not follow the requested format/)
  })

  test('a stream with a bad grammar fails before any event', async () => {
    const response = await postJson(`${backend.url}/v1/chat/completions`, {
      ...base,
      stream: true,
      guided_json: { type: 'foo' },
    })
    assert.equal(response.status, 400)
    assert.equal(response.headers.get('content-type')?.startsWith('application/json'), true)
    void readSse
  })
})
