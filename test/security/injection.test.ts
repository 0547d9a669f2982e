import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { rawExchange } from '../fuzz/raw-http.ts'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { STORIES_DIR } from '../helpers/paths.ts'

/**
 * Hostile strings in places that name things or get logged: model names that look like paths
 * (they only ever select from the models in memory), URL paths that climb out, and newlines
 * or forged JSON in fields the gateway logs (it logs one JSON object per line, and a field's
 * content stays inside its string).
 */

const KEY = 'sy-security-test-key-injection-000000000'
const PROMPT_MARKER = 'PROMPT-TEXT-MUST-NOT-BE-LOGGED-7f3a'
const FORGED = '\n{"level":60,"msg":"forged","service":"switchyard-gateway"}\n'

let backend: BackendProcess
let gateway: GatewayProcess
before(async () => {
  backend = await startBackend()
  gateway = await startGateway({
    backend: { url: backend.url },
    auth: { apiKeys: [{ id: 'inject', tenant: 'acme', hash: createHash('sha256').update(KEY).digest('hex') }] },
  })
})
after(async () => {
  await gateway?.stop()
  await backend?.stop()
})

const auth = { authorization: `Bearer ${KEY}` }
const bodies: Record<string, (model: string) => object> = {
  '/v1/completions': (model) => ({ model, prompt: 'x', max_tokens: 1 }),
  '/v1/chat/completions': (model) => ({ model, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }),
  '/generate': (model) => ({ model, prompt: 'x', max_length: 1 }),
}

describe('path traversal', () => {
  const models = [
    '../../etc/passwd',
    '../../../../../../etc/passwd',
    '..\\..\\windows\\win.ini',
    '/etc/passwd',
    'stories260K/../../../etc/passwd',
    '%2e%2e%2f%2e%2e%2fetc%2fpasswd',
    'file:///etc/passwd',
    '\u0000/etc/passwd',
    '....//....//etc/passwd',
    '../stories260K',
    './stories260K',
    'stories260K/',
    'STORIES260K',
    ' stories260K',
  ]

  test('model names that look like paths are unknown models: 404, nothing read, no path revealed', async () => {
    for (const [server, base, headers] of [
      ['backend', backend.url, {}],
      ['gateway', gateway.url, auth],
    ] as const) {
      for (const [path, body] of Object.entries(bodies)) {
        for (const model of models) {
          const response = await postJson(`${base}${path}`, body(model), headers)
          const text = await response.text()
          assert.equal(response.status, 404, `${server} ${path} ${JSON.stringify(model)}: ${text}`)
          assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, 'model_not_found')
          assert.ok(
            !text.includes('root:') && !text.includes(STORIES_DIR) && !text.includes('/work/'),
            `nothing from disk and no server path: ${text}`,
          )
        }
      }
    }
  })

  test('request paths that climb out of the API get a 404, also when not normalised by the client', async () => {
    const paths = [
      '/../../etc/passwd',
      '/v1/../../etc/passwd',
      '/%2e%2e/%2e%2e/etc/passwd',
      '/v1/models/..%2f..%2f..%2fetc%2fpasswd',
      '/..%5c..%5cwindows%5cwin.ini',
      '//etc/passwd',
      '/v1/models/%2e%2e%2f%2e%2e%2fadmin/keys',
    ]
    for (const [server, port, credential] of [
      ['backend', backend.port, ''],
      ['gateway', gateway.port, `Authorization: Bearer ${ADMIN_TOKEN}\r\n`],
    ] as const) {
      for (const path of paths) {
        // Raw, so the path reaches the server exactly as written.
        const exchange = await rawExchange(
          port,
          `GET ${path} HTTP/1.1\r\nHost: x\r\n${credential}Connection: close\r\n\r\n`,
        )
        assert.equal(exchange.statuses[0], 404, `${server} ${path}: ${exchange.text.slice(0, 300)}`)
        assert.ok(
          !exchange.text.includes('root:') && !exchange.text.includes('"object":"list"'),
          `${server} ${path} served nothing: ${exchange.text.slice(0, 300)}`,
        )
      }
    }
  })
})

describe('log injection', () => {
  test('newlines and forged JSON in logged fields stay inside one JSON log line; prompts and keys are never logged', async () => {
    const requestIds: string[] = []
    const send = async (path: string, body: object, headers: Record<string, string> = {}) => {
      const id = `inject-${requestIds.length}`
      requestIds.push(id)
      const response = await postJson(`${gateway.url}${path}`, body, { ...auth, 'x-request-id': id, ...headers })
      await response.text()
      return response.status
    }
    // The model is logged by the gateway (and echoed in the backend's 404 message).
    assert.equal(
      await send('/v1/completions', { model: `stories260K${FORGED}`, prompt: PROMPT_MARKER, max_tokens: 1 }),
      404,
    )
    assert.equal(
      await send('/v1/completions', { model: `x\r\n${FORGED}\u2028\u2029\u0085`, prompt: 'x', max_tokens: 1 }),
      404,
    )
    // Fields that are not logged at all: user, stop, message content.
    assert.equal(
      await send('/v1/completions', {
        model: 'stories260K',
        prompt: `${PROMPT_MARKER}${FORGED}`,
        user: FORGED,
        stop: [FORGED],
        max_tokens: 1,
      }),
      200,
    )
    assert.equal(
      await send('/v1/chat/completions', {
        model: 'stories260K',
        messages: [{ role: 'user', content: `${PROMPT_MARKER}${FORGED}`, name: FORGED }],
        max_tokens: 1,
      }),
      200,
    )
    // A refused admin credential is logged with the request path, which is URL-decoded first.
    const path = await fetch(`${gateway.url}/admin/keys%0A%7B%22level%22%3A60%2C%22msg%22%3A%22forged%22%7D`, {
      headers: { authorization: `Bearer sy-wrong${PROMPT_MARKER}` },
    })
    assert.equal(path.status, 401)
    // A request id with characters outside [A-Za-z0-9._:-] is replaced, not logged (raw, so bytes fetch refuses still arrive).
    const body = '{"model":"stories260K","prompt":"x","max_tokens":1}'
    const raw = await rawExchange(
      gateway.port,
      `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nX-Request-Id: a\t{"level":60,"msg":"forged"}\xe2\x80\xa8\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
    )
    assert.ok(raw.statuses.length === 1 && raw.statuses[0] < 500, raw.text.slice(0, 200))
    assert.match(raw.text, /x-request-id: [0-9a-f-]{36}\r\n/i, 'the request id was replaced')
    // Admin input with line breaks is refused before it can be logged.
    const tenant = await postJson(
      `${gateway.url}/admin/keys`,
      { tenant: `acme${FORGED}` },
      { authorization: `Bearer ${ADMIN_TOKEN}` },
    )
    assert.equal(tenant.status, 400)

    // Log lines are written when a request ends; wait until the last one is there.
    const deadline = Date.now() + 5000
    while (!gateway.output().includes(`"requestId":"${requestIds.at(-1)}"`) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 25))

    for (const [name, output] of [
      ['gateway', gateway.output()],
      ['backend', backend.output()],
    ] as const) {
      const lines = output.split('\n').filter((line) => line.trim() !== '')
      for (const line of lines) {
        // Every line is one whole JSON object (pino); a forged line would parse as its own record.
        let record: { msg?: string; level?: number }
        try {
          record = JSON.parse(line)
        } catch {
          assert.fail(`${name}: a log line that is not JSON: ${line.slice(0, 200)}`)
        }
        assert.notEqual(record.msg, 'forged', `${name}: a forged record: ${line}`)
        assert.notEqual(record.level, 60, `${name}: a fatal record: ${line}`)
      }
      assert.ok(!output.includes(PROMPT_MARKER), `${name}: prompt text and bad keys are never logged`)
      assert.ok(!output.includes(KEY) && !output.includes(ADMIN_TOKEN), `${name}: keys are never logged`)
    }
    // The gateway logged each request exactly once, with the hostile model as plain data.
    const records = gateway
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; requestId?: string; model?: string; path?: string })
    for (const id of requestIds)
      assert.equal(
        records.filter((r) => r.msg === 'request' && r.requestId === id).length,
        1,
        `one access log line for ${id}`,
      )
    // The hostile text did reach the log, as data inside its field.
    assert.ok(
      records.some((r) => r.model === `stories260K${FORGED}`),
      'the model is logged verbatim inside its string',
    )
    assert.ok(
      records.some((r) => r.msg === 'admin authentication failed' && r.path?.includes('\n{"level"')),
      'the decoded path is logged inside its string',
    )
  })
})
