import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { MODEL } from './bodies.ts'
import { fuzz, printSummary, send } from './harness.ts'
import { headerBlock, rawExchange } from './raw-http.ts'

/**
 * HTTP/1.1 framing and header abuse over raw sockets, against a real gateway and a real backend:
 * oversized header blocks and URLs, conflicting Content-Length / Transfer-Encoding (request
 * smuggling), broken chunked bodies, control and non-UTF-8 bytes in headers, bad header names.
 * Each gets a 4xx (or the server closes the connection, for framing Node refuses to parse),
 * never a 5xx or a hang, and the server keeps serving. Random header sets are checked against
 * RFC 9110's grammar: well-formed ones are served, malformed ones get 400.
 */

const KEY = 'sy-fuzz-key-for-the-raw-header-tests'
const BODY = JSON.stringify({ model: MODEL, prompt: 'Once', max_tokens: 1, temperature: 0 })

let backend: BackendProcess
let gateway: GatewayProcess
before(async () => {
  backend = await startBackend()
  gateway = await startGateway({
    backend: { url: backend.url },
    auth: {
      apiKeys: [
        {
          id: 'raw',
          tenant: 'raw',
          hash: createHash('sha256').update(KEY).digest('hex'),
          limits: { requestsPerWindow: 1e9 },
        },
      ],
    },
    limits: { perIp: { requestsPerWindow: 1e9, requestWindowSeconds: 60 } },
  })
})
after(async () => {
  await gateway?.stop()
  await backend?.stop()
})

interface Server {
  name: string
  port: () => number
  /** Headers a generation request needs (the gateway's API key). */
  auth: string
}
const servers: Server[] = [
  { name: 'backend', port: () => backend.port, auth: '' },
  { name: 'gateway', port: () => gateway.port, auth: `Authorization: Bearer ${KEY}\r\n` },
]

const post = (server: Server, headers: string, body = BODY) =>
  `POST /v1/completions HTTP/1.1\r\nHost: x\r\n${server.auth}Content-Type: application/json\r\n${headers}\r\n${body}`
const chunk = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`

interface ProtocolCase {
  name: string
  request: (server: Server) => string | (string | Uint8Array)[]
  /** Allowed statuses of the (first) response. */
  status: number[]
  /** The server must close the connection after answering (framing it cannot trust). */
  closes?: boolean
  /** No response at all, only a close, is also acceptable. */
  mayCloseSilently?: boolean
}

const latin1 = (s: string) => Buffer.from(s, 'latin1')

const protocolCases: ProtocolCase[] = [
  {
    name: 'header block over the limit',
    request: () => `GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`,
    status: [431],
    closes: true,
  },
  {
    name: 'absurdly long URL',
    request: () => `GET /health?${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    status: [414, 431],
    closes: true,
  },
  {
    name: '3000 small headers',
    request: () =>
      `GET /health HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\n\r\n`,
    status: [431],
    closes: true,
  },
  {
    name: '500 small headers (under the limit)',
    request: () =>
      `GET /health HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 500 }, (_, i) => `X-H${i}: v`).join('\r\n')}\r\nConnection: close\r\n\r\n`,
    status: [200],
  },
  {
    name: 'two Content-Lengths that differ',
    request: (s) => post(s, `Content-Length: ${BODY.length}\r\nContent-Length: 5\r\n`),
    status: [400],
    closes: true,
  },
  {
    name: 'two equal Content-Lengths',
    request: (s) =>
      post(s, `Content-Length: ${BODY.length}\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n`),
    status: [200, 400],
  },
  {
    name: 'Content-Length list "n, n"',
    request: (s) => post(s, `Content-Length: ${BODY.length}, ${BODY.length}\r\nConnection: close\r\n`),
    status: [200, 400],
  },
  {
    // CL.TE smuggling: a server trusting Content-Length would read a second, hidden request.
    name: 'Content-Length and Transfer-Encoding together, with a smuggled request',
    request: (s) =>
      post(
        s,
        'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n',
        `${chunk(BODY)}0\r\n\r\nGET /admin/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\n\r\n`,
      ),
    status: [400],
    closes: true,
  },
  {
    name: 'Transfer-Encoding: chunked, identity',
    request: (s) => post(s, 'Transfer-Encoding: chunked, identity\r\n', `${chunk(BODY)}0\r\n\r\n`),
    status: [400, 501],
    closes: true,
  },
  {
    name: 'Transfer-Encoding: xchunked',
    request: (s) => post(s, 'Transfer-Encoding: xchunked\r\n', `${chunk(BODY)}0\r\n\r\n`),
    status: [400, 501],
    closes: true,
  },
  {
    name: 'Transfer-Encoding folded over two lines',
    request: (s) => post(s, 'Transfer-Encoding:\r\n chunked\r\n', `${chunk(BODY)}0\r\n\r\n`),
    status: [400],
    closes: true,
  },
  {
    name: 'space before the colon of Transfer-Encoding',
    request: (s) => post(s, 'Transfer-Encoding : chunked\r\n', `${chunk(BODY)}0\r\n\r\n`),
    status: [400],
    closes: true,
  },
  {
    name: 'chunk size that is not hex',
    request: (s) => post(s, 'Transfer-Encoding: chunked\r\n', `zz\r\n${BODY}\r\n0\r\n\r\n`),
    status: [400],
    closes: true,
  },
  {
    name: 'chunk size that overflows',
    request: (s) => post(s, 'Transfer-Encoding: chunked\r\n', `ffffffffffffffffffffff\r\n${BODY}\r\n0\r\n\r\n`),
    status: [400],
    closes: true,
  },
  {
    name: 'chunk longer than its size',
    request: (s) => post(s, 'Transfer-Encoding: chunked\r\n', `2\r\n${BODY}\r\n0\r\n\r\n`),
    status: [400],
    closes: true,
  },
  {
    name: 'chunk without its CRLF',
    request: (s) =>
      post(s, 'Transfer-Encoding: chunked\r\n', `${Buffer.byteLength(BODY).toString(16)}\r\n${BODY}0\r\n\r\n`),
    status: [400],
    closes: true,
  },
  {
    name: 'chunked body in 1-byte chunks with extensions and a trailer',
    request: (s) =>
      post(
        s,
        'Transfer-Encoding: chunked\r\nConnection: close\r\n',
        `${[...BODY].map((ch) => `1;ext=${ch === '"' ? 'q' : 'v'}\r\n${ch}\r\n`).join('')}0\r\nX-Trailer: t\r\n\r\n`,
      ),
    status: [200],
  },
  { name: 'negative Content-Length', request: (s) => post(s, 'Content-Length: -1\r\n'), status: [400], closes: true },
  {
    name: 'Content-Length with a plus sign',
    request: (s) => post(s, `Content-Length: +${BODY.length}\r\n`),
    status: [400],
    closes: true,
  },
  {
    name: 'Content-Length in exponent form',
    request: (s) => post(s, 'Content-Length: 1e2\r\n'),
    status: [400],
    closes: true,
  },
  {
    name: 'Content-Length beyond 2^64',
    request: (s) => post(s, 'Content-Length: 99999999999999999999999\r\n'),
    status: [400, 413],
    closes: true,
  },
  {
    name: 'control character in a header value',
    request: () => 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n',
    status: [400],
    closes: true,
  },
  {
    name: 'NUL in a header value',
    request: () => 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n',
    status: [400],
    closes: true,
  },
  {
    name: 'bare LF inside a header value',
    request: () => 'GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\nb\r\n\r\n',
    status: [400],
    closes: true,
  },
  {
    name: 'bare CR inside a header value',
    request: () => 'GET /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: a\rb\r\n\r\n',
    status: [400],
    closes: true,
  },
  {
    name: 'header name with a space',
    request: () => 'GET /health HTTP/1.1\r\nHost: x\r\nX Bad: v\r\n\r\n',
    status: [400],
    closes: true,
  },
  {
    name: 'empty header name',
    request: () => 'GET /health HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n',
    status: [400],
    closes: true,
  },
  {
    name: 'non-ASCII header name',
    request: () => 'GET /health HTTP/1.1\r\nHost: x\r\nX-\xe9: v\r\n\r\n',
    status: [400],
    closes: true,
  },
  {
    name: 'obsolete line folding',
    request: () => 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n',
    status: [400],
    closes: true,
  },
  {
    // obs-text is allowed in values; such a request id is replaced, and an API key with it is refused.
    name: 'invalid UTF-8 bytes in header values',
    request: (s) => [
      latin1(`POST /v1/completions HTTP/1.1\r\nHost: x\r\n${s.auth}Content-Type: application/json\r\nX-Request-Id: `),
      Uint8Array.from([0xff, 0xfe, 0xc3, 0x28]),
      latin1(`\r\nX-Other: \xc0\xaf\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`),
    ],
    status: [200],
  },
  {
    name: 'invalid UTF-8 bytes in the API key',
    request: () => [
      latin1('POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sy-'),
      Uint8Array.from([0xff, 0xfe]),
      latin1(
        `\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`,
      ),
    ],
    // The backend has no API keys (it would take a gateway token), so it serves the request.
    status: [200, 401],
  },
  {
    name: 'invalid UTF-8 in the URL',
    request: () => [latin1('GET /health/'), Uint8Array.from([0xff, 0xfe]), latin1(' HTTP/1.1\r\nHost: x\r\n\r\n')],
    status: [400, 404],
    closes: false,
  },
  { name: 'HTTP/1.1 without Host', request: () => 'GET /health HTTP/1.1\r\n\r\n', status: [400], closes: true },
  { name: 'HTTP/1.0 without Host', request: () => 'GET /health HTTP/1.0\r\n\r\n', status: [200] },
  {
    name: 'unknown HTTP version',
    request: () => 'GET /health HTTP/9.9\r\nHost: x\r\n\r\n',
    status: [400, 505],
    closes: true,
  },
  { name: 'lower-case method', request: () => 'get /health HTTP/1.1\r\nHost: x\r\n\r\n', status: [400], closes: true },
  { name: 'binary garbage', request: () => '\x00\x01\x02\x03 \xff\r\n\r\n', status: [400], closes: true },
  {
    name: 'absolute-form request target',
    request: () => 'GET http://evil.example/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    status: [200, 400, 404],
  },
  {
    name: 'asterisk-form request target',
    request: () => 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    status: [400, 404],
  },
  {
    name: 'CONNECT',
    request: () => 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n',
    status: [400, 404, 405],
    mayCloseSilently: true,
  },
  {
    name: 'Upgrade to websocket',
    request: () =>
      'GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    status: [200, 400, 404, 426],
    mayCloseSilently: true,
  },
  {
    name: 'Expect: 100-continue',
    request: (s) => post(s, `Content-Length: ${BODY.length}\r\nExpect: 100-continue\r\nConnection: close\r\n`),
    status: [100, 200],
  },
  {
    name: 'two pipelined requests',
    request: () => 'GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
    status: [200],
  },
]

/** The server answers a plain request afterwards (it neither died nor wedged). */
async function assertServing(server: Server): Promise<void> {
  const answer = await send(`http://127.0.0.1:${server.port()}/health`)
  assert.equal(answer.status, 200)
}

for (const server of servers) {
  describe(`${server.name}: HTTP framing and header abuse`, () => {
    for (const c of protocolCases) {
      test(c.name, async () => {
        const exchange = await rawExchange(server.port(), c.request(server))
        assert.ok(
          !exchange.timedOut,
          `no hang: neither an answer nor a close within 5 s (${exchange.text.slice(0, 200)})`,
        )
        if (exchange.statuses.length === 0) {
          assert.ok(c.mayCloseSilently || c.closes, `an answer, not only a closed connection`)
        } else {
          assert.ok(
            exchange.statuses.every((s) => s < 500),
            `never a 5xx: ${exchange.text.slice(0, 300)}`,
          )
          assert.ok(
            c.status.includes(exchange.statuses[0]),
            `status ${c.status.join(' or ')}, got ${exchange.text.slice(0, 300)}`,
          )
        }
        if (c.closes) {
          assert.ok(exchange.closed, 'the connection is closed: nothing after broken framing is trusted')
          assert.equal(
            exchange.statuses.length <= 1,
            true,
            `no second (smuggled) response: ${exchange.text.slice(0, 600)}`,
          )
        }
        await assertServing(server)
      })
    }
  })
}

/** RFC 9110 §5.1 and §5.5: a field name is a token; a value has no control characters but HTAB. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const validValue = (bytes: Uint8Array) => bytes.every((b) => b === 0x09 || (b >= 0x20 && b !== 0x7f))
/** Names that change framing or routing; the fixed cases above test those. */
const SPECIAL = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'expect',
  'upgrade',
  'te',
  'trailer',
  'keep-alive',
  'authorization',
  'x-api-key',
  'content-type',
  'x-switchyard-region',
  'cache-control',
  'x-forwarded-for',
  'proxy-connection',
])

const headerName = fc
  .oneof(
    { weight: 4, arbitrary: fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,24}$/) },
    {
      weight: 1,
      arbitrary: fc
        .uint8Array({ minLength: 1, maxLength: 12 })
        .map((b) => Buffer.from(b).toString('latin1'))
        .filter((n) => !/[\r\n:]/.test(n)),
    },
  )
  .filter((name) => !SPECIAL.has(name.toLowerCase()))
const headerValue = fc
  .oneof(
    {
      weight: 4,
      arbitrary: fc.uint8Array({ maxLength: 120 }).map((b) => b.map((x) => (x < 0x20 || x === 0x7f ? 0x41 : x))),
    },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 120 }) },
  )
  .map((bytes) => bytes.filter((b) => b !== 0x0d && b !== 0x0a))
/** A header set, some names repeated (duplicates must be fine for ordinary headers). */
const headerSet = fc
  .array(fc.tuple(headerName, headerValue), { minLength: 1, maxLength: 20 })
  .chain((headers) => fc.subarray(headers).map((repeated) => [...headers, ...repeated]))

for (const server of servers) {
  describe(`${server.name}: random header sets`, () => {
    test('well-formed headers are served, malformed ones get 400 and a close', async (t) => {
      await fuzz(
        t,
        `${server.name} random headers`,
        fc.tuple(headerSet, fc.boolean()),
        async ([headers, generation]) => {
          // Leading and trailing whitespace is not part of a value; it is the bytes inside that count.
          const wellFormed = headers.every(([name, value]) => TOKEN.test(name) && validValue(value))
          const block = headerBlock(headers.map(([name, value]) => [latin1(name), value]))
          const head = generation
            ? `POST /v1/completions HTTP/1.1\r\nHost: x\r\n${server.auth}Content-Type: application/json\r\nContent-Length: ${BODY.length}\r\n`
            : 'GET /health HTTP/1.1\r\nHost: x\r\n'
          const exchange = await rawExchange(server.port(), [
            head,
            block,
            'Connection: close\r\n\r\n',
            generation ? BODY : '',
          ])
          assert.ok(!exchange.timedOut, 'no hang')
          assert.ok(exchange.statuses.length > 0, `an answer: ${exchange.text.slice(0, 200)}`)
          assert.equal(
            exchange.statuses[0],
            wellFormed ? 200 : 400,
            `${wellFormed ? 'well-formed' : 'malformed'} headers: ${exchange.text.slice(0, 300)}`,
          )
          return wellFormed ? 'well-formed' : 'malformed'
        },
      )
      await assertServing(server)
    })
  })
}

describe('after the raw HTTP tests', () => {
  test('neither server counted a 5xx; both still serve', async (t) => {
    const gatewayMetrics = (
      await send(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).text
    const backendMetrics = (await send(`${backend.url}/metrics`)).text
    const fivexx = (text: string, name: string) =>
      text
        .split('\n')
        .filter(
          (line) => line.startsWith(`${name}{`) && /status="5\d\d"/.test(line) && !line.includes('route="/ready"'),
        )
    assert.deepEqual(fivexx(gatewayMetrics, 'switchyard_gateway_requests_total'), [])
    assert.deepEqual(fivexx(backendMetrics, 'switchyard_backend_requests_total'), [])
    for (const server of servers) await assertServing(server)
    printSummary(t)
  })
})
