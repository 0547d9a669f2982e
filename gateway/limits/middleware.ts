import type { MiddlewareHandler } from 'hono'
import { errorMessage } from '../../lib/error-message.ts'
import { createLogLimiter } from '../observability/log-limiter.ts'
import { gatewayError } from '../pipeline/errors.ts'
import type {
  Admission,
  AdmissionRequest,
  GatewayMetrics,
  Limits,
  Logger,
  Principal,
  RateLimitStore,
} from '../types.ts'
import { rateLimitHeaders } from './headers.ts'

interface Options {
  store: RateLimitStore
  defaults: Limits
  metrics: GatewayMetrics
  logger: Logger
}

/**
 * Per-key limits: requests per window, concurrent requests and tokens per minute, taken in one
 * atomic admission by the store (one round trip; all or nothing, so concurrent requests cannot
 * overshoot and a refusal counts nothing). Tokens are reserved before forwarding (prompt bound
 * + max_tokens) and what was not used is refunded, with the slot freed, when the response
 * ends. Every response carries the x-ratelimit-* headers, streams included.
 */
export function keyRateLimits(options: Options): MiddlewareHandler {
  const { store, metrics } = options
  const log = createLogLimiter(options.logger)
  return async (c, next) => {
    const principal = c.get('principal')
    const request = c.get('apiRequest')
    const lifecycle = c.get('lifecycle')
    const limits = principal.limits === undefined ? options.defaults : { ...options.defaults, ...principal.limits }
    const reserved = request ? request.promptTokenBound + request.maxCompletionTokens : 0
    const want: AdmissionRequest = {}
    if (limits.requestsPerWindow)
      want.requests = { limit: limits.requestsPerWindow, windowSeconds: limits.requestWindowSeconds ?? 60 }
    if (limits.maxConcurrent) want.maxConcurrent = limits.maxConcurrent
    if (limits.tokensPerMinute && request) want.tokens = { cost: reserved, perMinute: limits.tokensPerMinute }
    if (!want.requests && !want.maxConcurrent && !want.tokens) return next()

    let admission: Admission | undefined
    try {
      admission = await store.admit(limitKey(principal), want)
    } catch (error) {
      // The stores fall back to memory themselves; anything that still fails lets the request through.
      log(
        'warn',
        'admit',
        { operation: 'admit', error: errorMessage(error) },
        'rate limit store failed; request allowed',
      )
    }
    if (!admission) return next()
    const headers = rateLimitHeaders({ requests: admission.requests, tokens: admission.tokens })
    if (!admission.allowed) {
      metrics.rateLimited({ limit: admission.refusedBy })
      const message =
        admission.refusedBy === 'requests'
          ? ['Rate limit reached for requests; retry after the reset', 'rate_limit_exceeded']
          : admission.refusedBy === 'concurrency'
            ? [
                `Too many requests in flight for this key (at most ${limits.maxConcurrent})`,
                'concurrency_limit_exceeded',
              ]
            : [
                `Rate limit reached for tokens: this request may use up to ${reserved} tokens and ${admission.tokens?.remaining ?? 0} of ${limits.tokensPerMinute} per minute remain`,
                'rate_limit_exceeded',
              ]
      throw gatewayError(429, message[0], message[1], {
        headers: { ...headers, 'retry-after': String(admission.retryAfterSeconds) },
      })
    }
    Object.assign(lifecycle.headers, headers)
    const settle = admission.settle
    lifecycle.onEnd((record) => {
      // A client that left mid-answer is charged its reservation: the backend worked for it.
      const used =
        record.cache === 'HIT'
          ? 0
          : record.usage
            ? record.usage.promptTokens + record.usage.completionTokens
            : record.status === 200 || record.outcome === 'client_closed'
              ? reserved
              : 0
      return settle(used)
    })
    await next()
  }
}

/**
 * The name of a caller's counters, unique per caller: config-file keys, admin-API keys, JWT
 * subjects and the anonymous principal each have their own namespace, so no two of them can
 * share counters even when their ids are equal.
 */
export function limitKey(principal: Principal): string {
  if (principal.via === 'jwt') return `jwt:${principal.id}`
  return principal.source ? `api_key:${principal.source}:${principal.id}` : 'anonymous'
}
