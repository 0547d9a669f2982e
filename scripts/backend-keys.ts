/**
 * Makes and rotates the key pair the gateway signs backend tokens with.
 *
 *   DIR/gateway-signing-key.json   private JWK for the gateway (BACKEND_SIGNING_KEY_FILE), mode 0600
 *   DIR/gateway-verify-keys.json   JWKS of public keys for every backend (GATEWAY_VERIFY_KEYS_FILE)
 *
 * A new key pair replaces the signing key and is added to the verify keys, which keep the older
 * public keys so backends accept both while the gateway switches over.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose'
import { parseVerifyKeys } from '../backend/api/gateway-auth.ts'
import { loadPrivateJwk } from '../gateway/node/signing-key.ts'
import { errorMessage } from '../lib/error-message.ts'

const SIGNING_FILE = 'gateway-signing-key.json'
const VERIFY_FILE = 'gateway-verify-keys.json'

const USAGE = `Usage:
  node --import tsx scripts/backend-keys.ts DIR [--alg EdDSA|ES256]
      New key pair (DIR is created if missing): writes DIR/${SIGNING_FILE} (private, for the gateway) and adds its
      public key to DIR/${VERIFY_FILE} (for the backends), keeping the keys already there.
  node --import tsx scripts/backend-keys.ts DIR --remove KID
      Retires KID from DIR/${VERIFY_FILE} (once no gateway signs with it any more).`

class UsageError extends Error {}

/** Writes through a temporary file and a rename, so a backend re-reading the file never sees half of it. */
function writeAtomically(path: string, text: string, mode: number): void {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`
  writeFileSync(temporary, text, { mode, flag: 'wx' })
  renameSync(temporary, path)
}

async function readVerifyFile(path: string): Promise<JWK[]> {
  if (!existsSync(path)) return []
  try {
    return (await parseVerifyKeys(readFileSync(path, 'utf8'))).keys
  } catch (error) {
    throw new Error(`${path}: ${errorMessage(error)} (left unchanged)`)
  }
}

function writeVerifyFile(path: string, keys: JWK[]): void {
  writeAtomically(path, `${JSON.stringify({ keys }, null, 2)}\n`, 0o644)
}

async function generate(dir: string, alg: 'EdDSA' | 'ES256'): Promise<void> {
  const verifyPath = join(dir, VERIFY_FILE)
  const signingPath = join(dir, SIGNING_FILE)
  const existing = await readVerifyFile(verifyPath)
  const previous = existsSync(signingPath) ? await loadPrivateJwk(signingPath) : undefined

  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true })
  const publicJwk = await exportJWK(publicKey)
  // Date for people reading the file, thumbprint for uniqueness.
  const kid = `gateway-${new Date().toISOString().slice(0, 10)}-${(await calculateJwkThumbprint(publicJwk)).slice(0, 12)}`
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg, use: 'sig' }

  // Public key first: a signing key whose public key is nowhere would only produce refused tokens.
  writeVerifyFile(verifyPath, [...existing, { ...publicJwk, kid, alg, use: 'sig' }])
  writeAtomically(signingPath, `${JSON.stringify(privateJwk, null, 2)}\n`, 0o600)

  console.log(`new ${alg} key ${kid}`)
  console.log(`  ${signingPath}: private key (mode 0600)${previous ? `, replaced ${previous.kid}` : ''}`)
  console.log(`  ${verifyPath}: ${[...existing.map((k) => k.kid), kid].join(', ')}`)
  if (previous) {
    console.log(
      'Rotation: deploy the verify keys to every backend (GATEWAY_VERIFY_KEYS_FILE) first, then the signing key',
    )
    console.log('to the gateway (BACKEND_SIGNING_KEY_FILE); once every gateway signs with the new key and 5 minutes')
    console.log(`(the longest token lifetime) have passed, retire the old key with --remove ${previous.kid}.`)
  } else {
    console.log(
      'Give the verify keys to every backend (GATEWAY_VERIFY_KEYS_FILE) and the signing key to the gateway (BACKEND_SIGNING_KEY_FILE).',
    )
  }
}

async function remove(dir: string, kid: string): Promise<void> {
  const verifyPath = join(dir, VERIFY_FILE)
  if (!existsSync(verifyPath)) throw new Error(`${verifyPath} does not exist`)
  const keys = await readVerifyFile(verifyPath)
  if (!keys.some((k) => k.kid === kid))
    throw new Error(`${verifyPath} has no key "${kid}" (it has ${keys.map((k) => k.kid).join(', ')})`)
  const signingPath = join(dir, SIGNING_FILE)
  if (existsSync(signingPath) && (await loadPrivateJwk(signingPath)).kid === kid) {
    throw new Error(`"${kid}" is the current signing key in ${signingPath}: generate a new key first`)
  }
  const rest = keys.filter((k) => k.kid !== kid)
  // An empty key set would stop every backend from starting (and be refused on reload).
  if (rest.length === 0) throw new Error(`"${kid}" is the only key in ${verifyPath}; backends need at least one`)
  writeVerifyFile(verifyPath, rest)
  console.log(`removed ${kid}; ${verifyPath}: ${rest.map((k) => k.kid).join(', ')}`)
}

const OPTIONS = { alg: { type: 'string' }, remove: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const

function parseArgv(argv: string[]) {
  try {
    return parseArgs({ args: argv, allowPositionals: true, options: OPTIONS })
  } catch (error) {
    throw new UsageError(errorMessage(error))
  }
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgv(argv)
  if (values.help) {
    console.log(USAGE)
    return
  }
  if (positionals.length !== 1)
    throw new UsageError(positionals.length === 0 ? 'DIR is missing' : `one DIR expected, got ${positionals.join(' ')}`)
  const dir = positionals[0]
  if (values.remove !== undefined) {
    if (values.alg !== undefined) throw new UsageError('--alg and --remove do not go together')
    if (values.remove === '') throw new UsageError('--remove needs a KID')
    if (!existsSync(dir)) throw new UsageError(`${dir} does not exist`)
    return remove(dir, values.remove)
  }
  // A first key pair goes into a new folder: private keys get one only the owner can open.
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 })
  const alg = values.alg ?? 'EdDSA'
  if (alg !== 'EdDSA' && alg !== 'ES256') throw new UsageError(`--alg must be EdDSA or ES256, not ${alg}`)
  return generate(dir, alg)
}

try {
  await main(process.argv.slice(2))
} catch (error) {
  if (error instanceof UsageError) {
    console.error(`backend-keys: ${error.message}\n\n${USAGE}`)
    process.exit(2)
  }
  console.error(`backend-keys: ${errorMessage(error)}`)
  process.exit(1)
}
