import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, type JWK } from 'jose'
import { createGatewayTokenVerifier, parseVerifyKeys } from '../../../backend/api/gateway-auth.ts'
import { loadPrivateJwk } from '../../../gateway/node/signing-key.ts'
import { createBackendTokenSigner, parsePrivateJwk } from '../../../gateway/proxy/backend-token.ts'

const scratch = mkdtempSync(join(tmpdir(), 'switchyard-backend-token-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

let edPrivate: JWK
let edPublic: JWK
let ecPrivate: JWK
let ecPublic: JWK

before(async () => {
  const ed = await generateKeyPair('EdDSA', { extractable: true })
  edPrivate = { ...(await exportJWK(ed.privateKey)), kid: 'ed-1', alg: 'EdDSA' }
  edPublic = { ...(await exportJWK(ed.publicKey)), kid: 'ed-1', alg: 'EdDSA' }
  const ec = await generateKeyPair('ES256', { extractable: true })
  // No alg: the curve decides it.
  ecPrivate = { ...(await exportJWK(ec.privateKey)), kid: 'ec-1' }
  ecPublic = { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256' }
})

describe('backend token signer', () => {
  test('signs tokens the backend verifier accepts, with kid, alg, iss, aud, iat and exp', async () => {
    const keys = await parseVerifyKeys(JSON.stringify({ keys: [edPublic, ecPublic] }))
    const verify = createGatewayTokenVerifier({ keys: () => keys, audience: 'switchyard-backend' })
    for (const [privateJwk, alg] of [
      [edPrivate, 'EdDSA'],
      [ecPrivate, 'ES256'],
    ] as const) {
      const token = await createBackendTokenSigner({ privateJwk, lifetimeSeconds: 90 }).token()
      assert.deepEqual(decodeProtectedHeader(token), { alg, kid: privateJwk.kid, typ: 'JWT' })
      const claims = await verify(token)
      assert.equal(claims.iss, 'switchyard-gateway')
      assert.equal(claims.aud, 'switchyard-backend')
      assert.equal(claims.exp! - claims.iat!, 90)
      assert.ok(Math.abs(claims.iat! - Date.now() / 1000) < 5)
    }
  })

  test('issuer and audience are configurable (and checked by the backend)', async () => {
    const keys = await parseVerifyKeys(JSON.stringify({ keys: [edPublic] }))
    const token = await createBackendTokenSigner({ privateJwk: edPrivate, audience: 'eu-backends' }).token()
    assert.equal(decodeJwt(token).aud, 'eu-backends')
    await assert.rejects(createGatewayTokenVerifier({ keys: () => keys, audience: 'switchyard-backend' })(token))
    assert.ok(await createGatewayTokenVerifier({ keys: () => keys, audience: 'eu-backends' })(token))
  })

  test('caches the token and re-signs once less than half its lifetime is left', async () => {
    let clock = 1_700_000_000_000
    const signer = createBackendTokenSigner({ privateJwk: edPrivate, lifetimeSeconds: 60, now: () => clock })
    const first = await signer.token()
    // Cached: returned synchronously, the same string.
    assert.equal(signer.token(), first)
    clock += 29_999
    assert.equal(signer.token(), first)
    clock += 1
    const renewing = signer.token()
    assert.ok(renewing instanceof Promise, 'at half-life the token is re-signed')
    // Callers during a renewal share it.
    assert.equal(signer.token(), renewing)
    const second = await renewing
    assert.notEqual(second, first)
    assert.equal(decodeJwt(second).iat, decodeJwt(first).iat! + 30)
    assert.equal(signer.token(), second)
  })

  test('refuses lifetimes the backends would refuse, or too short to cache', () => {
    for (const lifetimeSeconds of [0, 9, 301, 3600, 1.5, Number.NaN]) {
      assert.throws(
        () => createBackendTokenSigner({ privateJwk: edPrivate, lifetimeSeconds }),
        /lifetimeSeconds/,
        String(lifetimeSeconds),
      )
    }
    assert.doesNotThrow(() => createBackendTokenSigner({ privateJwk: edPrivate, lifetimeSeconds: 300 }))
  })
})

describe('signing key validation', () => {
  test('accepts private Ed25519 and P-256 keys, taking alg from the curve', () => {
    assert.equal(parsePrivateJwk(edPrivate).alg, 'EdDSA')
    assert.equal(parsePrivateJwk(ecPrivate).alg, 'ES256')
  })

  test('refuses public keys, missing kid, other key types, and a mismatched alg', async () => {
    const rsa = await generateKeyPair('RS256', { extractable: true })
    const p384 = await generateKeyPair('ES384', { extractable: true })
    const cases: [unknown, RegExp][] = [
      [null, /not a JWK/],
      [[edPrivate], /not a JWK/],
      [edPublic, /is a public key/],
      [{ ...edPrivate, kid: undefined }, /no "kid"/],
      [{ ...edPrivate, kid: '' }, /no "kid"/],
      [{ ...(await exportJWK(rsa.privateKey)), kid: 'r' }, /EC P-256 or OKP Ed25519/],
      [{ ...(await exportJWK(p384.privateKey)), kid: 'p' }, /EC P-256 or OKP Ed25519/],
      [{ kty: 'oct', k: 'c2VjcmV0', kid: 's' }, /EC P-256 or OKP Ed25519/],
      [{ ...edPrivate, alg: 'ES256' }, /alg ES256 does not fit OKP Ed25519 \(use EdDSA\)/],
    ]
    for (const [value, message] of cases) assert.throws(() => parsePrivateJwk(value), message)
    assert.throws(() => createBackendTokenSigner({ privateJwk: edPublic }), /is a public key/)
  })

  test('loadPrivateJwk reads and checks a key file, naming the path on errors', async () => {
    const good = join(scratch, 'good.json')
    writeFileSync(good, JSON.stringify(edPrivate))
    assert.equal((await loadPrivateJwk(good)).kid, 'ed-1')
    await assert.rejects(loadPrivateJwk(join(scratch, 'missing.json')), /cannot read .*missing\.json \(ENOENT\)/)
    const notJson = join(scratch, 'not-json.json')
    writeFileSync(notJson, 'kid: x')
    await assert.rejects(loadPrivateJwk(notJson), /not-json\.json: not valid JSON/)
    const publicOnly = join(scratch, 'public.json')
    writeFileSync(publicOnly, JSON.stringify(edPublic))
    await assert.rejects(loadPrivateJwk(publicOnly), /public\.json: .*is a public key/)
    // Right shape, unusable key material: caught at load, not on the first request.
    const broken = join(scratch, 'broken.json')
    writeFileSync(broken, JSON.stringify({ ...edPrivate, d: 'AAAA' }))
    await assert.rejects(loadPrivateJwk(broken), /broken\.json: /)
  })
})
