import type { MiddlewareHandler } from 'hono'
import { gatewayError } from '../pipeline/errors.ts'
import type { Decision, GatewayMetrics, LimitState, Limits, Logger, RateLimitStore } from '../types.ts'
import { rateLimitHeaders } from './headers.ts'

interface Options {
  store: RateLimitStore
  defaults: Limits
  metrics: GatewayMetrics
  logger: Logger
}

/**
 * Per-key limits, in order: requests per window, concurrent requests, then tokens per minute.
 * Tokens are reserved before forwarding (prompt bound + max_tokens, atomically in the store,
 * so concurrent requests cannot overshoot) and what was not used is refunded when the
 * response ends. Every response carries the x-ratelimit-* headers, streams included.
 */
export function keyRateLimits(options: Options): MiddlewareHandler {
  const { store, metrics, logger } = options
  return async (c, next) => {
    const principal = c.get('principal')
    const request = c.get('apiRequest')
    const lifecycle = c.get('lifecycle')
    const limits = { ...options.defaults, ...principal.limits }
    // Key ids and JWT subjects live in different namespaces: never share counters across them.
    const who = `${principal.via}:${principal.id}`
    let requestState: LimitState | undefined
    let tokenState: LimitState | undefined
    const headers = () => rateLimitHeaders({ requests: requestState, tokens: tokenState })
    const refuse = (decision: Extract<Decision, { allowed: false }>, limit: 'requests' | 'tokens' | 'concurrency', message: string, code: string) => {
      metrics.rateLimited({ limit })
      throw gatewayError(429, message, code, { headers: { ...headers(), 'retry-after': String(decision.retryAfterSeconds) } })
    }
    const guarded = async <T>(what: string, run: () => Promise<T>, fallback: T): Promise<T> => {
      try {
        return await run()
      } catch (error) {
        // The stores fall back to memory themselves; anything that still fails lets the request through.
        logger.warn({ operation: what, error: String((error as Error)?.message ?? error) }, 'rate limit store failed; request allowed')
        return fallback
      }
    }

    // The three checks are independent, so they run concurrently (one store round trip of
    // latency, not three); whatever one check granted is given back if another refuses.
    const reserved = request ? request.promptTokenBound + request.maxCompletionTokens : 0
    const perMinute = limits.tokensPerMinute ?? 0
    const [requestDecision, slot, tokenDecision] = await Promise.all([
      limits.requestsPerWindow ? guarded('requests', () => store.hitRequest(`req:${who}`, limits.requestsPerWindow!, limits.requestWindowSeconds ?? 60), null) : null,
      limits.maxConcurrent ? guarded('concurrency', () => store.acquireSlot(`conc:${who}`, limits.maxConcurrent!), null) : null,
      perMinute && request ? guarded('tokens', () => store.reserveTokens(`tok:${who}`, reserved, perMinute), null) : null,
    ])
    requestState = requestDecision?.state
    tokenState = tokenDecision?.state
    const refused = (requestDecision && !requestDecision.allowed) || (slot && !slot.allowed) || (tokenDecision && !tokenDecision.allowed)
    if (refused) {
      if (slot?.allowed) void slot.release()
      if (tokenDecision?.allowed) void guarded('refund', () => store.refundTokens(`tok:${who}`, reserved, perMinute), undefined)
    }
    if (requestDecision && !requestDecision.allowed) refuse(requestDecision, 'requests', 'Rate limit reached for requests; retry after the reset', 'rate_limit_exceeded')
    if (slot && !slot.allowed) refuse({ allowed: false, retryAfterSeconds: 1, state: requestState ?? { limit: 0, remaining: 0, resetSeconds: 1 } }, 'concurrency', `Too many requests in flight for this key (at most ${limits.maxConcurrent})`, 'concurrency_limit_exceeded')
    if (tokenDecision && !tokenDecision.allowed) {
      refuse(tokenDecision, 'tokens', `Rate limit reached for tokens: this request may use up to ${reserved} tokens and ${tokenDecision.state.remaining} of ${perMinute} per minute remain`, 'tokens_limit_exceeded')
    }
    if (slot?.allowed) lifecycle.onEnd(() => slot.release())
    if (tokenDecision?.allowed) {
      lifecycle.onEnd((record) => {
        const used = record.cache === 'HIT' ? 0 : record.usage ? record.usage.promptTokens + record.usage.completionTokens : record.status === 200 ? reserved : 0
        const refund = reserved - used
        if (refund > 0) return guarded('refund', () => store.refundTokens(`tok:${who}`, refund, perMinute), undefined)
      })
    }
    await next()
    for (const [name, value] of Object.entries(headers())) c.res.headers.set(name, value)
  }
}

/**
 * Requests per window per client IP, for requests that do not authenticate: a guard against
 * floods and key guessing that costs authenticated traffic nothing. Each 401 counts against
 * the address in the shared store; once over the limit the address gets 429 (and is refused
 * in this process without a store call until the window resets).
 */
export function ipRateLimit(options: { store: RateLimitStore; limit: number; windowSeconds: number; metrics: GatewayMetrics; ip: (c: Parameters<MiddlewareHandler>[0]) => string }): MiddlewareHandler {
  const blockedUntil = new Map<string, number>()
  const refuse = (retryAfterSeconds: number) => {
    options.metrics.rateLimited({ limit: 'ip' })
    return gatewayError(429, 'Too many unauthenticated requests from this address; retry after the reset', 'rate_limit_exceeded', { headers: { 'retry-after': String(retryAfterSeconds) } })
  }
  return async (c, next) => {
    const ip = options.ip(c)
    const until = blockedUntil.get(ip)
    if (until !== undefined) {
      const left = until - Date.now()
      if (left > 0) throw refuse(Math.ceil(left / 1000))
      blockedUntil.delete(ip)
    }
    await next()
    if (c.res.status !== 401) return
    let decision: Decision | null = null
    try {
      decision = await options.store.hitRequest(`ip:${ip}`, options.limit, options.windowSeconds)
    } catch {
      decision = null
    }
    if (decision && !decision.allowed) {
      // Bounded: a flood from many addresses must not grow this map without end.
      if (blockedUntil.size >= 100_000) blockedUntil.clear()
      blockedUntil.set(ip, Date.now() + decision.retryAfterSeconds * 1000)
      c.res = refuse(decision.retryAfterSeconds).getResponse()
    }
  }
}
