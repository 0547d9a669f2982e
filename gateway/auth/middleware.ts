/**
 * The authentication stage: turns `Authorization: Bearer <token>` or `X-API-Key: <key>` into a
 * Principal on the context, or answers 401 (bad credential) / 503 (could not check).
 *
 * Every 401 has the same body and headers whatever the reason, so a caller cannot tell an
 * unknown key from a revoked one or an expired token from a forged one. The reason goes to the
 * log; the key or token never does.
 */
import type { Context, MiddlewareHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { errorMessage } from '../../lib/error-message.ts'
import { createLogLimiter } from '../observability/log-limiter.ts'
import { gatewayError } from '../pipeline/errors.ts'
import type { ApiKeyRecord, Limits, Logger, Principal } from '../types.ts'
import { hashApiKey, type KeyLookup } from './api-keys.ts'
import {
  AuthError,
  isWellFormedCredential,
  MODEL_NOT_ALLOWED_MESSAGE,
  parseBearer,
  UNAUTHORIZED_HEADERS,
  unauthorizedBody,
  unavailableBody,
} from './errors.ts'
import { type JwtVerifier, mergeLimits } from './jwt.ts'

declare module 'hono' {
  interface ContextVariableMap {
    /** Set by `authenticate` for every request it lets through. */
    principal: Principal
  }
}

export interface AuthenticateOptions {
  lookup: KeyLookup
  /** JWT verifier; without it every credential is treated as an API key. */
  jwt?: JwtVerifier
  /** Fallback for each limit field a key record or token leaves unset. */
  defaultLimits: Limits
  logger: Logger
  /** Hex SHA-256 of a presented key. Default Web Crypto; the Node entry passes a synchronous one (cheaper per request). */
  hashKey?: (key: string) => string | Promise<string>
  /** At most one log line per failure reason per this long (ms), with a count. Default: the log limiter's (10 s); 0 logs every failure. */
  logIntervalMs?: number
}

type Credential = { kind: 'api_key' | 'jwt'; value: string }

/** Reads the credential from the headers; null when there is none; throws AuthError when they are unusable. */
function readCredential(c: Context, jwtEnabled: boolean): Credential | null {
  const authorization = c.req.header('authorization')
  const apiKeyHeader = c.req.header('x-api-key')
  const bearer = parseBearer(authorization)
  if (bearer === null) throw new AuthError('malformed_credentials', { detail: 'authorization' })
  const apiKey = apiKeyHeader === undefined ? undefined : apiKeyHeader.trim()
  if (apiKey !== undefined && apiKey === '') throw new AuthError('malformed_credentials', { detail: 'x-api-key' })
  if (bearer !== undefined && apiKey !== undefined && bearer !== apiKey) throw new AuthError('conflicting_credentials')
  const value = bearer ?? apiKey
  if (value === undefined) return null
  if (!isWellFormedCredential(value)) throw new AuthError('malformed_credentials')
  const looksLikeJwt = value.split('.').length === 3
  return { kind: looksLikeJwt && jwtEnabled ? 'jwt' : 'api_key', value }
}

function principalFromKey(record: ApiKeyRecord, defaultLimits: Limits): Principal {
  const principal: Principal = {
    id: record.id,
    tenant: record.tenant,
    limits: mergeLimits(defaultLimits, record.limits),
    via: 'api_key',
    source: record.source,
  }
  if (record.models !== undefined) principal.models = [...record.models]
  return principal
}

async function resolve(credential: Credential, options: AuthenticateOptions): Promise<Principal> {
  if (credential.kind === 'jwt') return options.jwt!.verify(credential.value)
  const hash = await (options.hashKey ?? hashApiKey)(credential.value)
  let record: ApiKeyRecord | null
  try {
    record = await options.lookup.findByHash(hash)
  } catch (error) {
    throw new AuthError('store_unavailable', { detail: errorMessage(error), cause: error })
  }
  if (!record || record.revoked) throw new AuthError('unknown_key')
  return principalFromKey(record, options.defaultLimits)
}

/** Hono middleware: authenticates the request and sets `c.var.principal`. */
export function authenticate(options: AuthenticateOptions): MiddlewareHandler {
  // One line per reason per interval, with a count: a store outage or a flood of bad keys must not write a line per request.
  const log = createLogLimiter(options.logger, { intervalMs: options.logIntervalMs })
  return async (c, next) => {
    let principal: Principal
    let via: Credential['kind'] | undefined
    try {
      const credential = readCredential(c, options.jwt !== undefined)
      if (credential === null) throw new AuthError('missing_credentials')
      via = credential.kind
      principal = await resolve(credential, options)
    } catch (error) {
      const authError =
        error instanceof AuthError
          ? error
          : new AuthError('internal_error', { detail: errorMessage(error), cause: error })
      const fields = { reason: authError.reason, detail: authError.detail, via, method: c.req.method, path: c.req.path }
      if (authError.unavailable) {
        log('error', `auth:${authError.reason}`, fields, 'authentication unavailable')
        return c.json(unavailableBody(), 503, { 'retry-after': '1', 'cache-control': 'no-store' })
      }
      log('warn', `auth:${authError.reason}`, fields, 'authentication failed')
      return c.json(unauthorizedBody(), 401, { ...UNAUTHORIZED_HEADERS })
    }
    c.set('principal', principal)
    // Logs and metrics name the caller by key id or token subject, never by credential.
    const lifecycle = c.get('lifecycle')
    if (lifecycle) lifecycle.record.keyId = principal.id
    await next()
  }
}

/** Whether the principal may use this model (undefined `models` = all; a restricted principal with no model named is refused). */
export function canUseModel(principal: Principal, model: string | undefined): boolean {
  if (principal.models === undefined) return true
  return typeof model === 'string' && principal.models.includes(model)
}

/** null when the principal may use `model`, else the 403 Response to return. */
export function modelAccessDenied(principal: Principal, model: string | undefined): Response | null {
  if (canUseModel(principal, model)) return null
  // Like auth's other answers: type invalid_request_error and no-store (not gatewayError's 403 defaults).
  const headers = { 'content-type': 'application/json; charset=UTF-8', 'cache-control': 'no-store' }
  return gatewayError(403, MODEL_NOT_ALLOWED_MESSAGE, 'model_not_allowed', {
    param: 'model',
    type: 'invalid_request_error',
    headers,
  }).getResponse()
}

/**
 * Throws an HTTPException carrying the 403 (`model_not_allowed`) when the principal may not use
 * `model`; returns normally otherwise. The app's onError must answer `error.getResponse()` for
 * HTTPException (Hono's default handler does). Throwing rather than returning means a caller
 * that ignores the result cannot accidentally let the request through.
 */
export function requireModelAccess(principal: Principal, model: string | undefined): void {
  const denied = modelAccessDenied(principal, model)
  if (denied) throw new HTTPException(403, { res: denied, message: MODEL_NOT_ALLOWED_MESSAGE })
}
