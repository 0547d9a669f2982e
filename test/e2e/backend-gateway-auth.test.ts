import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { exportJWK, generateKeyPair, type JWK } from 'jose'
import { createBackendTokenSigner } from '../../gateway/proxy/backend-token.ts'
import { type BackendProcess, postJson, runBackendToExit, startBackend } from '../helpers/backend-process.ts'

const scratch = mkdtempSync(join(tmpdir(), 'switchyard-gateway-auth-e2e-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

const completion = { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 4, temperature: 0 }
const UNAUTHORIZED = {
  error: {
    message: 'Invalid or missing gateway token',
    type: 'authentication_error',
    param: null,
    code: 'invalid_gateway_token',
  },
}

async function keyPair(kid: string): Promise<{ privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
  return {
    privateJwk: { ...(await exportJWK(privateKey)), kid, alg: 'EdDSA' },
    publicJwk: { ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' },
  }
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

const count = (text: string, needle: string) => text.split(needle).length - 1

describe('a backend with GATEWAY_VERIFY_KEYS_FILE', () => {
  const keysFile = join(scratch, 'gateway-verify-keys.json')
  let backend: BackendProcess
  let oldToken: string
  let newToken: string
  let newKeyOnly: string

  before(async () => {
    const oldKey = await keyPair('old')
    const newKey = await keyPair('new')
    oldToken = await createBackendTokenSigner({ privateJwk: oldKey.privateJwk }).token()
    newToken = await createBackendTokenSigner({ privateJwk: newKey.privateJwk }).token()
    writeFileSync(keysFile, JSON.stringify({ keys: [oldKey.publicJwk] }))
    newKeyOnly = JSON.stringify({ keys: [newKey.publicJwk] })
    backend = await startBackend({ GATEWAY_VERIFY_KEYS_FILE: keysFile })
  })
  after(() => backend?.stop())

  test('refuses direct calls with 401 in OpenAI shape; serves calls with a gateway token', async () => {
    const direct: Record<string, string>[] = [
      {},
      { authorization: 'Bearer not-a-token' },
      { authorization: `Bearer ${newToken}` },
    ]
    for (const headers of direct) {
      const refused = await postJson(`${backend.url}/v1/completions`, completion, headers)
      assert.equal(refused.status, 401)
      assert.deepEqual(await refused.json(), UNAUTHORIZED)
    }
    assert.equal((await fetch(`${backend.url}/v1/models`)).status, 401)

    const served = await postJson(`${backend.url}/v1/completions`, completion, { authorization: `Bearer ${oldToken}` })
    assert.equal(served.status, 200)
    const body = (await served.json()) as { choices: { text: string }[]; usage: { completion_tokens: number } }
    assert.equal(body.usage.completion_tokens, 4)
  })

  test('/health, /ready and /metrics answer without a token', async () => {
    for (const path of ['/health', '/ready', '/metrics'])
      assert.equal((await fetch(`${backend.url}${path}`)).status, 200, path)
  })

  test('says so at start, logs refusals by reason, never logs a token', () => {
    const output = backend.output()
    assert.match(output, /gateway authentication on/)
    assert.match(output, /"kids":\["old"\]/)
    assert.match(output, /"reason":"missing_token"/)
    assert.doesNotMatch(output, /GATEWAY_VERIFY_KEYS_FILE is not set/)
    for (const token of [oldToken, newToken])
      assert.ok(!output.includes(token.split('.')[2]), 'a token signature appears in the log')
  })

  test('SIGHUP reloads the keys: only the new key is accepted', async () => {
    const reloads = count(backend.output(), 'gateway verify keys reloaded')
    writeFileSync(keysFile, newKeyOnly)
    backend.child.kill('SIGHUP')
    await waitFor(() => count(backend.output(), 'gateway verify keys reloaded') > reloads, 'the reload log line')
    assert.match(backend.output(), /"kids":\["new"\][^\n]*gateway verify keys reloaded/)
    assert.equal(
      (await postJson(`${backend.url}/v1/completions`, completion, { authorization: `Bearer ${newToken}` })).status,
      200,
    )
    assert.equal(
      (await postJson(`${backend.url}/v1/completions`, completion, { authorization: `Bearer ${oldToken}` })).status,
      401,
    )
  })

  test('an invalid file on SIGHUP keeps the keys in force', async () => {
    writeFileSync(keysFile, '{"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "x", "alg": "HS256"}]}')
    backend.child.kill('SIGHUP')
    await waitFor(() => backend.output().includes('gateway verify keys NOT reloaded'), 'the reload error line')
    assert.match(
      backend.output(),
      /"kids":\["new"\][^\n]*"error":"[^"]*gateway-verify-keys\.json: keys\[0\][^\n]*NOT reloaded/,
    )
    assert.equal(
      (await postJson(`${backend.url}/v1/completions`, completion, { authorization: `Bearer ${newToken}` })).status,
      200,
    )
    assert.equal(backend.child.exitCode, null)
  })
})

describe('backend start without or with a bad GATEWAY_VERIFY_KEYS_FILE', () => {
  test('without it, the start log warns that the node is open', async () => {
    const backend = await startBackend({ GATEWAY_VERIFY_KEYS_FILE: '' }, { waitReady: false })
    try {
      assert.match(
        backend.output(),
        /"level":40[^\n]*GATEWAY_VERIFY_KEYS_FILE is not set: this node accepts requests from anyone \(local development only\)/,
      )
    } finally {
      await backend.stop()
    }
  })

  test('an unreadable or invalid key file exits 2 with one line', async () => {
    const missing = await runBackendToExit({ GATEWAY_VERIFY_KEYS_FILE: join(scratch, 'nope.json') })
    assert.equal(missing.code, 2)
    assert.match(
      missing.output,
      /^switchyard backend: invalid configuration: GATEWAY_VERIFY_KEYS_FILE: cannot read .*nope\.json \(ENOENT\)\n$/,
    )
    const invalid = join(scratch, 'invalid.json')
    writeFileSync(invalid, '{"keys": []}')
    const bad = await runBackendToExit({ GATEWAY_VERIFY_KEYS_FILE: invalid })
    assert.equal(bad.code, 2)
    assert.match(
      bad.output,
      /^switchyard backend: invalid configuration: GATEWAY_VERIFY_KEYS_FILE: .*invalid\.json: "keys" is empty[^\n]*\n$/,
    )
  })
})
