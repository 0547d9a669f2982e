import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { connect, type Socket } from 'node:net'
import { after, before, describe, test } from 'node:test'
import { connect as tlsConnect } from 'node:tls'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { testCertificate } from '../helpers/tls-certificate.ts'

/**
 * Slow and oversized uploads against a real gateway: slow headers (slowloris) and slow bodies
 * are cut off by the gateway's receive timeouts (server.headersTimeoutMs / receiveTimeoutMs),
 * oversized bodies are refused without being buffered, and the process's memory stays bounded
 * (RSS read from /proc/<pid>/status) while hundreds of such uploads run at once. Streams that
 * run longer than the receive timeout are not cut: it covers receiving the request only.
 */

const KEY = 'sy-security-test-key-slow-and-large-0000'
const MAX_BODY = 65_536
const HEADERS_TIMEOUT_MS = 1000
const RECEIVE_TIMEOUT_MS = 2000
/** Node sweeps for expired connections every min(1 s, headers timeout / 4), so a cut can be that late. */
const SWEEP_MS = 250
/** Scheduling delays on a loaded machine (measured cuts land about 250 ms after the timeout). */
const SLACK_MS = 1500
const BODY = JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 2, temperature: 0 })
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const config = (backendUrl: string) => ({
  backend: { url: backendUrl },
  server: { maxBodyBytes: MAX_BODY, headersTimeoutMs: HEADERS_TIMEOUT_MS, receiveTimeoutMs: RECEIVE_TIMEOUT_MS },
  auth: {
    apiKeys: [{ id: 'slow', tenant: 'slow', hash: sha(KEY), limits: { requestsPerWindow: 1e9, maxConcurrent: 1000 } }],
  },
  cache: { enabled: false },
})

let backend: BackendProcess
let gateway: GatewayProcess
before(async () => {
  backend = await startBackend()
  gateway = await startGateway(config(backend.url))
})
after(async () => {
  await gateway?.stop()
  await backend?.stop()
})

/** Resident memory of a process in bytes. */
function rss(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return Number(match![1]) * 1024
}

interface Trickle {
  /** When the server closed the connection (ms after the first byte), or null while open. */
  closedAfter: () => number | null
  answer: () => string
  stop: () => void
}

/** Opens a connection (TLS if asked), writes `head`, then one byte of `drip` every `everyMs` until the server closes it. */
function trickle(port: number, head: string, drip: string, everyMs: number, tls = false): Trickle {
  const socket: Socket = tls
    ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] })
    : connect(port, '127.0.0.1')
  const started = performance.now()
  let closedAt: number | null = null
  let answer = ''
  let i = 0
  socket.on('data', (d) => (answer += d.toString('latin1')))
  socket.on('error', () => {})
  socket.on('close', () => {
    closedAt ??= performance.now() - started
    clearInterval(timer)
  })
  socket.write(head)
  const timer = setInterval(() => {
    if (!socket.destroyed) socket.write(drip[i++ % drip.length])
  }, everyMs)
  return {
    closedAfter: () => closedAt,
    answer: () => answer,
    stop: () => {
      clearInterval(timer)
      socket.destroy()
    },
  }
}

const waitUntil = async (condition: () => boolean, timeoutMs: number) => {
  const deadline = performance.now() + timeoutMs
  while (!condition() && performance.now() < deadline) await new Promise((r) => setTimeout(r, 25))
}

/** A normal request must still be answered quickly while the gateway is under attack. */
async function assertServesQuickly(): Promise<void> {
  const started = performance.now()
  const response = await postJson(`${gateway.url}/v1/completions`, JSON.parse(BODY), { authorization: `Bearer ${KEY}` })
  assert.equal(response.status, 200, await response.text())
  assert.ok(performance.now() - started < 1500, `served in ${Math.round(performance.now() - started)} ms`)
}

async function assertAllCut(connections: Trickle[], limitMs: number, what: string): Promise<void> {
  await assertServesQuickly()
  await waitUntil(() => connections.every((c) => c.closedAfter() !== null), limitMs + 1000)
  try {
    const open = connections.filter((c) => c.closedAfter() === null).length
    assert.equal(open, 0, `${open} of ${connections.length} ${what} still open after ${limitMs + 1000} ms`)
    const times = connections.map((c) => c.closedAfter()!)
    const late = times.filter((ms) => ms > limitMs)
    assert.deepEqual(late, [], `every ${what} cut within ${limitMs} ms`)
    for (const c of connections) {
      const status = /^HTTP\/1\.1 (\d{3})/.exec(c.answer())?.[1]
      assert.ok(status === undefined || status === '408', `408 or a plain close, got ${c.answer().slice(0, 120)}`)
    }
  } finally {
    for (const c of connections) c.stop()
  }
}

describe('slow clients are cut off', () => {
  test(`headers sent a byte at a time (slowloris) are cut after headersTimeoutMs (${HEADERS_TIMEOUT_MS} ms)`, async () => {
    const connections = Array.from({ length: 50 }, () =>
      trickle(gateway.port, 'POST /v1/completions HTTP/1.1\r\nHost: x\r\n', 'X-Slow: aaaaaaaaaaaaaaaaaaaa\r\n', 50),
    )
    await assertAllCut(connections, HEADERS_TIMEOUT_MS + SWEEP_MS + SLACK_MS, 'slow header blocks')
  })

  test(`a body sent a byte at a time is cut after receiveTimeoutMs (${RECEIVE_TIMEOUT_MS} ms)`, async () => {
    const head = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n`
    const connections = Array.from({ length: 50 }, () => trickle(gateway.port, head, BODY, 100))
    await assertAllCut(connections, RECEIVE_TIMEOUT_MS + SWEEP_MS + SLACK_MS, 'slow bodies')
  })

  test('a chunked body sent a chunk at a time is cut after receiveTimeoutMs', async () => {
    const head = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`
    const connections = Array.from({ length: 50 }, () => trickle(gateway.port, head, '1\r\n \r\n', 20))
    await assertAllCut(connections, RECEIVE_TIMEOUT_MS + SWEEP_MS + SLACK_MS, 'slow chunked bodies')
  })
})

describe("slow clients over the gateway's own TLS (HTTP/1.1)", () => {
  let tlsGateway: GatewayProcess
  before(async () => {
    const { cert, key } = testCertificate()
    tlsGateway = await startGateway(config(backend.url), { TLS_CERT_FILE: cert, TLS_KEY_FILE: key })
  })
  after(async () => {
    await tlsGateway?.stop()
  })

  test('slow headers and slow bodies are cut as on plain HTTP', async () => {
    const headers = Array.from({ length: 20 }, () =>
      trickle(
        tlsGateway.port,
        'POST /v1/completions HTTP/1.1\r\nHost: x\r\n',
        'X-Slow: aaaaaaaaaaaaaaaaaaaa\r\n',
        50,
        true,
      ),
    )
    const head = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${KEY}\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n`
    const bodies = Array.from({ length: 20 }, () => trickle(tlsGateway.port, head, BODY, 100, true))
    await assertAllCut(headers, HEADERS_TIMEOUT_MS + SWEEP_MS + SLACK_MS, 'slow header blocks over TLS')
    await assertAllCut(bodies, RECEIVE_TIMEOUT_MS + SWEEP_MS + SLACK_MS, 'slow bodies over TLS')
  })
})

describe('oversized uploads', () => {
  test('hundreds at once leave memory bounded, and the gateway keeps serving', async (t) => {
    const pid = gateway.child.pid!
    for (let i = 0; i < 20; i++) await assertServesQuickly()
    const baseline = rss(pid)
    let peak = baseline
    const sampler = setInterval(() => (peak = Math.max(peak, rss(pid))), 20)

    const auth = `Authorization: Bearer ${KEY}\r\nContent-Type: application/json\r\n`
    const uploads: Promise<void>[] = []
    const megabyte = Buffer.alloc(1 << 20, 0x61)
    // Declared oversized: refused from the header alone, before any of it is read.
    for (let i = 0; i < 100; i++)
      uploads.push(
        upload(
          `POST /v1/completions HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${10 << 20}\r\n\r\n`,
          Array.from({ length: 10 }, () => megabyte),
        ),
      )
    // Chunked without a length: counted as it streams and cut at the limit.
    const chunked = Buffer.concat([Buffer.from(`10000\r\n`), Buffer.alloc(0x10000, 0x62), Buffer.from('\r\n')])
    for (let i = 0; i < 150; i++)
      uploads.push(
        upload(
          `POST /v1/completions HTTP/1.1\r\nHost: x\r\n${auth}Transfer-Encoding: chunked\r\n\r\n`,
          Array.from({ length: 32 }, () => chunked),
        ),
      )
    // Just under the limit, then stalled: buffered until the receive timeout cuts them.
    const almost = Buffer.alloc(MAX_BODY - 100, 0x63)
    for (let i = 0; i < 150; i++)
      uploads.push(
        upload(`POST /v1/completions HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: ${MAX_BODY}\r\n\r\n`, [almost]),
      )

    await assertServesQuickly()
    await Promise.all(uploads)
    clearInterval(sampler)
    await assertServesQuickly()
    const grown = peak - baseline
    // 400 connections × at most 64 KiB of body each is 25 MiB; buffering the uploads whole would
    // be over 2 GiB. The allowance covers sockets, parsers and garbage not yet collected.
    assert.ok(
      grown < 160 * (1 << 20),
      `RSS grew by ${(grown / (1 << 20)).toFixed(1)} MiB (from ${(baseline / (1 << 20)).toFixed(1)} MiB)`,
    )
    t.diagnostic(
      `RSS ${(baseline / (1 << 20)).toFixed(1)} MiB before, peak ${(peak / (1 << 20)).toFixed(1)} MiB during 400 oversized or stalled uploads`,
    )
  })
})

/**
 * Sends `head` and then `chunks` as fast as the connection takes them; resolves when the server
 * closes it. Every answer must be a 413 or 408 (or none: a reset while still sending).
 */
function upload(head: string, chunks: Buffer[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect(gateway.port, '127.0.0.1')
    let answer = ''
    const timer = setTimeout(() => {
      socket.destroy()
      reject(new Error(`upload not cut within 10 s; answer so far: ${answer.slice(0, 100)}`))
    }, 10_000)
    socket.on('data', (d) => (answer += d.toString('latin1')))
    socket.on('error', () => {})
    socket.on('close', () => {
      clearTimeout(timer)
      const status = /^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1]
      if (status !== undefined && status !== '413' && status !== '408')
        reject(new Error(`expected 413 or 408, got ${answer.slice(0, 200)}`))
      else resolve()
    })
    socket.write(head)
    const next = (i: number) => {
      if (i >= chunks.length || socket.destroyed) return
      if (socket.write(chunks[i])) setImmediate(() => next(i + 1))
      else socket.once('drain', () => next(i + 1))
    }
    next(0)
  })
}

describe('long responses are not cut by the receive timeout', () => {
  let slowNode: Server
  let streaming: GatewayProcess

  before(async () => {
    // A node that streams one event every 400 ms for 3.2 s: well past the receive timeout.
    slowNode = createServer((req, res) => {
      req.resume()
      if (req.url === '/ready')
        return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}')
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      let sent = 0
      const timer = setInterval(() => {
        const last = ++sent === 8
        const choice = { index: 0, text: 'a', logprobs: null, finish_reason: last ? 'length' : null, token_ids: [5] }
        res.write(
          `data: ${JSON.stringify({ id: 'cmpl-slow', object: 'text_completion', created: 1, model: 'stories260K', choices: [choice] })}\n\n`,
        )
        if (last) {
          clearInterval(timer)
          res.write(
            `data: ${JSON.stringify({ id: 'cmpl-slow', object: 'text_completion', created: 1, model: 'stories260K', choices: [], usage: { prompt_tokens: 1, completion_tokens: 8, total_tokens: 9 } })}\n\ndata: [DONE]\n\n`,
          )
          res.end()
        }
      }, 400)
      res.on('close', () => clearInterval(timer))
    })
    await new Promise<void>((resolve) => slowNode.listen(0, '127.0.0.1', resolve))
    streaming = await startGateway(config(`http://127.0.0.1:${(slowNode.address() as AddressInfo).port}`))
  })
  after(async () => {
    await streaming?.stop()
    slowNode?.closeAllConnections()
    await new Promise<void>((resolve) => slowNode?.close(() => resolve()))
  })

  test('a stream lasting longer than receiveTimeoutMs reaches [DONE]', async () => {
    const started = performance.now()
    const response = await postJson(
      `${streaming.url}/v1/completions`,
      { ...JSON.parse(BODY), stream: true, max_tokens: 8 },
      { authorization: `Bearer ${KEY}` },
    )
    assert.equal(response.status, 200)
    const text = await response.text()
    const took = performance.now() - started
    assert.ok(
      took > RECEIVE_TIMEOUT_MS + SWEEP_MS + 500,
      `the stream ran past the receive timeout (${Math.round(took)} ms)`,
    )
    assert.ok(text.trimEnd().endsWith('data: [DONE]'), text.slice(-200))
    assert.equal((text.match(/"text":"a"/g) ?? []).length, 8)
  })
})
