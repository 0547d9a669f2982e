import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { type ApiRequest, parseApiRequest } from '../../../gateway/pipeline/parse-request.ts'

/** The gateway's request stage with structured outputs and tools: the size bound and the token reservation. */
const app = new Hono()
app.post(
  '/chat',
  parseApiRequest('chat', { maxPromptChars: 10_000, maxGrammarChars: 500, defaultMaxTokens: 16 }),
  (c) => c.json(c.get('apiRequest')),
)
app.onError((error) =>
  error instanceof HTTPException ? error.getResponse() : new Response(String(error), { status: 500 }),
)
const post = (body: object) =>
  app.request('/chat', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
const base = { model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 }
const tools = [
  {
    type: 'function',
    function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
  },
]

describe('gateway request stage: output formats and tools', () => {
  test('the token reservation counts the tools and the schema (they are rendered into the prompt)', async () => {
    const plain = (await (await post(base)).json()) as ApiRequest
    const withTools = (await (await post({ ...base, tools })).json()) as ApiRequest
    assert.equal(withTools.promptTokenBound - plain.promptTokenBound, JSON.stringify(tools).length)
    const schema = { type: 'object', properties: { a: { type: 'integer' } } }
    const withSchema = (await (
      await post({ ...base, response_format: { type: 'json_schema', json_schema: { name: 's', schema } } })
    ).json()) as ApiRequest
    assert.ok(withSchema.promptTokenBound > plain.promptTokenBound + JSON.stringify(schema).length)
    const history = {
      ...base,
      messages: [
        ...base.messages,
        {
          role: 'assistant',
          content: null,
          tool_calls: [
            { id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city": "Oslo"}' } },
          ],
        },
      ],
    }
    const withCall = (await (await post(history)).json()) as ApiRequest
    assert.ok(withCall.promptTokenBound >= plain.promptTokenBound + '{"city": "Oslo"}'.length)
  })

  test('output-format text over server.maxGrammarChars is a 400 grammar_too_large naming the field', async () => {
    for (const extra of [
      { guided_json: { description: 'x'.repeat(600) } },
      { tools: [{ ...tools[0], function: { ...tools[0].function, description: 'y'.repeat(600) } }] },
      { guided_regex: 'a'.repeat(501) },
    ]) {
      const response = await post({ ...base, ...extra })
      assert.equal(response.status, 400)
      const { error } = (await response.json()) as { error: { code: string; param: string } }
      assert.equal(error.code, 'grammar_too_large')
      assert.equal(error.param, Object.keys(extra)[0])
    }
    assert.equal((await post({ ...base, guided_regex: 'a'.repeat(400) })).status, 200)
  })
})
