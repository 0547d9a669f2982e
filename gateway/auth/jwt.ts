/**
 * JWT bearer tokens, verified against public keys from a JWKS URL or a static list.
 * Uses jose's Web Crypto build, so it runs on Workers too.
 *
 * Only asymmetric algorithms are accepted, from an explicit allow-list; `none` and HS* are
 * refused when the verifier is built, so an attacker cannot pick an algorithm that turns a
 * public key into an HMAC secret (alg confusion) or skips the signature.
 */
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type FlattenedJWSInput,
  type JWK,
  type JWTHeaderParameters,
  type JWTPayload,
  type JWTVerifyOptions,
  jwtVerify,
} from 'jose'
import { errorMessage } from '../../lib/error-message.ts'
import type { Limits, Principal } from '../types.ts'
import { AuthError, isWellFormedCredential } from './errors.ts'

export type { JWK } from 'jose'
export { AuthError, type AuthReason } from './errors.ts'

/** Asymmetric JWS algorithms a verifier may be configured with. */
export const SUPPORTED_JWT_ALGORITHMS: readonly string[] = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
]

/** JWK members that only private or symmetric keys have. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'priv'] as const

export interface JwtClaimNames {
  /** Claim holding the tenant (a non-empty string, required in every token). Default `tenant`. */
  tenant?: string
  /** Claim holding a string[] of allowed models. Absent claim = all models. */
  models?: string
  /** Claim holding an object with requestsPerWindow/requestWindowSeconds/tokensPerMinute/maxConcurrent. */
  limits?: string
}

export interface JwtVerifierOptions {
  /** JWKS endpoint (https, or http on a loopback host). Exactly one of jwksUrl and keys. */
  jwksUrl?: string
  /** Static public keys, each with `kid` and `alg`. */
  keys?: JWK[]
  /** Required allow-list of asymmetric algorithms (see SUPPORTED_JWT_ALGORITHMS). */
  algorithms: string[]
  issuer?: string | string[]
  audience?: string | string[]
  /** Leeway for exp, nbf and iat. Default 0. */
  clockToleranceSeconds?: number
  /** Longest a token may be valid: exp − iat (and exp − now) beyond this is refused. Absent = unbounded. */
  maxLifetimeSeconds?: number
  claims?: JwtClaimNames
  /** Fallback for each limit field the token does not set. */
  defaultLimits: Limits
  /** JWKS fetch timeout. Default 5000. */
  jwksTimeoutMs?: number
  /** How long a fetched JWKS is used before refetching. Default 600000. */
  jwksCacheMaxAgeMs?: number
}

export interface JwtVerifier {
  /** The principal for a valid token; throws AuthError otherwise. */
  verify(token: string): Promise<Principal>
}

type KeyResolver = (header: JWTHeaderParameters, token: FlattenedJWSInput) => Promise<CryptoKey>

const LIMIT_FIELDS = ['requestsPerWindow', 'requestWindowSeconds', 'tokensPerMinute', 'maxConcurrent'] as const

/** Each field from `limits` when set, else from `defaults`. */
export function mergeLimits(defaults: Limits, limits: Limits | undefined): Limits {
  const merged: Limits = {}
  for (const field of LIMIT_FIELDS) {
    const value = limits?.[field] ?? defaults[field]
    if (value !== undefined) merged[field] = value
  }
  return merged
}

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname)
}

function validateAlgorithms(algorithms: unknown): string[] {
  if (!Array.isArray(algorithms) || algorithms.length === 0)
    throw new Error('jwt: algorithms must be a non-empty allow-list')
  for (const alg of algorithms) {
    if (typeof alg !== 'string') throw new Error('jwt: algorithms must be strings')
    if (alg.toLowerCase() === 'none' || /^HS/i.test(alg))
      throw new Error(`jwt: algorithm ${alg} is not allowed (only asymmetric algorithms can be used with public keys)`)
    if (!SUPPORTED_JWT_ALGORITHMS.includes(alg))
      throw new Error(`jwt: unsupported algorithm ${alg}; use one of ${SUPPORTED_JWT_ALGORITHMS.join(', ')}`)
  }
  return [...new Set(algorithms as string[])]
}

function validateStaticKeys(keys: JWK[], algorithms: string[]): JWK[] {
  if (!Array.isArray(keys) || keys.length === 0) throw new Error('jwt: keys must be a non-empty array of public JWKs')
  const kids = new Set<string>()
  return keys.map((jwk, index) => {
    const where = `jwt: keys[${index}]`
    if (typeof jwk !== 'object' || jwk === null) throw new Error(`${where} is not a JWK`)
    if (jwk.kty !== 'RSA' && jwk.kty !== 'EC' && jwk.kty !== 'OKP')
      throw new Error(`${where}: kty must be RSA, EC or OKP`)
    for (const member of PRIVATE_MEMBERS) {
      if (member in jwk)
        throw new Error(`${where} contains private key material (${member}); configure public keys only`)
    }
    if (typeof jwk.kid !== 'string' || jwk.kid === '') throw new Error(`${where}: kid is required`)
    if (kids.has(jwk.kid)) throw new Error(`${where}: duplicate kid ${jwk.kid}`)
    kids.add(jwk.kid)
    if (typeof jwk.alg !== 'string' || !algorithms.includes(jwk.alg))
      throw new Error(`${where}: alg is required and must be one of the allowed algorithms`)
    if (jwk.use !== undefined && jwk.use !== 'sig') throw new Error(`${where}: use must be sig`)
    return { ...jwk }
  })
}

/** Key-resolution errors that are the token's fault; anything else from a remote JWKS means it is unreachable or broken. */
function isTokenKeyError(error: unknown): boolean {
  return (
    error instanceof errors.JWKSNoMatchingKey ||
    error instanceof errors.JWKSMultipleMatchingKeys ||
    error instanceof errors.JOSENotSupported
  )
}

function remoteResolver(url: URL, options: JwtVerifierOptions): KeyResolver {
  const jwks = createRemoteJWKSet(url, {
    timeoutDuration: options.jwksTimeoutMs ?? 5000,
    cacheMaxAge: options.jwksCacheMaxAgeMs ?? 600_000,
  })
  return async (header, token) => {
    try {
      return await jwks(header, token)
    } catch (error) {
      if (isTokenKeyError(error)) throw error
      throw new AuthError('jwks_unavailable', { detail: errorMessage(error), cause: error })
    }
  }
}

/** Translates jose's errors into reason codes. */
function toAuthError(error: unknown): AuthError {
  if (error instanceof AuthError) return error
  if (error instanceof errors.JWTExpired) return new AuthError('jwt_expired', { detail: error.claim })
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.reason === 'missing') return new AuthError('jwt_missing_claim', { detail: error.claim })
    if (error.reason === 'invalid') return new AuthError('jwt_bad_claim', { detail: error.claim })
    if (error.claim === 'nbf') return new AuthError('jwt_not_yet_valid')
    if (error.claim === 'iss') return new AuthError('jwt_wrong_issuer')
    if (error.claim === 'aud') return new AuthError('jwt_wrong_audience')
    return new AuthError('jwt_invalid', { detail: error.claim })
  }
  if (error instanceof errors.JOSEAlgNotAllowed || error instanceof errors.JOSENotSupported)
    return new AuthError('jwt_alg_not_allowed')
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys)
    return new AuthError('jwt_unknown_key')
  if (error instanceof errors.JWSSignatureVerificationFailed) return new AuthError('jwt_bad_signature')
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return new AuthError('jwt_malformed')
  return new AuthError('jwt_invalid', { detail: error instanceof Error ? error.name : undefined, cause: error })
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function readModels(payload: JWTPayload, claim: string): string[] | undefined {
  const value = payload[claim]
  if (value === undefined) return undefined
  if (!Array.isArray(value) || !value.every((m) => typeof m === 'string' && m !== ''))
    throw new AuthError('jwt_bad_claim', { detail: claim })
  return [...(value as string[])]
}

function readLimits(payload: JWTPayload, claim: string): Limits | undefined {
  const value = payload[claim]
  if (value === undefined) return undefined
  if (!isPlainObject(value)) throw new AuthError('jwt_bad_claim', { detail: claim })
  const limits: Limits = {}
  for (const field of LIMIT_FIELDS) {
    const v = value[field]
    if (v === undefined) continue
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0)
      throw new AuthError('jwt_bad_claim', { detail: `${claim}.${field}` })
    limits[field] = v
  }
  return limits
}

/** Builds a verifier; throws at start-up on an unsafe or incomplete configuration. */
export function createJwtVerifier(options: JwtVerifierOptions): JwtVerifier {
  const algorithms = validateAlgorithms(options.algorithms)
  if ((options.jwksUrl === undefined) === (options.keys === undefined))
    throw new Error('jwt: configure exactly one of jwksUrl and keys')
  const tolerance = options.clockToleranceSeconds ?? 0
  if (!Number.isFinite(tolerance) || tolerance < 0)
    throw new Error('jwt: clockToleranceSeconds must be a non-negative number')
  const maxLifetime = options.maxLifetimeSeconds
  if (maxLifetime !== undefined && !(Number.isFinite(maxLifetime) && maxLifetime > 0))
    throw new Error('jwt: maxLifetimeSeconds must be a positive number')
  const claimNames = {
    tenant: options.claims?.tenant ?? 'tenant',
    models: options.claims?.models,
    limits: options.claims?.limits,
  }

  let resolver: KeyResolver
  if (options.jwksUrl !== undefined) {
    let url: URL
    try {
      url = new URL(options.jwksUrl)
    } catch {
      throw new Error('jwt: jwksUrl is not a valid URL')
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && isLoopback(url.hostname)))
      throw new Error('jwt: jwksUrl must use https (plain http only on a loopback host)')
    resolver = remoteResolver(url, options)
  } else {
    const local = createLocalJWKSet({ keys: validateStaticKeys(options.keys!, algorithms) })
    resolver = (header, token) => local(header, token)
  }

  const verifyOptions: JWTVerifyOptions = {
    algorithms,
    issuer: options.issuer,
    audience: options.audience,
    clockTolerance: tolerance,
    requiredClaims: ['exp', 'sub'],
  }

  /** jwtVerify, trying every candidate key when the token has no kid and several keys fit. */
  async function verifyWithKeys(token: string): Promise<JWTPayload> {
    try {
      return (await jwtVerify(token, resolver, verifyOptions)).payload
    } catch (error) {
      if (!(error instanceof errors.JWKSMultipleMatchingKeys)) throw error
      const candidates = error as errors.JWKSMultipleMatchingKeys & AsyncIterable<CryptoKey>
      let last: unknown = error
      for await (const key of candidates) {
        try {
          return (await jwtVerify(token, key, verifyOptions)).payload
        } catch (inner) {
          last = inner
          if (!(inner instanceof errors.JWSSignatureVerificationFailed)) break
        }
      }
      throw last
    }
  }

  /**
   * jose checks exp and nbf; a token issued in the future, or valid for longer than allowed, is
   * refused here (a leaked long-lived token could otherwise never be contained, since JWTs cannot be revoked).
   */
  function checkTimes(payload: JWTPayload): void {
    const now = Math.floor(Date.now() / 1000)
    const { iat, exp } = payload
    if (iat !== undefined && iat > now + tolerance) throw new AuthError('jwt_issued_in_future')
    if (maxLifetime === undefined || exp === undefined) return
    const lifetime = Math.max(exp - now, iat === undefined ? 0 : exp - iat)
    if (lifetime > maxLifetime + tolerance) throw new AuthError('jwt_lifetime_too_long', { detail: `${lifetime} s` })
  }

  return {
    async verify(token: string): Promise<Principal> {
      if (typeof token !== 'string' || !isWellFormedCredential(token) || token.split('.').length !== 3)
        throw new AuthError('jwt_malformed')
      let payload: JWTPayload
      try {
        payload = await verifyWithKeys(token)
      } catch (error) {
        throw toAuthError(error)
      }
      checkTimes(payload)
      if (typeof payload.sub !== 'string' || payload.sub === '') throw new AuthError('jwt_bad_claim', { detail: 'sub' })
      const tenant = payload[claimNames.tenant]
      if (tenant === undefined) throw new AuthError('jwt_missing_claim', { detail: claimNames.tenant })
      if (typeof tenant !== 'string' || tenant === '')
        throw new AuthError('jwt_bad_claim', { detail: claimNames.tenant })
      const models = claimNames.models === undefined ? undefined : readModels(payload, claimNames.models)
      const limits = claimNames.limits === undefined ? undefined : readLimits(payload, claimNames.limits)
      const principal: Principal = {
        id: payload.sub,
        tenant,
        limits: mergeLimits(options.defaultLimits, limits),
        via: 'jwt',
      }
      if (models !== undefined) principal.models = models
      return principal
    },
  }
}
