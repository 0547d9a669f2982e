import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import type { RedisClient } from '../stores/redis-client.ts'
import type { Admission, AdmissionRequest, Decision, GatewayMetrics, LimitState, Logger, RateLimitStore } from '../types.ts'
import { createMemoryAdmission } from './counters.ts'
import { createRedisAdmission } from './redis-admission.ts'

type LimiterFactory = (points: number, durationSeconds: number) => RateLimiterAbstract
type Admit = (key: string, want: AdmissionRequest) => Promise<Admission>

/** Counters in this process: for a single gateway instance. */
export function createMemoryRateLimits(): RateLimitStore {
  return createRateLimitStore((points, duration) => new RateLimiterMemory({ keyPrefix: 'requests', points, duration }), createMemoryAdmission())
}

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
  const admit = createRedisAdmission(redis, { prefix, slotTtlMs, fallback: createMemoryAdmission({ slotTtlMs }), onFallback })
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

function createRateLimitStore(makeLimiter: LimiterFactory, admit: Admit): RateLimitStore {
  // One limiter per distinct (limit, window): callers carry their own limits.
  const limiters = new Map<string, RateLimiterAbstract>()
  const limiterFor = (points: number, durationSeconds: number) => {
    const id = `${points}:${durationSeconds}`
    let limiter = limiters.get(id)
    if (!limiter) limiters.set(id, (limiter = makeLimiter(points, durationSeconds)))
    return limiter
  }

  return {
    async hitRequest(key, limit, windowSeconds): Promise<Decision> {
      // The stores expire counters in whole seconds.
      const limiter = limiterFor(limit, Math.max(1, Math.ceil(windowSeconds)))
      try {
        return { allowed: true, state: stateOf(limit, await limiter.consume(key, 1)) }
      } catch (error) {
        const refused = asRefusal(error)
        return { allowed: false, state: stateOf(limit, refused), retryAfterSeconds: retryAfter(refused) }
      }
    },
    admit,
  }
}

/** rate-limiter-flexible rejects with a RateLimiterRes when over the limit; anything else is a real error. */
function asRefusal(error: unknown): RateLimiterRes {
  if (error instanceof RateLimiterRes) return error
  throw error
}

function stateOf(limit: number, res: RateLimiterRes): LimitState {
  return {
    limit,
    remaining: Math.min(limit, Math.max(0, limit - res.consumedPoints)),
    resetSeconds: Math.max(0, res.msBeforeNext) / 1000,
  }
}

function retryAfter(res: RateLimiterRes): number {
  return Math.max(1, Math.ceil(res.msBeforeNext / 1000))
}
