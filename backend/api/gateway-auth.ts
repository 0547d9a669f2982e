/**
 * Gateway → backend authentication: every request must carry a short-lived JWT signed by the
 * gateway (see gateway/proxy/backend-token.ts), verified against the public keys in a JWKS
 * file. The file may list several keys, so keys rotate without downtime: add the new public
 * key to every backend, switch the gateway's signing key, remove the old key later.
 *
 * `/health`, `/live`, `/ready` and `/metrics` stay open: probes and Prometheus cannot sign tokens, and
 * the deployments' NetworkPolicy decides who reaches them.
 */
import { readFile, stat } from 'node:fs/promises'
import type { MiddlewareHandler } from 'hono'
import {
  createLocalJWKSet,
  errors,
  type FlattenedJWSInput,
  importJWK,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
  jwtVerify,
} from 'jose'
import { errorMessage } from '../../lib/error-message.ts'
import { ApiError } from '../../openai/errors.ts'
import { apiErrorResponse } from './errors.ts'

export const GATEWAY_TOKEN_ISSUER = 'switchyard-gateway'
/** Tokens living longer than this are refused, whoever signed them: a leaked token is useful for minutes at most. */
export const MAX_TOKEN_LIFETIME_SECONDS = 300
/** Leeway for exp, nbf and iat between the gateway's clock and ours. */
export const CLOCK_TOLERANCE_SECONDS = 5
/** Routes answered without a token (probes and Prometheus cannot sign). */
export const UNAUTHENTICATED_PATHS: ReadonlySet<string> = new Set(['/health', '/live', '/ready', '/metrics'])

/** The only algorithms accepted, each with the one key type it may use. */
const KEY_TYPES: Record<string, { kty: string; crv: string }> = {
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
  ES256: { kty: 'EC', crv: 'P-256' },
}
const ALGORITHMS = Object.keys(KEY_TYPES)
/** JWK members that only private or symmetric keys have. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv']
/** Far above any real token; stops oversized headers before any parsing. */
const MAX_TOKEN_LENGTH = 4096

/** A validated set of gateway public keys. */
export interface VerifyKeySet {
  /** The public JWKs, as read. */
  keys: JWK[]
  kids: string[]
  getKey: (header: JWTHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>
}

/**
 * Parses a JWKS document of gateway public keys (`{"keys": [...]}`, each with `kid` and
 * `alg` EdDSA or ES256). Throws one line naming the first problem.
 */
export async function parseVerifyKeys(text: string): Promise<VerifyKeySet> {
  let document: unknown
  try {
    document = JSON.parse(text)
  } catch {
    throw new Error('not valid JSON')
  }
  if (typeof document !== 'object' || document === null || !Array.isArray((document as { keys?: unknown }).keys))
    throw new Error('expected a JWKS object {"keys": [...]}')
  const list = (document as { keys: unknown[] }).keys
  if (list.length === 0) throw new Error('"keys" is empty: list at least one public key')
  const kids = new Set<string>()
  const keys: JWK[] = []
  for (const [index, item] of list.entries()) {
    const where = `keys[${index}]`
    if (typeof item !== 'object' || item === null || Array.isArray(item))
      throw new Error(`${where} is not a JWK object`)
    const jwk = item as JWK
    if (typeof jwk.kid !== 'string' || jwk.kid === '') throw new Error(`${where}: "kid" is required`)
    if (kids.has(jwk.kid)) throw new Error(`${where}: kid "${jwk.kid}" appears twice`)
    kids.add(jwk.kid)
    const type = typeof jwk.alg === 'string' ? KEY_TYPES[jwk.alg] : undefined
    if (!type) throw new Error(`${where} (kid "${jwk.kid}"): "alg" must be one of ${ALGORITHMS.join(', ')}`)
    if (jwk.kty !== type.kty || jwk.crv !== type.crv)
      throw new Error(`${where} (kid "${jwk.kid}"): alg ${jwk.alg} needs kty ${type.kty} and crv ${type.crv}`)
    const secret = PRIVATE_MEMBERS.find((member) => member in jwk)
    if (secret)
      throw new Error(
        `${where} (kid "${jwk.kid}") holds private key material ("${secret}"): this file must contain public keys only`,
      )
    if (jwk.use !== undefined && jwk.use !== 'sig') throw new Error(`${where} (kid "${jwk.kid}"): "use" must be "sig"`)
    if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify')))
      throw new Error(`${where} (kid "${jwk.kid}"): "key_ops" must include "verify"`)
    // Import once now so a malformed key fails here, at start or reload, not on a request.
    try {
      await importJWK(jwk, jwk.alg)
    } catch (error) {
      throw new Error(`${where} (kid "${jwk.kid}") is not a usable ${jwk.alg} public key: ${errorMessage(error)}`)
    }
    keys.push({ ...jwk })
  }
  const jwks = createLocalJWKSet({ keys })
  return { keys, kids: [...kids], getKey: (header, token) => jwks(header, token) }
}

/** Reads and parses a JWKS file; errors start with the path. */
export async function readVerifyKeys(path: string): Promise<VerifyKeySet> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new Error(`cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? errorMessage(error)})`)
  }
  try {
    return await parseVerifyKeys(text)
  } catch (error) {
    throw new Error(`${path}: ${errorMessage(error)}`)
  }
}

export interface VerifyKeyFileOptions {
  /** How often the file's mtime is looked at (one stat call). Default 5000; 0 turns it off. */
  checkIntervalMs?: number
  onReload?: (keys: VerifyKeySet) => void
  /** The new file was unreadable or invalid; `kept` stays in force. */
  onReloadError?: (error: Error, kept: VerifyKeySet) => void
}

export interface VerifyKeyFile {
  readonly path: string
  /** The key set in force. */
  current(): VerifyKeySet
  /** Re-reads the file now; resolves false (keeping the current keys) when it is invalid. */
  reload(): Promise<boolean>
  /** Stops the mtime checks. */
  close(): void
}

/** What identifies one version of the file: an atomic replace changes the inode, an edit the mtime or size. */
async function fileVersion(path: string): Promise<string> {
  try {
    const s = await stat(path)
    return `${s.ino}:${s.size}:${s.mtimeMs}`
  } catch (error) {
    return `unreadable:${(error as NodeJS.ErrnoException).code ?? ''}`
  }
}

/**
 * Loads the JWKS file (throwing if it is unreadable or invalid) and keeps it current: `reload()`
 * (wired to SIGHUP) re-reads it, and a cheap periodic stat re-reads it when it changed. A bad
 * new version never replaces good keys.
 */
export async function openVerifyKeyFile(path: string, options: VerifyKeyFileOptions = {}): Promise<VerifyKeyFile> {
  let seen = await fileVersion(path)
  let current = await readVerifyKeys(path)
  // Reloads run one after another so a slow read can never overwrite a newer one.
  let queue: Promise<boolean> = Promise.resolve(true)

  const load = async (): Promise<boolean> => {
    // Stat before reading: if the file changes during the read, the next check sees a new version.
    const version = await fileVersion(path)
    let next: VerifyKeySet
    try {
      next = await readVerifyKeys(path)
    } catch (error) {
      options.onReloadError?.(error as Error, current)
      return false
    } finally {
      seen = version
    }
    current = next
    options.onReload?.(next)
    return true
  }
  const reload = (): Promise<boolean> => (queue = queue.then(load))

  let checking = false
  const interval = options.checkIntervalMs ?? 5000
  const timer =
    interval > 0
      ? setInterval(async () => {
          if (checking) return
          checking = true
          try {
            if ((await fileVersion(path)) !== seen) await reload()
          } finally {
            checking = false
          }
        }, interval)
      : undefined
  // The check must never keep the process alive on its own.
  timer?.unref()

  return { path, current: () => current, reload, close: () => clearInterval(timer) }
}

/** Why a request was refused; for logs only, the response is the same for all. */
export type GatewayTokenRefusal =
  | 'missing_token'
  | 'malformed'
  | 'missing_kid'
  | 'unknown_kid'
  | 'alg_not_allowed'
  | 'bad_signature'
  | 'expired'
  | 'not_yet_valid'
  | 'issued_in_future'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'missing_claim'
  | 'lifetime_too_long'
  | 'invalid'

export class GatewayTokenError extends Error {
  readonly reason: GatewayTokenRefusal
  constructor(reason: GatewayTokenRefusal) {
    super(`gateway token refused: ${reason}`)
    this.name = 'GatewayTokenError'
    this.reason = reason
  }
}

/** Maps jose's errors to refusal reasons. */
function refusalOf(error: unknown): GatewayTokenRefusal {
  if (error instanceof GatewayTokenError) return error.reason
  if (error instanceof errors.JWTExpired) return 'expired'
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === 'missing') return 'missing_claim'
    if (error.claim === 'nbf') return 'not_yet_valid'
    if (error.claim === 'iat') return 'issued_in_future'
    if (error.claim === 'iss') return 'wrong_issuer'
    if (error.claim === 'aud') return 'wrong_audience'
    return 'invalid'
  }
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported) return 'alg_not_allowed'
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys)
    return 'unknown_kid'
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'bad_signature'
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return 'malformed'
  return 'invalid'
}

export interface GatewayTokenOptions {
  /** The key set in force; asked on every request, so a reload applies at once. */
  keys: () => VerifyKeySet
  audience: string
  /** Default `switchyard-gateway`. */
  issuer?: string
  /** Default 300. */
  maxLifetimeSeconds?: number
  /** Default 5. */
  clockToleranceSeconds?: number
}

/** Returns a function that resolves with the claims of a valid token and throws GatewayTokenError otherwise. */
export function createGatewayTokenVerifier(options: GatewayTokenOptions): (token: string) => Promise<JWTPayload> {
  const maxLifetime = options.maxLifetimeSeconds ?? MAX_TOKEN_LIFETIME_SECONDS
  const verifyOptions = {
    // An allow-list of asymmetric algorithms: `none` and HS* (a public key used as an HMAC secret) never get through.
    algorithms: ALGORITHMS,
    issuer: options.issuer ?? GATEWAY_TOKEN_ISSUER,
    audience: options.audience,
    clockTolerance: options.clockToleranceSeconds ?? CLOCK_TOLERANCE_SECONDS,
    // Also makes iat required and refuses an iat in the future.
    maxTokenAge: maxLifetime,
    requiredClaims: ['exp', 'iat'],
  }
  const getKey = (header: JWTHeaderParameters, token: FlattenedJWSInput) => {
    // The gateway always names its key; without a kid any listed key would be tried.
    if (typeof header.kid !== 'string' || header.kid === '') throw new GatewayTokenError('missing_kid')
    return options.keys().getKey(header, token)
  }
  return async (token) => {
    try {
      const { payload } = await jwtVerify(token, getKey, verifyOptions)
      if ((payload.exp as number) - (payload.iat as number) > maxLifetime)
        throw new GatewayTokenError('lifetime_too_long')
      return payload
    } catch (error) {
      throw error instanceof GatewayTokenError ? error : new GatewayTokenError(refusalOf(error))
    }
  }
}

/** Three base64url segments (jose checks the rest). */
const BEARER = /^Bearer +([\w-]*\.[\w-]*\.[\w-]*)$/i

/** The one answer to every refused request, so a caller learns nothing about which check failed. */
const UNAUTHORIZED = new ApiError(401, 'Invalid or missing gateway token', {
  type: 'authentication_error',
  code: 'invalid_gateway_token',
  headers: { 'WWW-Authenticate': 'Bearer realm="switchyard-backend"' },
})

export interface GatewayAuthOptions extends GatewayTokenOptions {
  /** Called with the reason of each refusal (never the token). */
  onRefused?: (reason: GatewayTokenRefusal) => void
}

/** Hono middleware: 401 for any request outside UNAUTHENTICATED_PATHS without a valid gateway token. */
export function gatewayAuth(options: GatewayAuthOptions): MiddlewareHandler {
  const verify = createGatewayTokenVerifier(options)
  return async (c, next) => {
    if (UNAUTHENTICATED_PATHS.has(c.req.path)) return next()
    const header = c.req.header('authorization')
    try {
      if (header === undefined) throw new GatewayTokenError('missing_token')
      const match = header.length <= MAX_TOKEN_LENGTH ? BEARER.exec(header) : null
      if (!match) throw new GatewayTokenError('malformed')
      await verify(match[1])
    } catch (error) {
      options.onRefused?.(refusalOf(error))
      return apiErrorResponse(c, UNAUTHORIZED)
    }
    return next()
  }
}
