import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { readStreamKillingItsNode } from '../helpers/failover-stream.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { buildQwen3ToolModel } from '../helpers/tool-model.ts'

/**
 * Mid-stream failover of a streamed tool call. A call's text is held by the node until it
 * parses (docs/api.md), so a node that dies in the middle of one has sent the call's token ids
 * but none of its text: the continuation must replay those ids, finish the call on another node
 * and deliver it whole, as an uninterrupted run does. Two real backends serving a random graph
 * with Qwen3's tokenizer and chat template (the grammar makes its calls parse), a real gateway.
 */
const KEY = 'sy-test-key-for-tool-call-failover'
const MODEL = 'qwen3-tool-failover'
const auth = { authorization: `Bearer ${KEY}` }
const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string', maxLength: 24 }, unit: { enum: ['celsius', 'fahrenheit'] } },
      required: ['city', 'unit'],
      additionalProperties: false,
    },
  },
}

type Chunk = {
  choices: {
    delta: {
      content?: string
      tool_calls?: { index: number; id?: string; function?: { name?: string; arguments?: string } }[]
    }
    finish_reason: string | null
  }[]
}

let dir: string
const backends: Record<string, BackendProcess> = {}
let gateway: GatewayProcess

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'switchyard-tool-failover-'))
  const model = join(dir, 'model')
  await buildQwen3ToolModel(model)
  const env = { MODEL_DIR: model, MODEL_ID: MODEL }
  const [a, b] = await Promise.all([startBackend(env, { timeoutMs: 60_000 }), startBackend(env, { timeoutMs: 60_000 })])
  Object.assign(backends, { 'eu-1': a, 'eu-2': b })
  gateway = await startGateway({
    auth: { apiKeys: [{ id: 'tools', tenant: 'acme', hash: createHash('sha256').update(KEY).digest('hex') }] },
    cache: { enabled: false },
    routing: {
      regions: [{ name: 'eu', nodes: Object.entries(backends).map(([id, b]) => ({ id, url: b.url })) }],
      region: 'eu',
      retry: { maxAttempts: 3, perTryTimeoutMs: 60_000, budgetRatio: 0.5, budgetMinPerSecond: 10 },
    },
  })
})
after(async () => {
  await gateway?.stop()
  await Promise.all(Object.values(backends).map((b) => b.stop('SIGKILL')))
  await rm(dir, { recursive: true, force: true })
})

test('a streamed tool call whose node dies mid-call arrives whole, as without the failure', async () => {
  const body = {
    model: MODEL,
    messages: [{ role: 'user', content: 'Weather in Paris?' }],
    tools: [weather],
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
    max_tokens: 200,
    temperature: 0,
  }
  const reference = (await (await postJson(`${gateway.url}/v1/chat/completions`, body, auth)).json()) as {
    choices: { message: { tool_calls: { function: { name: string; arguments: string } }[] }; finish_reason: string }[]
  }
  assert.equal(reference.choices[0].finish_reason, 'tool_calls')
  const expected = reference.choices[0].message.tool_calls.map((c) => ({
    name: c.function.name,
    arguments: c.function.arguments,
  }))

  const response = await postJson(`${gateway.url}/v1/chat/completions`, { ...body, stream: true }, auth)
  assert.equal(response.status, 200)
  const { events } = await readStreamKillingItsNode(response, (node) => backends[node].child.kill('SIGKILL'))
  assert.equal(events.at(-1), '[DONE]', events.slice(-3).join('\n'))
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Chunk)
  const content = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('')
  const calls = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? [])
  assert.equal(content, '', 'no call text leaked into the content')
  // Each call arrives whole in one piece (its text is held until it parses), with its own id.
  for (const call of calls) assert.match(call.id ?? '', /^call_/)
  assert.deepEqual(
    calls.map((c) => ({ name: c.function?.name, arguments: c.function?.arguments })),
    expected,
  )
  assert.equal(chunks.at(-1)?.choices[0]?.finish_reason, 'tool_calls')

  const metrics = await (
    await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
  ).text()
  const failovers = [...metrics.matchAll(/^switchyard_gateway_failovers_total\{[^}]*scope="stream"[^}]*\} (\d+)/gm)]
  assert.equal(
    failovers.reduce((sum, m) => sum + Number(m[1]), 0),
    1,
    'the stream was continued on the other node',
  )
})
