import assert from 'node:assert/strict'
import { constants, createHash, createHmac, sign as cryptoSign, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { type RedisServer, startRedis } from '../helpers/redis-server.ts'

/**
 * Authentication end to end, through a real gateway process whose JWT verifier is configured
 * with static keys in its config file (`auth.jwt.keys`), a real backend and Redis. The unit
 * tests (test/gateway/auth) cover the verifier's reasons one by one; these check that none of
 * the classic forgeries gets through the running pipeline, that a token's model list and a
 * revoked key hold there too, and that client credentials never cross to the backends.
 */

const MODEL = 'stories260K'
const ISSUER = 'https://idp.switchyard.test'
const AUDIENCE = 'switchyard-gateway'
const API_KEY = 'sy-security-test-key-alice-0000000000'
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const now = () => Math.floor(Date.now() / 1000)
const b64 = (value: unknown) =>
  Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
const greedy = (extra: object = {}) => ({
  model: MODEL,
  prompt: 'Once upon a time',
  max_tokens: 2,
  temperature: 0,
  ...extra,
})

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
/** An attacker's own keys. */
const evilRsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const evilEc = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const publicJwk = (key: KeyObject, kid: string, alg: string) => ({
  ...key.export({ format: 'jwk' }),
  kid,
  alg,
  use: 'sig',
})

type Signer = (input: Buffer) => Buffer
const signers = {
  RS256:
    (key: KeyObject): Signer =>
    (input) =>
      cryptoSign('sha256', input, key),
  PS256:
    (key: KeyObject): Signer =>
    (input) =>
      cryptoSign('sha256', input, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }),
  ES256:
    (key: KeyObject): Signer =>
    (input) =>
      cryptoSign('sha256', input, { key, dsaEncoding: 'ieee-p1363' }),
  HS:
    (bits: 256 | 384 | 512, secret: string | Buffer): Signer =>
    (input) =>
      createHmac(`sha${bits}`, secret).update(input).digest(),
  none: (): Signer => () => Buffer.alloc(0),
}

/** A compact JWS with exactly this header and payload (no library in the way, so anything can be forged). */
function jwt(header: Record<string, unknown>, payload: Record<string, unknown>, signer: Signer): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${signer(Buffer.from(input)).toString('base64url')}`
}

const claims = (extra: Record<string, unknown> = {}) => ({
  sub: 'user-1',
  tenant: 'acme',
  iss: ISSUER,
  aud: AUDIENCE,
  iat: now(),
  exp: now() + 300,
  ...extra,
})
const rsToken = (payload = claims(), header: Record<string, unknown> = {}) =>
  jwt({ alg: 'RS256', typ: 'JWT', kid: 'rsa-1', ...header }, payload, signers.RS256(rsa.privateKey))
const esToken = (payload = claims(), header: Record<string, unknown> = {}) =>
  jwt({ alg: 'ES256', typ: 'JWT', kid: 'ec-1', ...header }, payload, signers.ES256(ec.privateKey))

let backend: BackendProcess
let redis: RedisServer
let gateway: GatewayProcess
/** A server the forged tokens point at (jku, x5u): the gateway must never fetch from it. */
let lure: Server
let lureHits = 0
let lureUrl: string

before(async () => {
  lure = createServer((_req, res) => {
    lureHits++
    res
      .writeHead(200, { 'content-type': 'application/json' })
      .end(JSON.stringify({ keys: [publicJwk(evilRsa.publicKey, 'rsa-1', 'RS256')] }))
  })
  await new Promise<void>((resolve) => lure.listen(0, '127.0.0.1', resolve))
  lureUrl = `http://127.0.0.1:${(lure.address() as AddressInfo).port}/jwks.json`
  ;[backend, redis] = await Promise.all([startBackend(), startRedis()])
  gateway = await startGateway(
    {
      backend: { url: backend.url },
      auth: {
        apiKeys: [
          {
            id: 'alice',
            tenant: 'acme',
            hash: sha(API_KEY),
            limits: { requestsPerWindow: 2, requestWindowSeconds: 60 },
          },
        ],
        jwt: {
          keys: [publicJwk(rsa.publicKey, 'rsa-1', 'RS256'), publicJwk(ec.publicKey, 'ec-1', 'ES256')],
          algorithms: ['RS256', 'ES256'],
          issuer: ISSUER,
          audience: AUDIENCE,
          clockToleranceSeconds: 5,
          claims: { tenant: 'tenant', models: 'models', limits: 'limits' },
        },
      },
    },
    { REDIS_URL: redis.url },
  )
})
after(async () => {
  await gateway?.stop()
  await backend?.stop()
  await redis?.stop()
  await new Promise<void>((resolve) => lure?.close(() => resolve()))
})

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })
const complete = (headers: Record<string, string>, body: object = greedy()) =>
  postJson(`${gateway.url}/v1/completions`, body, headers)

describe('JWT through a running gateway (static keys)', () => {
  test('well-formed RS256 and ES256 tokens are accepted, in either header (the control case)', async () => {
    for (const headers of [bearer(rsToken()), bearer(esToken()), { 'x-api-key': rsToken() }]) {
      const response = await complete(headers)
      assert.equal(response.status, 200, await response.text())
    }
    // Within the configured clock tolerance (5 s) an expired token still passes.
    assert.equal((await complete(bearer(rsToken(claims({ exp: now() - 2 }))))).status, 200)
  })

  test('forged, expired, misaddressed and malformed tokens all get the same 401, and none is logged', async () => {
    const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }) as string
    const ecPem = ec.publicKey.export({ type: 'spki', format: 'pem' }) as string
    const rsaJwkText = JSON.stringify(publicJwk(rsa.publicKey, 'rsa-1', 'RS256'))
    const ecJwkText = JSON.stringify(publicJwk(ec.publicKey, 'ec-1', 'ES256'))
    const evilJwk = publicJwk(evilRsa.publicKey, 'evil', 'RS256')
    const [h, p, s] = rsToken().split('.')
    const widened = `${h}.${b64({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), models: ['everything'], tenant: 'other' })}.${s}`

    const forged: [string, string][] = [
      // alg none in its spellings, with and without a signature.
      ...['none', 'None', 'NONE', 'nOnE'].map((alg): [string, string] => [
        `alg ${alg}`,
        jwt({ alg, typ: 'JWT', kid: 'rsa-1' }, claims(), signers.none()),
      ]),
      ['alg none with a signature', `${jwt({ alg: 'none', kid: 'rsa-1' }, claims(), signers.none())}c2ln`],
      // Key confusion: HMAC with the public key (in the forms a verifier might hold it) as the secret.
      ...([256, 384, 512] as const).flatMap((bits): [string, string][] => [
        [
          `HS${bits} keyed with the RSA public key (PEM)`,
          jwt({ alg: `HS${bits}`, kid: 'rsa-1' }, claims(), signers.HS(bits, rsaPem)),
        ],
        [
          `HS${bits} keyed with the EC public key (PEM)`,
          jwt({ alg: `HS${bits}`, kid: 'ec-1' }, claims(), signers.HS(bits, ecPem)),
        ],
      ]),
      [
        'HS256 keyed with the RSA public JWK',
        jwt({ alg: 'HS256', kid: 'rsa-1' }, claims(), signers.HS(256, rsaJwkText)),
      ],
      ['HS256 keyed with the EC public JWK', jwt({ alg: 'HS256', kid: 'ec-1' }, claims(), signers.HS(256, ecJwkText))],
      [
        'HS256 keyed with the RSA modulus',
        jwt(
          { alg: 'HS256', kid: 'rsa-1' },
          claims(),
          signers.HS(256, Buffer.from(String(publicJwk(rsa.publicKey, 'rsa-1', 'RS256').n), 'base64url')),
        ),
      ],
      // Algorithms outside the allow-list, even with the right private key.
      ['PS256 with the real RSA key', jwt({ alg: 'PS256', kid: 'rsa-1' }, claims(), signers.PS256(rsa.privateKey))],
      [
        'RS256 header on an ES256 signature',
        jwt({ alg: 'RS256', kid: 'ec-1' }, claims(), signers.ES256(ec.privateKey)),
      ],
      ['ES256 header with the RSA key id', jwt({ alg: 'ES256', kid: 'rsa-1' }, claims(), signers.ES256(ec.privateKey))],
      // Keys the token brings along must never be trusted (or fetched).
      [
        'embedded jwk of the attacker',
        jwt({ alg: 'RS256', jwk: evilJwk }, claims(), signers.RS256(evilRsa.privateKey)),
      ],
      [
        'embedded jwk with a known kid',
        jwt({ alg: 'RS256', kid: 'rsa-1', jwk: evilJwk }, claims(), signers.RS256(evilRsa.privateKey)),
      ],
      [
        'jku pointing at the attacker',
        jwt({ alg: 'RS256', kid: 'rsa-1', jku: lureUrl }, claims(), signers.RS256(evilRsa.privateKey)),
      ],
      [
        'x5u pointing at the attacker',
        jwt({ alg: 'RS256', kid: 'rsa-1', x5u: lureUrl }, claims(), signers.RS256(evilRsa.privateKey)),
      ],
      [
        'an attacker EC key under the real kid',
        jwt({ alg: 'ES256', kid: 'ec-1' }, claims(), signers.ES256(evilEc.privateKey)),
      ],
      [
        'an attacker RSA key under the real kid',
        jwt({ alg: 'RS256', kid: 'rsa-1' }, claims(), signers.RS256(evilRsa.privateKey)),
      ],
      ['unknown critical header', rsToken(claims(), { crit: ['x-must-understand'], 'x-must-understand': true })],
      // Tampering.
      ['payload widened after signing', widened],
      ['signature stripped', `${h}.${p}.`],
      ['signature of another token', `${h}.${p}.${esToken().split('.')[2]}`],
      // Time.
      ['expired beyond the tolerance', rsToken(claims({ exp: now() - 60 }))],
      ['not yet valid', rsToken(claims({ nbf: now() + 120 }))],
      ['no exp', rsToken(claims({ exp: undefined }))],
      ['exp as a string', rsToken(claims({ exp: String(now() + 300) }))],
      // Key ids.
      ['unknown kid', rsToken(claims(), { kid: 'rsa-2' })],
      ['kid with a path', rsToken(claims(), { kid: '../../../../dev/null' })],
      ['kid with SQL', rsToken(claims(), { kid: "' OR '1'='1" })],
      ['huge kid', rsToken(claims(), { kid: 'k'.repeat(6000) })],
      // Issuer, audience, subject, tenant.
      ['wrong issuer', rsToken(claims({ iss: 'https://evil.example' }))],
      ['no issuer', rsToken(claims({ iss: undefined }))],
      ['wrong audience', rsToken(claims({ aud: 'someone-else' }))],
      ['audience list without ours', rsToken(claims({ aud: ['a', 'b'] }))],
      ['no audience', rsToken(claims({ aud: undefined }))],
      ['no subject', rsToken(claims({ sub: undefined }))],
      ['no tenant', rsToken(claims({ tenant: undefined }))],
      // Not JWTs at all.
      ['two segments', `${h}.${p}`],
      ['four segments', `${h}.${p}.${s}.${s}`],
      ['header not JSON', `${b64('not json')}.${p}.${s}`],
      ['over 8 KB', rsToken(claims({ pad: 'x'.repeat(9000) }))],
    ]

    const bodies = new Set<string>()
    for (const [name, token] of forged) {
      for (const headers of [bearer(token), { 'x-api-key': token }]) {
        const response = await complete(headers)
        const text = await response.text()
        assert.equal(response.status, 401, `${name}: ${response.status} ${text}`)
        assert.equal(response.headers.get('www-authenticate'), 'Bearer')
        bodies.add(text)
      }
    }
    assert.deepEqual(
      [...bodies].map((b) => JSON.parse(b)),
      [
        {
          error: {
            message: 'Invalid or missing credentials',
            type: 'invalid_request_error',
            param: null,
            code: 'invalid_api_key',
          },
        },
      ],
    )
    assert.equal(lureHits, 0, 'the gateway never fetched a key from a URL a token named')
    // Neither tokens nor their signatures reach the log.
    const log = gateway.output()
    for (const [name, token] of forged) {
      const signature = token.split('.')[2] ?? ''
      assert.ok(
        !log.includes(token) && (signature.length < 16 || !log.includes(signature)),
        `${name}: the token is not logged`,
      )
    }
  })

  test("a token's model list holds: other models get 403, /v1/models shows only its own", async () => {
    const limited = bearer(rsToken(claims({ models: ['other-model'] })))
    const refused = await complete(limited)
    assert.equal(refused.status, 403)
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'model_not_allowed')
    for (const path of ['/v1/chat/completions', '/generate']) {
      const body =
        path === '/generate'
          ? { model: MODEL, prompt: 'x', max_length: 1 }
          : { model: MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 }
      assert.equal((await postJson(`${gateway.url}${path}`, body, limited)).status, 403, path)
    }
    // /generate without a model would use the backend's first model: a restricted token may not.
    assert.equal((await postJson(`${gateway.url}/generate`, { prompt: 'x', max_length: 1 }, limited)).status, 403)
    const models = (await (await fetch(`${gateway.url}/v1/models`, { headers: limited })).json()) as { data: unknown[] }
    assert.deepEqual(models.data, [])
    assert.equal((await complete(bearer(esToken(claims({ models: [MODEL] }))))).status, 200)
  })

  test('a JWT is not an admin credential', async () => {
    const token = rsToken(claims({ sub: 'admin', admin: true }))
    for (const [method, path] of [
      ['GET', '/admin/keys'],
      ['POST', '/admin/keys'],
      ['DELETE', '/admin/keys/alice'],
      ['GET', '/status'],
      ['GET', '/metrics'],
    ]) {
      const response = await fetch(`${gateway.url}${path}`, {
        method,
        headers: { ...bearer(token), 'content-type': 'application/json' },
        body: method === 'POST' ? '{"tenant":"x"}' : undefined,
      })
      assert.equal(response.status, 401, `${method} ${path}`)
    }
  })

  test('an API key and a JWT subject with the same name do not share rate-limit counters', async () => {
    const key = { authorization: `Bearer ${API_KEY}` }
    const alice = bearer(rsToken(claims({ sub: 'alice', limits: { requestsPerWindow: 2, requestWindowSeconds: 60 } })))
    const statuses = async (headers: Record<string, string>, n: number) => {
      const out = []
      for (let i = 0; i < n; i++) out.push((await complete(headers, greedy({ seed: i }))).status)
      return out
    }
    assert.deepEqual(await statuses(key, 3), [200, 200, 429])
    assert.deepEqual(await statuses(alice, 3), [200, 200, 429], 'the token has its own budget, untouched by the key')
  })

  test('a revoked key is refused at once, even for a response the cache holds', async () => {
    const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
    const created = (await (await postJson(`${gateway.url}/admin/keys`, { tenant: 'revoke-test' }, admin)).json()) as {
      id: string
      key: string
    }
    const body = greedy({ prompt: 'A story to cache', max_tokens: 3 })
    const first = await complete({ authorization: `Bearer ${created.key}` }, body)
    assert.equal(first.status, 200)
    const again = await complete({ authorization: `Bearer ${created.key}` }, body)
    assert.equal(again.headers.get('x-cache'), 'HIT', 'the answer is cached')
    assert.equal(
      (await fetch(`${gateway.url}/admin/keys/${created.id}`, { method: 'DELETE', headers: admin })).status,
      200,
    )
    const revoked = await complete({ authorization: `Bearer ${created.key}` }, body)
    assert.equal(revoked.status, 401, 'authentication comes before the cache')
    assert.equal(revoked.headers.get('x-cache'), null)
  })
})

describe('client credentials never reach the backends', () => {
  let capture: Server
  let seen: IncomingHttpHeaders[] = []
  let fronted: GatewayProcess

  before(async () => {
    // A stand-in node that records what the gateway sends it and answers like a backend.
    capture = createServer((req, res) => {
      if (req.url === '/ready' || req.url === '/health')
        return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}')
      seen.push(req.headers)
      req.resume()
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          id: 'cmpl-1',
          object: 'text_completion',
          created: 1,
          model: MODEL,
          choices: [{ index: 0, text: 'x', logprobs: null, finish_reason: 'length' }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }),
      )
    })
    await new Promise<void>((resolve) => capture.listen(0, '127.0.0.1', resolve))
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-security-'))
    const signingKey = join(dir, 'gateway-signing-key.json')
    const { privateKey } = generateKeyPairSync('ed25519')
    writeFileSync(signingKey, JSON.stringify({ ...privateKey.export({ format: 'jwk' }), kid: 'gw-1', alg: 'EdDSA' }))
    fronted = await startGateway(
      {
        backend: { url: `http://127.0.0.1:${(capture.address() as AddressInfo).port}` },
        auth: { apiKeys: [{ id: 'alice', tenant: 'acme', hash: sha(API_KEY) }] },
        cache: { enabled: false },
      },
      { BACKEND_SIGNING_KEY_FILE: signingKey },
    )
  })
  after(async () => {
    await fronted?.stop()
    await new Promise<void>((resolve) => capture?.close(() => resolve()))
  })

  test("the client's key, cookies and forwarding headers stay at the gateway; the backend gets the gateway's own token", async () => {
    seen = []
    const response = await postJson(`${fronted.url}/v1/completions`, greedy(), {
      authorization: `Bearer ${API_KEY}`,
      'x-api-key': API_KEY,
      cookie: 'session=secret-cookie',
      'proxy-authorization': 'Basic c2VjcmV0',
      'x-forwarded-for': '198.51.100.1',
      'x-request-id': 'trace-me-1',
    })
    assert.equal(response.status, 200, await response.text())
    assert.equal(seen.length, 1)
    const headers = seen[0]
    assert.equal(headers['x-api-key'], undefined)
    assert.equal(headers.cookie, undefined)
    assert.equal(headers['proxy-authorization'], undefined)
    assert.equal(headers['x-forwarded-for'], undefined)
    assert.equal(headers['x-request-id'], 'trace-me-1')
    const token = /^Bearer (.+)$/.exec(headers.authorization ?? '')?.[1]
    assert.ok(token && token !== API_KEY, 'a bearer token of the gateway, not the client key')
    const header = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()) as { alg: string; kid: string }
    assert.deepEqual([header.alg, header.kid], ['EdDSA', 'gw-1'])
    assert.ok(!JSON.stringify(headers).includes(API_KEY))
  })
})
