import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type CryptoKey, exportJWK, exportSPKI, generateKeyPair, type JWK, type JWTPayload, SignJWT } from 'jose'
import { createBackendApp } from '../../../backend/api/app.ts'
import {
  createGatewayTokenVerifier,
  GatewayTokenError,
  type GatewayTokenRefusal,
  gatewayAuth,
  openVerifyKeyFile,
  parseVerifyKeys,
  type VerifyKeySet,
} from '../../../backend/api/gateway-auth.ts'
import { BackendMetrics } from '../../../backend/metrics.ts'
import { createBackendTokenSigner } from '../../../gateway/proxy/backend-token.ts'

const AUDIENCE = 'switchyard-backend'
const now = () => Math.floor(Date.now() / 1000)
const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
const scratch = mkdtempSync(join(tmpdir(), 'switchyard-gateway-auth-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

type Pair = { privateKey: CryptoKey; privateJwk: JWK; publicJwk: JWK; spki: string }
let ed: Pair
let ec: Pair
let stranger: Pair
let keys: VerifyKeySet

async function pair(alg: 'EdDSA' | 'ES256', kid: string): Promise<Pair> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  return {
    privateKey,
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' },
    spki: await exportSPKI(publicKey),
  }
}

const jwksText = (...pairs: Pair[]) => JSON.stringify({ keys: pairs.map((p) => p.publicJwk) })

before(async () => {
  ed = await pair('EdDSA', 'ed-1')
  ec = await pair('ES256', 'ec-1')
  stranger = await pair('EdDSA', 'ed-1')
  keys = await parseVerifyKeys(jwksText(ed, ec))
})

type SignOptions = {
  alg?: string
  kid?: string | null
  key?: CryptoKey | Uint8Array
  iat?: number | null
  exp?: number | null
  nbf?: number
  iss?: string
  aud?: string
}

/** A token that passes every check unless an option breaks one. */
function sign(o: SignOptions = {}): Promise<string> {
  const alg = o.alg ?? 'EdDSA'
  const iat = o.iat === undefined ? now() : o.iat
  const payload: JWTPayload = { iss: o.iss ?? 'switchyard-gateway', aud: o.aud ?? AUDIENCE }
  if (iat !== null) payload.iat = iat
  if (o.exp !== null) payload.exp = o.exp ?? (iat ?? now()) + 60
  if (o.nbf !== undefined) payload.nbf = o.nbf
  const kid = o.kid === null ? undefined : (o.kid ?? (alg === 'ES256' ? 'ec-1' : 'ed-1'))
  const key = o.key ?? (alg === 'ES256' ? ec.privateKey : ed.privateKey)
  return new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) }).sign(key)
}

const verify = createGatewayTokenVerifier({ keys: () => keys, audience: AUDIENCE })

async function refused(token: string, reason: GatewayTokenRefusal) {
  await assert.rejects(verify(token), (error: unknown) => {
    assert.ok(error instanceof GatewayTokenError, String(error))
    assert.equal(error.reason, reason)
    return true
  })
}

describe('gateway token verifier', () => {
  test('accepts valid EdDSA and ES256 tokens, and tokens from the gateway signer', async () => {
    assert.equal((await verify(await sign())).iss, 'switchyard-gateway')
    assert.equal((await verify(await sign({ alg: 'ES256' }))).aud, AUDIENCE)
    for (const p of [ed, ec]) {
      const signer = createBackendTokenSigner({ privateJwk: p.privateJwk })
      assert.equal((await verify(await signer.token())).iss, 'switchyard-gateway')
    }
  })

  test('expired, not yet valid, issued in the future', async () => {
    await refused(await sign({ iat: now() - 120, exp: now() - 60 }), 'expired')
    await refused(await sign({ nbf: now() + 60 }), 'not_yet_valid')
    await refused(await sign({ iat: now() + 60, exp: now() + 120 }), 'issued_in_future')
  })

  test('a small clock skew is tolerated', async () => {
    assert.ok(await verify(await sign({ iat: now() - 62, exp: now() - 2 })))
    assert.ok(await verify(await sign({ iat: now() + 2, exp: now() + 62 })))
  })

  test('wrong audience, wrong issuer', async () => {
    await refused(await sign({ aud: 'someone-else' }), 'wrong_audience')
    await refused(await sign({ iss: 'https://idp.example.test' }), 'wrong_issuer')
  })

  test('exp and iat are required', async () => {
    await refused(await sign({ exp: null }), 'missing_claim')
    await refused(await sign({ iat: null }), 'missing_claim')
  })

  test('lifetime over 300 s is refused, 300 s is accepted', async () => {
    const t = now()
    await refused(await sign({ iat: t, exp: t + 301 }), 'lifetime_too_long')
    await refused(await sign({ iat: t, exp: t + 86_400 }), 'lifetime_too_long')
    assert.ok(await verify(await sign({ iat: t, exp: t + 300 })))
  })

  test('alg none is refused, with or without a signature', async () => {
    const unsigned = `${b64url({ alg: 'none', kid: 'ed-1' })}.${b64url({ iss: 'switchyard-gateway', aud: AUDIENCE, iat: now(), exp: now() + 60 })}`
    await refused(`${unsigned}.`, 'alg_not_allowed')
    await refused(`${unsigned}.c2lnbmF0dXJl`, 'alg_not_allowed')
  })

  test('HS256 signed with the public key as the secret (key confusion) is refused', async () => {
    const secrets = [
      new TextEncoder().encode(ed.spki),
      Buffer.from(ed.publicJwk.x!, 'base64url'),
      new TextEncoder().encode(JSON.stringify(ed.publicJwk)),
    ]
    for (const secret of secrets)
      await refused(await sign({ alg: 'HS256', key: new Uint8Array(secret) }), 'alg_not_allowed')
  })

  test('other asymmetric algorithms are refused', async () => {
    const { privateKey } = await generateKeyPair('RS256')
    await refused(await sign({ alg: 'RS256', key: privateKey, kid: 'ed-1' }), 'alg_not_allowed')
  })

  test('unknown kid, missing kid, a kid of the other algorithm, a signature by another key', async () => {
    await refused(await sign({ kid: 'nope' }), 'unknown_kid')
    await refused(await sign({ kid: null }), 'missing_kid')
    await refused(await sign({ alg: 'ES256', kid: 'ed-1' }), 'unknown_kid')
    await refused(await sign({ key: stranger.privateKey }), 'bad_signature')
  })

  test('garbage and tampered tokens', async () => {
    for (const garbage of ['', 'abc', 'abc.def.ghi', 'a.b', '...']) await refused(garbage, 'malformed')
    const [header, , signature] = (await sign()).split('.')
    const forged = b64url({ iss: 'switchyard-gateway', aud: AUDIENCE, iat: now(), exp: now() + 60, admin: true })
    await refused(`${header}.${forged}.${signature}`, 'bad_signature')
  })
})

describe('verify keys file', () => {
  test('parses a JWKS of EdDSA and ES256 public keys', async () => {
    assert.deepEqual(keys.kids, ['ed-1', 'ec-1'])
  })

  test('refuses anything else with one line naming the problem', async () => {
    const cases: [string, RegExp][] = [
      ['{', /not valid JSON/],
      ['[]', /JWKS object/],
      ['{"keys":[]}', /empty/],
      [JSON.stringify({ keys: [{ ...ed.publicJwk, kid: undefined }] }), /keys\[0\]: "kid" is required/],
      [
        JSON.stringify({ keys: [ed.publicJwk, { ...ec.publicJwk, kid: 'ed-1' }] }),
        /keys\[1\]: kid "ed-1" appears twice/,
      ],
      [JSON.stringify({ keys: [{ ...ed.publicJwk, alg: undefined }] }), /"alg" must be one of EdDSA, ES256/],
      [JSON.stringify({ keys: [{ ...ed.publicJwk, alg: 'RS256' }] }), /"alg" must be one of/],
      [JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 's', alg: 'HS256' }] }), /"alg" must be one of/],
      [JSON.stringify({ keys: [{ ...ed.publicJwk, alg: 'ES256' }] }), /alg ES256 needs kty EC and crv P-256/],
      [JSON.stringify({ keys: [{ ...ed.privateJwk }] }), /private key material \("d"\)/],
      [JSON.stringify({ keys: [{ ...ed.publicJwk, use: 'enc' }] }), /"use" must be "sig"/],
      [JSON.stringify({ keys: [{ ...ec.publicJwk, y: ec.publicJwk.x }] }), /not a usable ES256 public key/],
    ]
    for (const [text, message] of cases) await assert.rejects(parseVerifyKeys(text), message, text)
  })

  test('an unreadable or invalid file fails to open, naming the path', async () => {
    await assert.rejects(openVerifyKeyFile(join(scratch, 'missing.json')), /cannot read .*missing\.json \(ENOENT\)/)
    const bad = join(scratch, 'bad.json')
    writeFileSync(bad, '{"keys":[]}')
    await assert.rejects(openVerifyKeyFile(bad), /bad\.json: "keys" is empty/)
  })

  test('reload swaps the keys; an invalid new file keeps the old ones', async () => {
    const path = join(scratch, 'reload.json')
    writeFileSync(path, jwksText(ed))
    const errors: string[] = []
    const file = await openVerifyKeyFile(path, {
      checkIntervalMs: 0,
      onReloadError: (error, kept) => errors.push(`${error.message} / kept ${kept.kids}`),
    })
    const check = createGatewayTokenVerifier({ keys: file.current, audience: AUDIENCE })
    const oldToken = await sign()
    const newToken = await sign({ alg: 'ES256' })
    assert.ok(await check(oldToken))
    await assert.rejects(check(newToken))

    writeFileSync(path, jwksText(ec))
    assert.equal(await file.reload(), true)
    assert.deepEqual(file.current().kids, ['ec-1'])
    assert.ok(await check(newToken))
    await assert.rejects(check(oldToken), (e: GatewayTokenError) => e.reason === 'unknown_kid')

    writeFileSync(path, '{"keys": [')
    assert.equal(await file.reload(), false)
    assert.deepEqual(file.current().kids, ['ec-1'])
    assert.ok(await check(newToken))
    assert.equal(errors.length, 1)
    assert.match(errors[0], /reload\.json: not valid JSON \/ kept ec-1/)
    file.close()
  })

  test('a changed file is picked up by the periodic check, a bad version reported once', async () => {
    const path = join(scratch, 'watched.json')
    writeFileSync(path, jwksText(ed))
    const reloads: string[][] = []
    let failures = 0
    const file = await openVerifyKeyFile(path, {
      checkIntervalMs: 10,
      onReload: (k) => reloads.push(k.kids),
      onReloadError: () => failures++,
    })
    try {
      await new Promise((r) => setTimeout(r, 60))
      assert.equal(reloads.length, 0, 'an unchanged file is not re-read')
      writeFileSync(path, jwksText(ed, ec))
      const deadline = Date.now() + 2000
      while (reloads.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      assert.deepEqual(reloads, [['ed-1', 'ec-1']])
      writeFileSync(path, 'not json at all')
      while (failures === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
      await new Promise((r) => setTimeout(r, 60))
      assert.equal(failures, 1, 'the same bad version is not re-read every check')
      assert.deepEqual(file.current().kids, ['ed-1', 'ec-1'])
    } finally {
      file.close()
    }
  })
})

describe('gateway auth middleware on the backend app', () => {
  const refusals: GatewayTokenRefusal[] = []
  const metrics = new BackendMetrics({ defaultMetrics: false })
  const app = createBackendApp({
    models: new Map(),
    metrics,
    maxQueue: 1,
    maxGrammarChars: 65_536,
    requestTimeoutMs: 1000,
    retryAfterSeconds: 1,
    maxBodyBytes: 1 << 20,
    isDraining: () => false,
    isReady: () => true,
    engineStallTimeoutMs: 60_000,
    gatewayAuth: gatewayAuth({ keys: () => keys, audience: AUDIENCE, onRefused: (reason) => refusals.push(reason) }),
  })
  const request = (path: string, authorization?: string, init: RequestInit = {}) =>
    app.request(path, {
      ...init,
      headers: {
        ...(authorization === undefined ? {} : { authorization }),
        ...(init.headers as Record<string, string>),
      },
    })
  const completion = {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'none', prompt: 'hi' }),
  }

  test('refuses every kind of bad credential with the same 401 body', async () => {
    const expired = await sign({ iat: now() - 120, exp: now() - 60 })
    const credentials = [
      undefined,
      '',
      'Basic dXNlcjpwYXNz',
      'Bearer',
      'Bearer garbage',
      `Bearer ${expired}`,
      `Bearer ${await sign({ aud: 'x' })}`,
      `bearer ${'a'.repeat(5000)}.b.c`,
    ]
    refusals.length = 0
    for (const authorization of credentials) {
      const response = await request('/v1/completions', authorization, completion)
      assert.equal(response.status, 401, String(authorization))
      assert.equal(response.headers.get('www-authenticate'), 'Bearer realm="switchyard-backend"')
      assert.deepEqual(await response.json(), {
        error: {
          message: 'Invalid or missing gateway token',
          type: 'authentication_error',
          param: null,
          code: 'invalid_gateway_token',
        },
      })
    }
    assert.deepEqual(refusals, [
      'missing_token',
      'malformed',
      'malformed',
      'malformed',
      'malformed',
      'expired',
      'wrong_audience',
      'malformed',
    ])
  })

  test('a valid token reaches the routes', async () => {
    const token = await sign()
    const models = await request('/v1/models', `Bearer ${token}`)
    assert.equal(models.status, 200)
    // Past authentication, the route itself answers (no such model here).
    const response = await request('/v1/completions', `Bearer ${token}`, completion)
    assert.equal(response.status, 404)
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'model_not_found')
  })

  test('/health, /live, /ready and /metrics need no token; every other path does', async () => {
    for (const path of ['/health', '/live', '/ready', '/metrics']) assert.equal((await request(path)).status, 200, path)
    for (const path of ['/model/info', '/v1/models', '/health/', '/nowhere', '/metrics/../v1/models'])
      assert.equal((await request(path)).status, 401, path)
  })

  test('refusals are counted in the request metrics', async () => {
    const text = await (await request('/metrics')).text()
    assert.match(text, /switchyard_backend_requests_total\{route="unauthenticated",status="401"\} [1-9]/)
  })
})
