import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, test } from 'node:test'
import { Ajv } from 'ajv'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { readStreamKillingItsNode } from '../helpers/failover-stream.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'

/**
 * Mid-stream failover of a constrained stream: the gateway resumes it on another node, which
 * replays the ids through the grammar, so the whole answer is still valid JSON and identical to
 * an uninterrupted run (greedy and seeded). Two real backends (stories260K), a real gateway.
 */
const KEY = 'sy-test-key-for-structured-failover'
const auth = { authorization: `Bearer ${KEY}` }
const schema = {
  type: 'array',
  items: {
    type: 'object',
    properties: { n: { type: 'integer', minimum: 0, maximum: 999 }, w: { type: 'string', maxLength: 6 } },
    required: ['n', 'w'],
    additionalProperties: false,
  },
  minItems: 12,
  maxItems: 12,
}
const backends: Record<string, BackendProcess> = {}
let gateway: GatewayProcess

before(async () => {
  const [a, b] = await Promise.all([startBackend(), startBackend()])
  Object.assign(backends, { 'eu-1': a, 'eu-2': b })
  gateway = await startGateway({
    auth: { apiKeys: [{ id: 'failover', tenant: 'acme', hash: createHash('sha256').update(KEY).digest('hex') }] },
    cache: { enabled: false },
    routing: {
      regions: [{ name: 'eu', nodes: Object.entries(backends).map(([id, b]) => ({ id, url: b.url })) }],
      region: 'eu',
      retry: { maxAttempts: 3, perTryTimeoutMs: 30_000, budgetRatio: 0.5, budgetMinPerSecond: 10 },
    },
  })
})
after(async () => {
  await gateway?.stop()
  await Promise.all(Object.values(backends).map((b) => b.stop('SIGKILL')))
})

test('a constrained stream whose node dies mid-stream completes, valid and identical (greedy and seeded)', async () => {
  const validate = new Ajv({ strict: false }).compile(schema)
  const streamFailovers = async () => {
    const metrics = await (
      await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).text()
    return [...metrics.matchAll(/^switchyard_gateway_failovers_total\{[^}]*scope="stream"[^}]*\} (\d+)/gm)].reduce(
      (sum, m) => sum + Number(m[1]),
      0,
    )
  }
  for (const [round, params] of [{ temperature: 0 }, { temperature: 0.9, seed: 11 }].entries()) {
    const body = {
      model: 'stories260K',
      prompt: 'Once upon a time',
      max_tokens: 400,
      guided_json: schema,
      stream: true,
      ...params,
    }
    const reference = (
      (await (await postJson(`${gateway.url}/v1/completions`, { ...body, stream: false }, auth)).json()) as {
        choices: { text: string }[]
      }
    ).choices[0].text
    assert.ok(validate(JSON.parse(reference)), reference)
    const response = await postJson(`${gateway.url}/v1/completions`, body, auth)
    assert.equal(response.status, 200)
    const { serving, events } = await readStreamKillingItsNode(response, (node) => backends[node].child.kill('SIGKILL'))
    assert.equal(events.at(-1), '[DONE]')
    const text = events
      .slice(0, -1)
      .map((e) => (JSON.parse(e) as { choices: { text: string }[] }).choices[0]?.text ?? '')
      .join('')
    assert.equal(text, reference)
    assert.equal(await streamFailovers(), round + 1, 'the stream was continued on the other node')
    backends[serving] = await startBackend({ PORT: String(backends[serving].port) })
  }
})
