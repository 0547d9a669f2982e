import { RateLimiterMemory, RateLimiterRedis } from 'rate-limiter-flexible'
import { createMemoryAdmission } from '../../limits/counters.ts'
import { createRateLimitStore, type LimiterFactory } from '../../limits/rate-limit-store.ts'
import type { GatewayMetrics, Logger, RateLimitStore } from '../../types.ts'
import type { RedisClient } from '../stores/redis-client.ts'
import { createRedisAdmission } from './redis-admission.ts'

export interface RedisRateLimitOptions {
  logger: Logger
  metrics: Pick<GatewayMetrics, 'storeError'>
  /** Namespace for every Redis key. Default `sy:`. */
  prefix?: string
  /** A concurrency slot not released within this long is reclaimed. Default 10 minutes. */
  slotTtlMs?: number
}

/**
 * Counters shared by every gateway instance through Redis. While Redis is unreachable the
 * counters in this process answer (limits then hold per instance: rate-limiter-flexible's
 * insurance limiter for the per-IP guard, memory admission for per-key limits), and Redis is
 * used again as soon as the client reconnects: nothing to switch back by hand.
 */
export function createRedisRateLimits(redis: RedisClient, options: RedisRateLimitOptions): RateLimitStore {
  const { logger, metrics } = options
  const prefix = options.prefix ?? 'sy:'
  let fallbackLogged = false
  redis.on('ready', () => (fallbackLogged = false))
  const onFallback = (operation: string) => {
    metrics.storeError('redis', operation)
    if (fallbackLogged) return
    fallbackLogged = true
    logger.warn({ store: 'redis' }, 'rate limits counting in memory (per instance) until redis is back')
  }
  const makeLimiter: LimiterFactory = (points, duration) =>
    new RateLimiterRedis({
      storeClient: redis,
      // The limit is not part of the Redis key, so changing a key's limit keeps its count.
      keyPrefix: `${prefix}rl:requests:${duration}s`,
      points,
      duration,
      // Go straight to the insurance limiter instead of sending commands that must fail.
      rejectIfRedisNotReady: true,
      insuranceLimiter: new InsuranceLimiter({ keyPrefix: 'requests', points, duration }, onFallback),
    })
  const slotTtlMs = options.slotTtlMs ?? 10 * 60_000
  const admit = createRedisAdmission(redis, {
    prefix,
    slotTtlMs,
    fallback: createMemoryAdmission({ slotTtlMs }),
    onFallback,
  })
  return createRateLimitStore(makeLimiter, admit)
}

/** rate-limiter-flexible calls its insurance limiter only when the store failed: report each use. */
class InsuranceLimiter extends RateLimiterMemory {
  constructor(
    options: ConstructorParameters<typeof RateLimiterMemory>[0],
    private readonly onUse: (operation: string) => void,
  ) {
    super(options)
  }
  override consume(...args: Parameters<RateLimiterMemory['consume']>) {
    this.onUse('rate_limit_consume')
    return super.consume(...args)
  }
}
