import { errorBody, type OpenAIErrorBody } from '../../openai/errors.ts'

/**
 * Authentication errors and the OpenAI-shaped bodies they become. Web-standard APIs only
 * (runs on Node and Cloudflare Workers).
 */

/**
 * Why a credential was refused. Only ever logged; the HTTP response is the same for every
 * 401 reason so a caller learns nothing about which check failed.
 */
export type AuthReason =
  | 'missing_credentials'
  | 'malformed_credentials'
  | 'conflicting_credentials'
  | 'unknown_key'
  | 'jwt_malformed'
  | 'jwt_alg_not_allowed'
  | 'jwt_unknown_key'
  | 'jwt_bad_signature'
  | 'jwt_expired'
  | 'jwt_not_yet_valid'
  /** iat later than now plus the clock tolerance. */
  | 'jwt_issued_in_future'
  /** exp further from iat (or now) than auth.jwt.maxLifetimeSeconds. */
  | 'jwt_lifetime_too_long'
  | 'jwt_wrong_issuer'
  | 'jwt_wrong_audience'
  | 'jwt_missing_claim'
  | 'jwt_bad_claim'
  | 'jwt_invalid'
  /** The JWKS endpoint could not be reached or answered garbage: a 503, not the caller's fault. */
  | 'jwks_unavailable'
  /** The key store threw: a 503. */
  | 'store_unavailable'
  /** Anything unexpected while checking: a 503. */
  | 'internal_error'
  | 'admin_not_authorized'

/** Reasons that mean "we could not check", not "the credential is bad". */
const UNAVAILABLE: ReadonlySet<AuthReason> = new Set<AuthReason>([
  'jwks_unavailable',
  'store_unavailable',
  'internal_error',
])

export class AuthError extends Error {
  readonly reason: AuthReason
  /** Extra non-secret detail for logs (e.g. the claim name). Never a token or key. */
  readonly detail?: string

  constructor(reason: AuthReason, options: { detail?: string; cause?: unknown } = {}) {
    super(
      options.detail ? `${reason}: ${options.detail}` : reason,
      options.cause === undefined ? undefined : { cause: options.cause },
    )
    this.name = 'AuthError'
    this.reason = reason
    this.detail = options.detail
  }

  /** True when the failure is ours (store or JWKS down) and the answer should be 503. */
  get unavailable(): boolean {
    return UNAVAILABLE.has(this.reason)
  }
}

export const INVALID_CREDENTIALS_MESSAGE = 'Invalid or missing credentials'
export const MODEL_NOT_ALLOWED_MESSAGE = 'This key may not use this model'

/** The one 401 every authentication failure gets. */
export function unauthorizedBody(): OpenAIErrorBody {
  return errorBody(INVALID_CREDENTIALS_MESSAGE, { code: 'invalid_api_key' })
}

export const UNAUTHORIZED_HEADERS: Readonly<Record<string, string>> = {
  'www-authenticate': 'Bearer',
  'cache-control': 'no-store',
}

export function unavailableBody(): OpenAIErrorBody {
  return errorBody('Authentication is temporarily unavailable; retry shortly', {
    type: 'server_error',
    code: 'auth_unavailable',
  })
}

/**
 * Parses `Authorization: Bearer <token>`. Returns undefined when the header is absent,
 * null when it is present but not a well-formed Bearer credential.
 */
export function parseBearer(header: string | undefined | null): string | null | undefined {
  if (header === undefined || header === null) return undefined
  const match = /^[ \t]*Bearer[ \t]+(\S+)[ \t]*$/i.exec(header)
  return match ? match[1] : null
}

/** Longest credential we look at; anything longer is refused before hashing or parsing. */
export const MAX_CREDENTIAL_LENGTH = 8192

/** Printable ASCII without spaces: what keys and JWTs are made of. */
export function isWellFormedCredential(value: string): boolean {
  return value.length > 0 && value.length <= MAX_CREDENTIAL_LENGTH && /^[\x21-\x7e]+$/.test(value)
}
