import type { Context, MiddlewareHandler } from 'hono'
import { isWellFormedCredential, parseBearer } from '../auth/errors.ts'
import { gatewayError } from '../pipeline/errors.ts'
import type { Decision, GatewayMetrics, RateLimitStore } from '../types.ts'

export interface IpGuardOptions {
  store: RateLimitStore
  /** Failed authentications per window an address may have before it is blocked. */
  limit: number
  windowSeconds: number
  metrics: GatewayMetrics
  ip: (c: Context) => string
}

/** Most addresses blocked at once in one process; past it the oldest blocks are dropped. */
const MAX_BLOCKED = 100_000

/**
 * The per-IP failed-authentication guard, against key guessing and floods of bad credentials.
 * Only failures count: each 401 counts against the address in the shared store, and once over
 * the limit the address is blocked in this process until the window resets. A blocked address
 * is refused (429) only when it fails to authenticate: a request with a valid key is always
 * checked and let through, so one client behind a NAT or proxy cannot lock out the others.
 * While blocked, a failure costs no store call, and a request with no well-formed credential
 * is refused before anything is hashed or looked up.
 */
export function ipGuard(options: IpGuardOptions): MiddlewareHandler {
  const { metrics } = options
  const blockedUntil = new Map<string, number>()
  const refuse = (retryAfterSeconds: number) => {
    metrics.rateLimited({ limit: 'ip' })
    metrics.ipGuard?.('refused', blockedUntil.size)
    return gatewayError(
      429,
      'Too many failed authentications from this address; retry after the reset',
      'rate_limit_exceeded',
      { headers: { 'retry-after': String(retryAfterSeconds) } },
    )
  }
  const block = (ip: string, seconds: number) => {
    const now = Date.now()
    if (blockedUntil.size >= MAX_BLOCKED)
      for (const [address, until] of blockedUntil)
        if (until <= now || blockedUntil.size >= MAX_BLOCKED) blockedUntil.delete(address)
    // Deleted first so the map's order stays oldest first.
    blockedUntil.delete(ip)
    blockedUntil.set(ip, now + seconds * 1000)
  }
  /** Ms the address stays blocked; 0 when it is not. */
  const blockedFor = (ip: string) => {
    const until = blockedUntil.get(ip)
    if (until === undefined) return 0
    const left = until - Date.now()
    if (left > 0) return left
    blockedUntil.delete(ip)
    metrics.ipGuard?.('unblocked', blockedUntil.size)
    return 0
  }

  return async (c, next) => {
    const ip = options.ip(c)
    const blockedMs = blockedFor(ip)
    if (blockedMs > 0 && !hasWellFormedCredential(c)) throw refuse(Math.ceil(blockedMs / 1000))
    await next()
    if (c.res.status !== 401) {
      if (blockedMs > 0) metrics.ipGuard?.('passed', blockedUntil.size)
      return
    }
    metrics.ipGuard?.('failure', blockedUntil.size)
    if (blockedMs > 0) {
      c.res = refuse(Math.ceil(blockedMs / 1000)).getResponse()
      return
    }
    let decision: Decision | null = null
    try {
      decision = await options.store.hitRequest(`ip:${ip}`, options.limit, options.windowSeconds)
    } catch {
      decision = null
    }
    if (decision && !decision.allowed) {
      block(ip, decision.retryAfterSeconds)
      metrics.ipGuard?.('blocked', blockedUntil.size)
      c.res = refuse(decision.retryAfterSeconds).getResponse()
    }
  }
}

/** Whether the request carries a credential worth checking (the authentication stage decides if it is valid). */
function hasWellFormedCredential(c: Context): boolean {
  const bearer = parseBearer(c.req.header('authorization'))
  const apiKey = c.req.header('x-api-key')?.trim()
  return (
    (typeof bearer === 'string' && isWellFormedCredential(bearer)) ||
    (apiKey !== undefined && isWellFormedCredential(apiKey))
  )
}
