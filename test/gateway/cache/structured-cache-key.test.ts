import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { cacheKey } from '../../../gateway/cache/cache-key.ts'

const key = (body: Record<string, unknown>) =>
  cacheKey({
    route: '/v1/chat/completions',
    tenant: 'acme',
    body: { model: 'm', messages: [{ role: 'user', content: 'x' }], temperature: 0, ...body },
  })
const schema = (maximum: number) => ({ type: 'object', properties: { n: { type: 'integer', maximum } } })

describe('cacheKey covers structured outputs and tools', () => {
  test('every output-format and tool field changes the key', async () => {
    const variants: Record<string, unknown>[] = [
      {},
      { response_format: { type: 'json_object' } },
      { response_format: { type: 'json_schema', json_schema: { name: 'a', schema: schema(1) } } },
      { response_format: { type: 'json_schema', json_schema: { name: 'a', schema: schema(2) } } },
      { guided_json: schema(1) },
      { guided_regex: 'a+' },
      { guided_choice: ['a', 'b'] },
      { guided_grammar: 'root ::= "a"' },
      { tools: [{ type: 'function', function: { name: 'f', parameters: schema(1) } }] },
      { tools: [{ type: 'function', function: { name: 'f', parameters: schema(1) } }], tool_choice: 'required' },
      {
        tools: [{ type: 'function', function: { name: 'f', parameters: schema(1) } }],
        tool_choice: 'required',
        parallel_tool_calls: false,
      },
      { messages: [{ role: 'tool', content: 'x', tool_call_id: 'call_1' }] },
    ]
    const keys = await Promise.all(variants.map(key))
    assert.equal(new Set(keys).size, variants.length)
  })

  test("the order of a schema's properties changes the key (it is the order the answer writes them in)", async () => {
    const a = await key({
      guided_json: { type: 'object', properties: { a: { type: 'string' }, b: { type: 'integer' } } },
    })
    const b = await key({
      guided_json: { type: 'object', properties: { b: { type: 'integer' }, a: { type: 'string' } } },
    })
    assert.notEqual(a, b)
    const tools = (properties: object) => ({
      tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties } } }],
    })
    assert.notEqual(await key(tools({ a: {}, b: {} })), await key(tools({ b: {}, a: {} })))
  })
})
