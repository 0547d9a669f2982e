import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { connect } from 'node:http2'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { after, before, type TestContext, test } from 'node:test'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { startFakeNode } from '../helpers/fake-node.ts'
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { testCertificate } from '../helpers/tls-certificate.ts'

// SIGTERM with clients reusing keep-alive connections: in-flight and already-received
// requests are answered with `Connection: close`, idle connections are closed, and the process
// exits as soon as the work ends (bounded by server.drainTimeoutMs).
const KEY = 'sy-test-key-for-gateway-shutdown-0000'
const DRAIN_TIMEOUT_MS = 20_000
let backend: BackendProcess
const config = (server: object = {}, url = backend.url) => ({
  auth: { apiKeys: [{ id: 'k', tenant: 't', hash: createHash('sha256').update(KEY).digest('hex') }] },
  cache: { enabled: false },
  limits: {
    defaults: {
      requestsPerWindow: 1_000_000,
      requestWindowSeconds: 60,
      tokensPerMinute: 100_000_000,
      maxConcurrent: 64,
    },
  },
  server: { drainTimeoutMs: DRAIN_TIMEOUT_MS, ...server },
  backend: { url },
})

before(async () => {
  backend = await startBackend()
})
after(async () => {
  await backend.stop('SIGKILL')
})

interface Answer {
  status: number
  connection: string | undefined
}

interface Transport {
  request: typeof request
  agent: () => Agent
}
const plain: Transport = { request, agent: () => new Agent({ keepAlive: true, maxSockets: 1 }) }

/** One POST on the agent's (kept-alive) connection; rejects with the socket error. */
function complete(port: number, agent: Agent, body: object, transport: Transport = plain): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body)
    const req = transport.request(
      {
        host: '127.0.0.1',
        port,
        path: '/v1/completions',
        method: 'POST',
        agent,
        headers: {
          authorization: `Bearer ${KEY}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
        },
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve({ status: res.statusCode!, connection: res.headers.connection }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(payload)
  })
}

/**
 * `clients` keep-alive clients send requests in a loop; SIGTERM once they are all under way.
 * Each client goes on until the gateway has exited and its own next connection was refused.
 */
async function sigtermUnderLoad(gateway: GatewayProcess, clients: number, transport: Transport) {
  const errors: string[] = []
  const statuses = new Map<number, number>()
  let closeAnswers = 0
  let stopping = false
  let exited = false
  const client = async () => {
    const agent = transport.agent()
    let refused = 0
    try {
      while (!(exited && refused > 0)) {
        try {
          const answer = await complete(
            gateway.port,
            agent,
            { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 4 },
            transport,
          )
          statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1)
          if (stopping && answer.connection === 'close') closeAnswers++
          assert.ok(!stopping || answer.status === 200 || answer.status === 503, `status ${answer.status}`)
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code ?? String(error)
          if (code === 'ECONNREFUSED') refused++
          else errors.push(code)
          if (code === 'ECONNREFUSED') await new Promise((r) => setTimeout(r, 10))
        }
      }
    } finally {
      agent.destroy()
    }
  }
  const running = Array.from({ length: clients }, client)
  // Every client has a kept-alive connection in use before the signal.
  while ((statuses.get(200) ?? 0) < clients * 5) await new Promise((r) => setTimeout(r, 10))
  stopping = true
  const signalledAt = Date.now()
  const code = await gateway.stop('SIGTERM')
  const exitMs = Date.now() - signalledAt
  exited = true
  await Promise.all(running)
  return { errors, statuses, closeAnswers, code, exitMs }
}

function assertCleanShutdown(
  t: TestContext,
  gateway: GatewayProcess,
  result: Awaited<ReturnType<typeof sigtermUnderLoad>>,
) {
  // The figures of docs/gateway-lifecycle.md.
  t.diagnostic(
    `shutdown: ${JSON.stringify({ clientErrors: result.errors, answers: Object.fromEntries(result.statuses), connectionCloseAnswers: result.closeAnswers, exitMsAfterSigterm: result.exitMs })}`,
  )
  assert.deepEqual(
    result.errors,
    [],
    `client errors other than connection refused (answers: ${JSON.stringify([...result.statuses])})`,
  )
  assert.equal(result.code, 0)
  assert.ok(result.closeAnswers > 0, 'answers after SIGTERM said Connection: close')
  assert.ok(result.exitMs < DRAIN_TIMEOUT_MS, `exited ${result.exitMs} ms after SIGTERM, not at the drain timeout`)
  assert.doesNotMatch(gateway.output(), /drain timeout reached/)
}

test('8 keep-alive clients in a loop through SIGTERM: no errors but refused new connections, prompt exit 0', async (t) => {
  const gateway = await startGateway(config())
  assertCleanShutdown(t, gateway, await sigtermUnderLoad(gateway, 8, plain))
})

test('the same over TLS with HTTP/1.1 keep-alive clients', async (t) => {
  const tls = testCertificate()
  const gateway = await startGateway(config(), { TLS_CERT_FILE: tls.cert, TLS_KEY_FILE: tls.key })
  const ca = readFileSync(tls.cert)
  const overTls: Transport = {
    request: httpsRequest as unknown as typeof request,
    agent: () => new HttpsAgent({ keepAlive: true, maxSockets: 1, ca }),
  }
  assertCleanShutdown(t, gateway, await sigtermUnderLoad(gateway, 4, overTls))
})

test('a request still running at the drain timeout is cut, said in the log, and the process exits 0', async () => {
  // A node that never answers keeps the request in flight.
  const hanging = await startFakeNode('hang')
  const gateway = await startGateway(config({ drainTimeoutMs: 300 }, hanging.url))
  const agent = new Agent({ keepAlive: true })
  try {
    const long = complete(gateway.port, agent, { model: 'stories260K', prompt: 'Once', max_tokens: 4 }).catch(
      (error: Error) => error,
    )
    await new Promise((r) => setTimeout(r, 200))
    assert.equal(await gateway.stop('SIGTERM'), 0)
    assert.ok((await long) instanceof Error, 'the stream was cut')
    assert.match(gateway.output(), /"cutConnections":1.*drain timeout reached/)
  } finally {
    agent.destroy()
    await gateway.stop('SIGKILL')
    await hanging.stop()
  }
})

test('over TLS: an HTTP/2 session with a request in flight gets GOAWAY, its answer, and the process exits 0', async () => {
  const tls = testCertificate()
  const gateway = await startGateway(config(), { TLS_CERT_FILE: tls.cert, TLS_KEY_FILE: tls.key })
  const session = connect(gateway.url, { ca: readFileSync(tls.cert) })
  try {
    const goaway = once(session, 'goaway')
    const stream = session.request({
      ':method': 'POST',
      ':path': '/v1/completions',
      authorization: `Bearer ${KEY}`,
      'content-type': 'application/json',
    })
    stream.end(
      JSON.stringify({
        model: 'stories260K',
        prompt: 'Once upon a time',
        max_tokens: 200,
        ignore_eos: true,
        stream: true,
      }),
    )
    const [headers] = (await once(stream, 'response')) as [Record<string, string | number>]
    assert.equal(headers[':status'], 200)
    const exited = gateway.stop('SIGTERM')
    let body = ''
    for await (const chunk of stream) body += chunk
    await goaway
    assert.match(body, /data: \[DONE\]\n\n$/, 'the stream in flight was finished')
    assert.equal(await exited, 0)
    assert.doesNotMatch(gateway.output(), /drain timeout reached/)
  } finally {
    session.destroy()
    await gateway.stop('SIGKILL')
  }
})
