import assert from 'node:assert/strict'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, test } from 'node:test'
import {
  CompactSign,
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose'
import {
  AuthError,
  type AuthReason,
  createJwtVerifier,
  type JwtVerifier,
  type JwtVerifierOptions,
} from '../../../gateway/auth/jwt.ts'
import { gatewayFileSchema } from '../../../gateway/config/schema.ts'
import type { Principal } from '../../../gateway/types.ts'
import { buildApp, DEFAULT_LIMITS, UNAUTHORIZED_BODY } from './helpers.ts'

const ISSUER = 'https://idp.example.test'
const AUDIENCE = 'switchyard'
const now = () => Math.floor(Date.now() / 1000)
const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')

type Pair = { privateKey: CryptoKey; publicJwk: JWK; spki: string }
let rsa: Pair
let ec: Pair
let stranger: Pair

async function pair(alg: 'RS256' | 'ES256', kid: string): Promise<Pair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  return {
    privateKey,
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
    spki: await exportSPKI(publicKey),
  }
}

type SignOptions = {
  alg?: string
  kid?: string | null
  key?: CryptoKey | Uint8Array
  sub?: string | null
  exp?: number | null
  nbf?: number
  iat?: number | null
  iss?: string | null
  aud?: string | null
}

/** A token that passes every check unless an option breaks one. */
async function sign(claims: JWTPayload = {}, o: SignOptions = {}): Promise<string> {
  const alg = o.alg ?? 'RS256'
  const payload: JWTPayload = { tenant: 'acme', ...claims }
  // Claims given explicitly (even of the wrong type) win over these defaults.
  if (o.sub !== null && !('sub' in claims)) payload.sub = o.sub ?? 'user-1'
  if (o.exp !== null && !('exp' in claims)) payload.exp = o.exp ?? now() + 300
  if (o.nbf !== undefined) payload.nbf = o.nbf
  if (o.iss !== null && !('iss' in claims)) payload.iss = o.iss ?? ISSUER
  if (o.aud !== null && !('aud' in claims)) payload.aud = o.aud ?? AUDIENCE
  const kid = o.kid === null ? undefined : (o.kid ?? (alg === 'ES256' ? 'ec-1' : 'rsa-1'))
  const key = o.key ?? (alg === 'ES256' ? ec.privateKey : rsa.privateKey)
  const jwt = new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) })
  if (o.iat !== null) jwt.setIssuedAt(o.iat)
  return jwt.sign(key)
}

function verifier(overrides: Partial<JwtVerifierOptions> = {}): JwtVerifier {
  return createJwtVerifier({
    keys: [rsa.publicJwk, ec.publicJwk],
    algorithms: ['RS256', 'ES256'],
    issuer: ISSUER,
    audience: AUDIENCE,
    claims: { tenant: 'tenant', models: 'models', limits: 'limits' },
    defaultLimits: DEFAULT_LIMITS,
    ...overrides,
  })
}

async function rejectsWith(v: JwtVerifier, token: string, reason: AuthReason) {
  await assert.rejects(v.verify(token), (error: unknown) => {
    assert.ok(error instanceof AuthError, String(error))
    assert.equal(error.reason, reason, error.message)
    return true
  })
}

before(async () => {
  rsa = await pair('RS256', 'rsa-1')
  ec = await pair('ES256', 'ec-1')
  stranger = await pair('RS256', 'rsa-1')
})

describe('createJwtVerifier: configuration', () => {
  test('refuses none, HS*, unknown algorithms and an empty allow-list', () => {
    for (const algorithms of [['none'], ['HS256'], ['RS256', 'hs512'], ['XX1'], []]) {
      assert.throws(() => verifier({ algorithms }), /algorithm|allow-list/)
    }
  })

  test('refuses private keys, symmetric keys, keys without kid/alg, and alg outside the allow-list', async () => {
    const { privateKey } = await generateKeyPair('RS256', { extractable: true })
    const privateJwk = { ...(await exportJWK(privateKey)), kid: 'p', alg: 'RS256' }
    assert.throws(() => verifier({ keys: [privateJwk] }), /private key material/)
    assert.throws(() => verifier({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 's', alg: 'HS256' }] }), /kty/)
    assert.throws(() => verifier({ keys: [{ ...rsa.publicJwk, kid: undefined }] }), /kid/)
    assert.throws(() => verifier({ keys: [{ ...rsa.publicJwk, alg: undefined }] }), /alg/)
    assert.throws(() => verifier({ keys: [rsa.publicJwk], algorithms: ['ES256'] }), /alg/)
  })

  test('needs exactly one of jwksUrl and keys; jwksUrl must be https unless loopback', () => {
    assert.throws(() => verifier({ keys: undefined }), /exactly one/)
    assert.throws(() => verifier({ jwksUrl: 'https://idp.example.test/jwks' }), /exactly one/)
    assert.throws(() => verifier({ keys: undefined, jwksUrl: 'http://idp.example.test/jwks' }), /https/)
    assert.doesNotThrow(() => verifier({ keys: undefined, jwksUrl: 'http://127.0.0.1:1/jwks' }))
    assert.doesNotThrow(() => verifier({ keys: undefined, jwksUrl: 'https://idp.example.test/jwks' }))
  })
})

describe('JWT verification (static keys)', () => {
  test('valid RS256 and ES256 tokens map claims to the principal', async () => {
    const v = verifier()
    const rs = await v.verify(
      await sign({ models: ['small', 'large'], limits: { requestsPerWindow: 7, maxConcurrent: 1 } }),
    )
    assert.deepEqual(rs, {
      id: 'user-1',
      tenant: 'acme',
      models: ['small', 'large'],
      limits: { ...DEFAULT_LIMITS, requestsPerWindow: 7, maxConcurrent: 1 },
      via: 'jwt',
    } satisfies Principal)
    const es = await v.verify(await sign({ tenant: 'globex' }, { alg: 'ES256', sub: 'svc-9' }))
    assert.deepEqual(es, { id: 'svc-9', tenant: 'globex', limits: DEFAULT_LIMITS, via: 'jwt' } satisfies Principal)
  })

  test('custom claim names; a token without kid still finds its single matching key', async () => {
    const v = verifier({
      claims: { tenant: 'org', models: 'https://switchyard/models', limits: 'https://switchyard/limits' },
    })
    const token = await sign(
      { org: 'initech', 'https://switchyard/models': ['m'], 'https://switchyard/limits': { tokensPerMinute: 50 } },
      { kid: null, alg: 'ES256' },
    )
    assert.deepEqual(await v.verify(token), {
      id: 'user-1',
      tenant: 'initech',
      models: ['m'],
      limits: { ...DEFAULT_LIMITS, tokensPerMinute: 50 },
      via: 'jwt',
    })
  })

  test('several candidate keys and no kid: each is tried', async () => {
    const second = await pair('RS256', 'rsa-2')
    const v = verifier({ keys: [second.publicJwk, rsa.publicJwk] })
    assert.equal((await v.verify(await sign({}, { kid: null }))).id, 'user-1')
    await rejectsWith(v, await sign({}, { kid: null, key: stranger.privateKey }), 'jwt_bad_signature')
  })

  test('alg: none is refused', async () => {
    const unsigned = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ sub: 'admin', tenant: 'acme', exp: now() + 300, iss: ISSUER, aud: AUDIENCE })}.`
    await rejectsWith(verifier(), unsigned, 'jwt_alg_not_allowed')
    const withKid = `${b64url({ alg: 'none', kid: 'rsa-1' })}.${b64url({ sub: 'admin', tenant: 'acme', exp: now() + 300 })}.`
    await rejectsWith(verifier(), withKid, 'jwt_alg_not_allowed')
  })

  test('HS256 signed with the RSA public key as the secret (key confusion) is refused', async () => {
    const secrets = [
      new TextEncoder().encode(rsa.spki),
      Buffer.from(rsa.publicJwk.n!, 'base64url'),
      new TextEncoder().encode(JSON.stringify(rsa.publicJwk)),
    ]
    for (const secret of secrets) {
      await rejectsWith(
        verifier(),
        await sign({}, { alg: 'HS256', key: new Uint8Array(secret) }),
        'jwt_alg_not_allowed',
      )
    }
  })

  test('expired, not yet valid, and clock tolerance', async () => {
    await rejectsWith(verifier(), await sign({}, { exp: now() - 60 }), 'jwt_expired')
    await rejectsWith(verifier(), await sign({}, { nbf: now() + 600 }), 'jwt_not_yet_valid')
    const lenient = verifier({ clockToleranceSeconds: 120 })
    assert.equal((await lenient.verify(await sign({}, { exp: now() - 60 }))).id, 'user-1')
    assert.equal((await lenient.verify(await sign({}, { nbf: now() + 60 }))).id, 'user-1')
  })

  test('expired a few seconds ago is refused under the default tolerance the config gives', async () => {
    const defaults = gatewayFileSchema.parse({ auth: { jwt: { keys: [rsa.publicJwk], algorithms: ['RS256'] } } }).auth
      .jwt!
    assert.ok(defaults.clockToleranceSeconds <= 5 && defaults.maxLifetimeSeconds <= 86_400, 'the documented defaults')
    const v = verifier({
      clockToleranceSeconds: defaults.clockToleranceSeconds,
      maxLifetimeSeconds: defaults.maxLifetimeSeconds,
    })
    await rejectsWith(v, await sign({}, { exp: now() - 10 }), 'jwt_expired')
    assert.equal((await v.verify(await sign({}, { exp: now() - 2 }))).id, 'user-1')
  })

  test('iat in the future beyond the clock tolerance is refused', async () => {
    const v = verifier({ clockToleranceSeconds: 5 })
    await rejectsWith(v, await sign({}, { iat: now() + 60 }), 'jwt_issued_in_future')
    await rejectsWith(
      v,
      await sign({}, { iat: now() + 86_400 * 365, exp: now() + 86_400 * 366 }),
      'jwt_issued_in_future',
    )
    assert.equal((await v.verify(await sign({}, { iat: now() + 2 }))).id, 'user-1')
  })

  test('maxLifetimeSeconds: exp too far from iat, or from now when there is no iat, is refused', async () => {
    const v = verifier({ clockToleranceSeconds: 5, maxLifetimeSeconds: 3600 })
    const year3000 = Math.floor(Date.UTC(3000, 0, 1) / 1000)
    await rejectsWith(v, await sign({}, { exp: year3000 }), 'jwt_lifetime_too_long')
    await rejectsWith(v, await sign({}, { exp: year3000, iat: null }), 'jwt_lifetime_too_long')
    await rejectsWith(v, await sign({}, { exp: now() + 7200, iat: null }), 'jwt_lifetime_too_long')
    // Issued two hours ago, valid for three: its lifetime is over the limit though only one hour is left.
    await rejectsWith(v, await sign({}, { iat: now() - 7200, exp: now() + 3600 }), 'jwt_lifetime_too_long')
    assert.equal((await v.verify(await sign({}, { exp: now() + 3600 }))).id, 'user-1')
    assert.equal((await v.verify(await sign({}, { exp: now() + 3000, iat: null }))).id, 'user-1')
    // Without the option (the verifier alone) nothing bounds the lifetime.
    assert.equal((await verifier().verify(await sign({}, { exp: year3000 }))).id, 'user-1')
    assert.throws(() => verifier({ maxLifetimeSeconds: 0 }), /maxLifetimeSeconds/)
  })

  test('unknown kid, and the right kid with a signature from another key', async () => {
    await rejectsWith(verifier(), await sign({}, { kid: 'rsa-999' }), 'jwt_unknown_key')
    await rejectsWith(verifier(), await sign({}, { key: stranger.privateKey }), 'jwt_bad_signature')
    // kid of the EC key on an RS256 token: no key fits.
    await rejectsWith(verifier(), await sign({}, { kid: 'ec-1' }), 'jwt_unknown_key')
  })

  test('tampered payload fails the signature check', async () => {
    const [h, p, s] = (await sign()).split('.')
    const forged = b64url({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), tenant: 'other' })
    await rejectsWith(verifier(), `${h}.${forged}.${s}`, 'jwt_bad_signature')
  })

  test('wrong issuer and audience; lists of accepted values', async () => {
    await rejectsWith(verifier(), await sign({}, { iss: 'https://evil.example' }), 'jwt_wrong_issuer')
    await rejectsWith(verifier(), await sign({}, { iss: null }), 'jwt_missing_claim')
    await rejectsWith(verifier(), await sign({}, { aud: 'someone-else' }), 'jwt_wrong_audience')
    await rejectsWith(verifier(), await sign({}, { aud: null }), 'jwt_missing_claim')
    const multi = verifier({ issuer: ['https://a', ISSUER], audience: ['x', AUDIENCE] })
    assert.equal((await multi.verify(await sign())).id, 'user-1')
    // Not configured: not checked.
    assert.equal(
      (await verifier({ issuer: undefined, audience: undefined }).verify(await sign({}, { iss: null, aud: null }))).id,
      'user-1',
    )
  })

  test('missing sub, exp or tenant', async () => {
    await rejectsWith(verifier(), await sign({}, { sub: null }), 'jwt_missing_claim')
    await rejectsWith(verifier(), await sign({}, { exp: null }), 'jwt_missing_claim')
    await rejectsWith(verifier(), await sign({ tenant: undefined }), 'jwt_missing_claim')
  })

  test('claims of the wrong type are refused', async () => {
    const v = verifier()
    const bad: JWTPayload[] = [
      { sub: 42 as unknown as string },
      { sub: '' },
      { exp: String(now() + 300) as unknown as number },
      { nbf: 'yesterday' as unknown as number },
      { tenant: 7 },
      { tenant: '' },
      { tenant: ['acme'] },
      { models: 'small' },
      { models: ['small', 3] },
      { models: [''] },
      { limits: [1, 2] },
      { limits: 'lots' },
      { limits: null },
      { limits: { maxConcurrent: '5' } },
      { limits: { requestsPerWindow: -1 } },
      { limits: { tokensPerMinute: 1.5 } },
    ]
    for (const claims of bad) {
      await rejectsWith(v, await sign(claims), 'jwt_bad_claim')
    }
  })

  test('garbage tokens', async () => {
    const v = verifier()
    await rejectsWith(v, 'a.b.c', 'jwt_malformed')
    await rejectsWith(v, 'only.two', 'jwt_malformed')
    await rejectsWith(v, `not-json.${b64url({ sub: 'x' })}.sig`, 'jwt_malformed')
    await rejectsWith(
      v,
      `${b64url({ alg: 'RS256', kid: 'rsa-1' })}.${b64url({ sub: 'x' })}.not-a-signature`,
      'jwt_bad_signature',
    )
    // Correctly signed, but the payload is not a JSON object.
    const notObject = await new CompactSign(new TextEncoder().encode('[1,2]'))
      .setProtectedHeader({ alg: 'RS256', kid: 'rsa-1' })
      .sign(rsa.privateKey)
    await rejectsWith(v, notObject, 'jwt_malformed')
  })
})

describe('JWT through the middleware', () => {
  test('a valid token authenticates; every failure is the same 401', async () => {
    const { app, logger } = buildApp({ jwt: verifier() })
    const ok = await app.request('/v1/whoami', {
      headers: { authorization: `Bearer ${await sign({ models: ['small'] })}` },
    })
    assert.equal(ok.status, 200)
    assert.equal(((await ok.json()) as Principal).via, 'jwt')

    const limited = await sign({ models: ['small'] })
    assert.equal((await app.request('/v1/use/small', { headers: { authorization: `Bearer ${limited}` } })).status, 200)
    assert.equal((await app.request('/v1/use/large', { headers: { authorization: `Bearer ${limited}` } })).status, 403)

    const tokens: [string, string][] = [
      [await sign({}, { exp: now() - 60 }), 'jwt_expired'],
      [await sign({}, { nbf: now() + 600 }), 'jwt_not_yet_valid'],
      [`${b64url({ alg: 'none' })}.${b64url({ sub: 'x', tenant: 'acme', exp: now() + 60 })}.`, 'jwt_alg_not_allowed'],
      [await sign({}, { alg: 'HS256', key: new TextEncoder().encode(rsa.spki) }), 'jwt_alg_not_allowed'],
      [await sign({}, { kid: 'nope' }), 'jwt_unknown_key'],
      [await sign({}, { iss: 'https://evil.example' }), 'jwt_wrong_issuer'],
      [await sign({}, { aud: 'other' }), 'jwt_wrong_audience'],
      [await sign({ tenant: 5 }), 'jwt_bad_claim'],
    ]
    const bodies = new Set<string>()
    for (const [token, reason] of tokens) {
      const res = await app.request('/v1/whoami', { headers: { 'x-api-key': token } })
      assert.equal(res.status, 401)
      assert.equal(res.headers.get('www-authenticate'), 'Bearer')
      const text = await res.text()
      assert.deepEqual(JSON.parse(text), UNAUTHORIZED_BODY)
      bodies.add(text)
      assert.equal(logger.lastReason(), reason)
      assert.ok(!logger.text().includes(token))
    }
    assert.equal(bodies.size, 1)
  })
})

describe('JWT with a remote JWKS (createRemoteJWKSet)', () => {
  let server: Server
  let url: string
  let requests = 0
  let keys: JWK[] = []

  before(async () => {
    server = createServer((req, res) => {
      requests++
      if (req.url !== '/.well-known/jwks.json') {
        res.writeHead(404).end()
        return
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  })
  after(() => new Promise<void>((resolve) => server.close(() => resolve())))

  test('fetches the key set over HTTP and verifies RS256 and ES256 tokens', async () => {
    keys = [rsa.publicJwk, ec.publicJwk]
    const v = verifier({ keys: undefined, jwksUrl: url })
    const before = requests
    assert.deepEqual(await v.verify(await sign({ limits: { maxConcurrent: 3 } })), {
      id: 'user-1',
      tenant: 'acme',
      limits: { ...DEFAULT_LIMITS, maxConcurrent: 3 },
      via: 'jwt',
    })
    assert.equal((await v.verify(await sign({}, { alg: 'ES256' }))).tenant, 'acme')
    assert.equal(requests - before, 1, 'the key set is cached')
    await rejectsWith(v, await sign({}, { kid: 'unknown' }), 'jwt_unknown_key')
    await rejectsWith(
      v,
      await sign({}, { alg: 'HS256', key: new TextEncoder().encode(rsa.spki) }),
      'jwt_alg_not_allowed',
    )
    await rejectsWith(v, await sign({}, { key: stranger.privateKey }), 'jwt_bad_signature')
  })

  test('an unreachable or broken JWKS is a 503, not a 401', async () => {
    const dead = createServer()
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve))
    const deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}/jwks`
    await new Promise<void>((resolve) => dead.close(() => resolve()))

    const v = verifier({ keys: undefined, jwksUrl: deadUrl, jwksTimeoutMs: 2000 })
    await rejectsWith(v, await sign(), 'jwks_unavailable')
    await rejectsWith(
      verifier({ keys: undefined, jwksUrl: url.replace('jwks.json', 'missing') }),
      await sign(),
      'jwks_unavailable',
    )

    const { app, logger } = buildApp({ jwt: v })
    const res = await app.request('/v1/whoami', { headers: { authorization: `Bearer ${await sign()}` } })
    assert.equal(res.status, 503)
    assert.equal(((await res.json()) as { error: { code: string } }).error.code, 'auth_unavailable')
    assert.equal(logger.lastReason(), 'jwks_unavailable')
  })
})
