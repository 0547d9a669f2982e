import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import { type BackendProcess, postJson, readSse, startBackend } from '../helpers/backend-process.ts'
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { spawnEntry } from '../helpers/node-process.ts'
import { STORIES_DIR } from '../helpers/paths.ts'
import { freePort } from '../helpers/redis-server.ts'

// What a new user meets first, on real processes: chat without max_tokens, errors that name the
// right party, models.retrieve, CORS preflights, and start-up problems said in one line.

const KEY = 'sy-first-run-key-0123456789abcdef'
const TIGHT_KEY = 'sy-first-run-tight-key-0123456789'
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const auth = (key = KEY) => ({ authorization: `Bearer ${key}` })
const chat = (extra: object = {}) => ({
  model: 'stories260K',
  messages: [{ role: 'user', content: 'Tell me a story' }],
  temperature: 0,
  ...extra,
})
const ORIGIN = 'http://app.example'
const scratch = mkdtempSync(join(tmpdir(), 'switchyard-first-run-'))

type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } }

let backend: BackendProcess
let gateway: GatewayProcess

before(async () => {
  // DEVICE=auto on a machine without the CUDA provider: the quiet probe is checked below.
  backend = await startBackend({ DEVICE: 'auto' })
  gateway = await startGateway({
    backend: { url: backend.url },
    auth: {
      apiKeys: [
        { id: 'main', tenant: 'a', hash: sha(KEY) },
        { id: 'tight', tenant: 'b', hash: sha(TIGHT_KEY), limits: { tokensPerMinute: 300 } },
      ],
    },
    // Far below the model's 512-token window, so a reply longer than 4 tokens shows the default was not sent.
    limits: { defaultMaxTokens: 4 },
    server: { cors: { allowedOrigins: [ORIGIN] } },
  })
})
after(async () => {
  await Promise.all([gateway?.stop(), backend?.stop()])
  rmSync(scratch, { recursive: true, force: true })
})

describe('chat without max_tokens (the README SDK example)', () => {
  test('a stream without max_tokens, and one with max_tokens: null, get the rest of the window', async () => {
    for (const extra of [{}, { max_tokens: null }]) {
      const response = await postJson(
        `${gateway.url}/v1/chat/completions`,
        chat({ stream: true, stream_options: { include_usage: true }, ...extra }),
        auth(),
      )
      assert.equal(response.status, 200, JSON.stringify(extra))
      const events = await readSse(response)
      assert.equal(events.at(-1), '[DONE]')
      const usage = (events.at(-2) as { usage: { completion_tokens: number } }).usage
      assert.ok(
        usage.completion_tokens > 4,
        `completion_tokens ${usage.completion_tokens}: the gateway capped the answer`,
      )
    }
  })

  test('the token reservation is the model window learned from the nodes; the 429 is rate_limit_exceeded', async () => {
    // The gateway learns max_model_len from /v1/models (here through itself; it also asks the nodes).
    assert.equal((await fetch(`${gateway.url}/v1/models`, { headers: auth(TIGHT_KEY) })).status, 200)
    const refused = await postJson(`${gateway.url}/v1/chat/completions`, chat(), auth(TIGHT_KEY))
    assert.equal(refused.status, 429)
    const body = (await refused.json()) as ErrorBody
    assert.equal(body.error.code, 'rate_limit_exceeded')
    assert.equal(body.error.type, 'rate_limit_error')
    const reserved = Number(/up to (\d+) tokens/.exec(body.error.message)?.[1])
    assert.ok(reserved >= 512, `reserved ${reserved}: the window (512), not defaultMaxTokens (4)`)
    // With max_tokens the request fits the same budget.
    assert.equal(
      (await postJson(`${gateway.url}/v1/chat/completions`, chat({ max_tokens: 8 }), auth(TIGHT_KEY))).status,
      200,
    )
  })
})

describe('conformance', () => {
  test('GET /v1/models/{id} on the gateway and the backend; 404 model_not_found for others', async () => {
    for (const [url, headers] of [
      [gateway.url, auth()],
      [backend.url, {}],
    ] as const) {
      const found = await fetch(`${url}/v1/models/stories260K`, { headers })
      assert.equal(found.status, 200)
      assert.deepEqual(Object.keys((await found.json()) as object).sort(), [
        'created',
        'id',
        'max_model_len',
        'object',
        'owned_by',
      ])
      const missing = await fetch(`${url}/v1/models/no-such/model`, { headers })
      assert.equal(missing.status, 404)
      assert.equal(((await missing.json()) as ErrorBody).error.code, 'model_not_found')
    }
    assert.equal((await fetch(`${gateway.url}/v1/models/stories260K`)).status, 401)
    // A path that cannot name a model is no route, whoever asks.
    const climbing = await fetch(`${gateway.url}/v1/models/..%2f..%2fadmin%2fkeys`)
    assert.equal(climbing.status, 404)
    assert.equal(((await climbing.json()) as ErrorBody).error.code, 'not_found')
  })

  test('validation messages name the field and what it allows, on the gateway and the backend alike', async () => {
    const cases: [object, string][] = [
      [chat({ temperature: 5 }), "Invalid value for 'temperature': expected a number at most 2, but got 5."],
      [
        chat({ messages: [{ role: 'bot', content: 'x' }] }),
        `Invalid value for 'messages[0].role': expected one of "system", "developer", "user", "assistant", "tool", but got "bot".`,
      ],
      [
        chat({ messages: [{ role: 'user', content: 5 }] }),
        "Invalid type for 'messages[0].content': expected a string or an array, but got an integer instead.",
      ],
      [{ messages: [{ role: 'user', content: 'x' }] }, "Missing required parameter: 'model'."],
    ]
    for (const [body, message] of cases) {
      for (const [url, headers] of [
        [gateway.url, auth()],
        [backend.url, {}],
      ] as const) {
        const response = await postJson(`${url}/v1/chat/completions`, body, headers)
        assert.equal(response.status, 400)
        const error = ((await response.json()) as ErrorBody).error
        assert.equal(error.message, message)
        assert.equal(error.code, 'invalid_value')
      }
    }
  })

  test('CORS: a preflight is answered before authentication, for allowed origins only', async () => {
    const preflight = (origin: string) =>
      fetch(`${gateway.url}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: {
          origin,
          'access-control-request-method': 'POST',
          'access-control-request-headers': 'authorization,content-type,x-stainless-os',
        },
      })
    const allowed = await preflight(ORIGIN)
    assert.equal(allowed.status, 204)
    assert.equal(allowed.headers.get('access-control-allow-origin'), ORIGIN)
    assert.match(allowed.headers.get('access-control-allow-headers')!, /authorization/)
    assert.match(allowed.headers.get('access-control-allow-methods')!, /POST/)
    const other = await preflight('http://evil.example')
    assert.equal(other.headers.get('access-control-allow-origin'), null)
    // An actual request: its answer (an error too) carries the header, and the limits are readable.
    const refused = await postJson(`${gateway.url}/v1/chat/completions`, chat(), { origin: ORIGIN })
    assert.equal(refused.status, 401)
    assert.equal(refused.headers.get('access-control-allow-origin'), ORIGIN)
    const ok = await postJson(`${gateway.url}/v1/chat/completions`, chat({ max_tokens: 2 }), {
      ...auth(),
      origin: ORIGIN,
    })
    assert.equal(ok.status, 200)
    assert.match(ok.headers.get('access-control-expose-headers')!, /x-request-id/)
  })

  test('CORS is off by default: a preflight is a 404 as before, with no CORS headers', async () => {
    const plain = await startGateway({
      backend: { url: backend.url },
      auth: { apiKeys: [{ id: 'main', tenant: 'a', hash: sha(KEY) }] },
    })
    try {
      const response = await fetch(`${plain.url}/v1/chat/completions`, {
        method: 'OPTIONS',
        headers: { origin: ORIGIN, 'access-control-request-method': 'POST' },
      })
      assert.equal(response.headers.get('access-control-allow-origin'), null)
      assert.notEqual(response.status, 204)
    } finally {
      await plain.stop()
    }
  })

  test('DEVICE=auto without the CUDA provider: one line, no onnxruntime loader error', () => {
    const output = backend.output()
    assert.doesNotMatch(output, /provider_bridge|Failed to load shared library|cannot open shared object/)
    assert.equal(output.match(/CUDA unavailable/g)?.length, 1)
  })
})

describe('errors that name the right party', () => {
  let guarded: BackendProcess
  let unsigned: GatewayProcess
  let signed: GatewayProcess

  before(async () => {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
    writeFileSync(
      join(scratch, 'verify.json'),
      JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k', alg: 'EdDSA', use: 'sig' }] }),
    )
    writeFileSync(
      join(scratch, 'signing.json'),
      JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'k', alg: 'EdDSA' }),
    )
    // Every generation passes its deadline at once: the node's 504 timeout.
    guarded = await startBackend({
      GATEWAY_VERIFY_KEYS_FILE: join(scratch, 'verify.json'),
      REQUEST_TIMEOUT_MS: '1',
      MAX_BATCH_SIZE: '1',
    })
    const config = { backend: { url: guarded.url }, auth: { apiKeys: [{ id: 'main', tenant: 'a', hash: sha(KEY) }] } }
    ;[unsigned, signed] = await Promise.all([
      startGateway(config),
      startGateway(config, { BACKEND_SIGNING_KEY_FILE: join(scratch, 'signing.json') }),
    ])
  })
  after(async () => {
    await Promise.all([unsigned?.stop(), signed?.stop()])
    await guarded?.stop()
  })

  test('a backend that needs gateway tokens and a gateway without a signing key: 500 gateway_misconfigured, logged once with the fix', async () => {
    for (let i = 0; i < 2; i++) {
      const response = await postJson(`${unsigned.url}/v1/chat/completions`, chat({ max_tokens: 2 }), auth())
      assert.equal(response.status, 500)
      const error = ((await response.json()) as ErrorBody).error
      assert.deepEqual([error.type, error.code], ['server_error', 'gateway_misconfigured'])
    }
    const models = await fetch(`${unsigned.url}/v1/models`, { headers: auth() })
    assert.equal(((await models.json()) as ErrorBody).error.code, 'gateway_misconfigured')
    const lines = unsigned
      .output()
      .split('\n')
      .filter((l) => l.includes('gateway misconfigured'))
    assert.equal(lines.length, 1, unsigned.output())
    assert.match(lines[0], /BACKEND_SIGNING_KEY_FILE/)
  })

  test('a backend deadline reaches the client as a timeout: 504 JSON, and a stream error event', async () => {
    const long = chat({ max_tokens: 200, ignore_eos: true })
    const plain = await postJson(`${signed.url}/v1/chat/completions`, long, auth())
    assert.equal(plain.status, 504)
    assert.equal(((await plain.json()) as ErrorBody).error.code, 'timeout')
    const events = await readSse(await postJson(`${signed.url}/v1/chat/completions`, { ...long, stream: true }, auth()))
    assert.ok(!events.includes('[DONE]'))
    assert.equal((events.at(-1) as ErrorBody).error.code, 'timeout')
  })
})

describe('start-up problems in one line', () => {
  let holder: Server
  let heldPort: number
  before(async () => {
    holder = createServer()
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
    heldPort = (holder.address() as { port: number }).port
  })
  after(() => new Promise<void>((resolve) => holder.close(() => resolve())))

  /** Runs an entry to its exit; its output and exit code. */
  async function runToExit(
    entry: string,
    env: Record<string, string>,
  ): Promise<{ code: number | null; output: string }> {
    const run = spawnEntry(entry, { LOG_LEVEL: 'info', ...env })
    const exited = await Promise.race([
      new Promise<number | null>((resolve) => run.child.once('exit', resolve)),
      new Promise<'hung'>((r) => setTimeout(() => r('hung'), 30_000)),
    ])
    if (exited === 'hung') await run.stop('SIGKILL')
    return { code: exited === 'hung' ? null : exited, output: run.output() }
  }

  const oneLine = (output: string, pattern: RegExp) => {
    assert.doesNotMatch(output, /Unhandled| {4}at /, output)
    assert.match(output, pattern)
  }

  test('gateway: a port in use exits 2 naming the port and PORT', async () => {
    const { code, output } = await runToExit('gateway/node/index.ts', {
      BACKEND_URL: backend.url,
      HOST: '127.0.0.1',
      PORT: String(heldPort),
      ADMIN_TOKEN: 'a-long-enough-admin-token-0123456789',
    })
    assert.equal(code, 2)
    oneLine(output, new RegExp(`port ${heldPort} is already in use; stop what holds it or set PORT to another port`))
  })

  test('backend: a port in use exits 2 naming the port and PORT', async () => {
    const { code, output } = await runToExit('backend/node.ts', {
      MODEL_DIR: STORIES_DIR,
      DEVICE: 'cpu',
      HOST: '127.0.0.1',
      PORT: String(heldPort),
    })
    assert.equal(code, 2)
    oneLine(output, new RegExp(`port ${heldPort} is already in use; stop what holds it or set PORT to another port`))
  })

  test('npm start: a port in use exits 2 naming BACKEND_PORT or PORT, before starting anything', async () => {
    const free = await freePort()
    const backendHeld = await runToExit('scripts/start.ts', {
      MODEL_DIR: STORIES_DIR,
      BACKEND_PORT: String(heldPort),
      PORT: String(free),
    })
    assert.equal(backendHeld.code, 2)
    oneLine(
      backendHeld.output,
      new RegExp(`port ${heldPort} is already in use; stop what holds it or set BACKEND_PORT`),
    )
    const gatewayHeld = await runToExit('scripts/start.ts', {
      MODEL_DIR: STORIES_DIR,
      BACKEND_PORT: String(free),
      PORT: String(heldPort),
    })
    assert.equal(gatewayHeld.code, 2)
    oneLine(gatewayHeld.output, new RegExp(`port ${heldPort} is already in use; stop what holds it or set PORT`))
  })

  test('gateway: a backend URL without a scheme is refused; no authentication is warned about', async () => {
    const bare = await runToExit('gateway/node/index.ts', { BACKEND_URL: 'localhost:8000', PORT: '0' })
    assert.equal(bare.code, 2)
    oneLine(bare.output, /BACKEND_URL: must be an http:\/\/ or https:\/\/ URL/)
    const open = await startGateway({ backend: { url: backend.url } }, { ADMIN_TOKEN: '' })
    try {
      assert.match(open.output(), /no authentication is configured.*every API request will be answered 401/)
    } finally {
      await open.stop()
    }
  })
})
