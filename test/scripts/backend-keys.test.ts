import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, describe, test } from 'node:test'
import { createGatewayTokenVerifier, readVerifyKeys } from '../../backend/api/gateway-auth.ts'
import { loadPrivateJwk } from '../../gateway/node/signing-key.ts'
import { createBackendTokenSigner } from '../../gateway/proxy/backend-token.ts'
import { REPO_ROOT } from '../helpers/paths.ts'

const scratch = mkdtempSync(join(tmpdir(), 'switchyard-backend-keys-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

function run(...args: string[]) {
  const result = spawnSync(
    process.execPath,
    ['--import', 'tsx', resolve(REPO_ROOT, 'scripts/backend-keys.ts'), ...args],
    { cwd: REPO_ROOT, encoding: 'utf8' },
  )
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

const signingFile = (dir: string) => join(dir, 'gateway-signing-key.json')
const verifyFile = (dir: string) => join(dir, 'gateway-verify-keys.json')
const kidsIn = (dir: string) =>
  (JSON.parse(readFileSync(verifyFile(dir), 'utf8')) as { keys: { kid: string }[] }).keys.map((k) => k.kid)

/** A token from the signing key in `dir`, checked against the verify keys in `dir`. */
async function signsAndVerifies(dir: string) {
  const keys = await readVerifyKeys(verifyFile(dir))
  const token = await createBackendTokenSigner({ privateJwk: await loadPrivateJwk(signingFile(dir)) }).token()
  return createGatewayTokenVerifier({ keys: () => keys, audience: 'switchyard-backend' })(token)
}

describe('scripts/backend-keys.ts', () => {
  test('generates a working key pair, then rotates keeping the old public key, then retires it', async () => {
    const dir = mkdtempSync(join(scratch, 'rotate-'))
    const first = run(dir)
    assert.equal(first.code, 0, first.stderr)
    assert.equal(statSync(signingFile(dir)).mode & 0o777, 0o600)
    const oldKid = (await loadPrivateJwk(signingFile(dir))).kid
    assert.equal(JSON.parse(readFileSync(signingFile(dir), 'utf8')).alg, 'EdDSA')
    assert.deepEqual(kidsIn(dir), [oldKid])
    await signsAndVerifies(dir)

    const second = run(dir, '--alg', 'ES256')
    assert.equal(second.code, 0, second.stderr)
    const newKid = (await loadPrivateJwk(signingFile(dir))).kid
    assert.notEqual(newKid, oldKid)
    assert.equal(statSync(signingFile(dir)).mode & 0o777, 0o600)
    assert.deepEqual(kidsIn(dir), [oldKid, newKid])
    assert.match(second.stdout, new RegExp(`--remove ${oldKid}`))
    await signsAndVerifies(dir)

    const current = run(dir, '--remove', newKid)
    assert.equal(current.code, 1)
    assert.match(current.stderr, /is the current signing key/)
    const unknown = run(dir, '--remove', 'nope')
    assert.equal(unknown.code, 1)
    assert.match(unknown.stderr, /has no key "nope"/)

    const removed = run(dir, '--remove', oldKid)
    assert.equal(removed.code, 0, removed.stderr)
    assert.deepEqual(kidsIn(dir), [newKid])
    await signsAndVerifies(dir)
  })

  test('an invalid existing verify file is left alone', () => {
    const dir = mkdtempSync(join(scratch, 'invalid-'))
    writeFileSync(verifyFile(dir), '{"keys": "oops"}')
    const result = run(dir)
    assert.equal(result.code, 1)
    assert.match(result.stderr, /gateway-verify-keys\.json: .*left unchanged/)
    assert.equal(readFileSync(verifyFile(dir), 'utf8'), '{"keys": "oops"}')
    assert.throws(() => statSync(signingFile(dir)))
  })

  test('bad arguments print the usage and exit 2', () => {
    for (const args of [[], [scratch, '--alg', 'RS256'], [scratch, '--bogus']]) {
      const result = run(...args)
      assert.equal(result.code, 2, args.join(' '))
      assert.match(result.stderr, /Usage:/)
    }
  })
})
