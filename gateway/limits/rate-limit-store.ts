import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'
import type { RedisClient } from '../stores/redis-client.ts'
import type { Decision, GatewayMetrics, LimitState, Logger, RateLimitStore } from '../types.ts'
import { type ConcurrencySlots, createMemorySlots, createRedisSlots } from './slots.ts'

type Kind = 'requests' | 'tokens'
type LimiterFactory = (kind: Kind, points: number, durationSeconds: number) => RateLimiterAbstract

const TOKEN_WINDOW_SECONDS = 60

/** Counters in this process: for a single gateway instance. */
export function createMemoryRateLimits(): RateLimitStore {
  return createRateLimitStore((kind, points, duration) => new RateLimiterMemory({ keyPrefix: kind, points, duration }), createMemorySlots())
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
 * Counters shared by every gateway instance through Redis. While Redis is unreachable each
 * limiter answers from an in-memory insurance limiter (limits then hold per instance), and it
 * uses Redis again as soon as the client reconnects: nothing to switch back by hand.
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
  const makeLimiter: LimiterFactory = (kind, points, duration) =>
    new RateLimiterRedis({
      storeClient: redis,
      // The limit is not part of the Redis key, so changing a key's limit keeps its count.
      keyPrefix: `${prefix}rl:${kind}:${duration}s`,
      points,
      duration,
      // Go straight to the insurance limiter instead of sending commands that must fail.
      rejectIfRedisNotReady: true,
      insuranceLimiter: new InsuranceLimiter({ keyPrefix: kind, points, duration }, onFallback),
    })
  const slots = createRedisSlots(redis, {
    prefix,
    slotTtlMs: options.slotTtlMs ?? 10 * 60_000,
    fallback: createMemorySlots(),
    metrics: { storeError: (store, operation) => (store === 'redis' ? onFallback(operation) : metrics.storeError(store, operation)) },
  })
  return createRateLimitStore(makeLimiter, slots)
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
  override reward(...args: Parameters<RateLimiterMemory['reward']>) {
    this.onUse('rate_limit_reward')
    return super.reward(...args)
  }
  override penalty(...args: Parameters<RateLimiterMemory['penalty']>) {
    this.onUse('rate_limit_penalty')
    return super.penalty(...args)
  }
  override get(...args: Parameters<RateLimiterMemory['get']>) {
    this.onUse('rate_limit_get')
    return super.get(...args)
  }
}

function createRateLimitStore(makeLimiter: LimiterFactory, slots: ConcurrencySlots): RateLimitStore {
  // Keys carry their own limits, so there is one limiter per distinct (kind, points, window).
  const limiters = new Map<string, RateLimiterAbstract>()
  const limiterFor = (kind: Kind, points: number, durationSeconds: number) => {
    const id = `${kind}:${points}:${durationSeconds}`
    let limiter = limiters.get(id)
    if (!limiter) limiters.set(id, (limiter = makeLimiter(kind, points, durationSeconds)))
    return limiter
  }
  const tokenLimiter = (perMinute: number) => limiterFor('tokens', perMinute, TOKEN_WINDOW_SECONDS)

  return {
    async hitRequest(key, limit, windowSeconds): Promise<Decision> {
      // The stores expire counters in whole seconds.
      const limiter = limiterFor('requests', limit, Math.max(1, Math.ceil(windowSeconds)))
      try {
        return { allowed: true, state: stateOf(limit, await limiter.consume(key, 1)) }
      } catch (error) {
        const refused = asRefusal(error)
        return { allowed: false, state: stateOf(limit, refused), retryAfterSeconds: retryAfter(refused) }
      }
    },

    async reserveTokens(key, tokens, perMinute): Promise<Decision> {
      const limiter = tokenLimiter(perMinute)
      const cost = Math.ceil(tokens)
      if (cost <= 0) return { allowed: true, state: await peek(limiter, key, perMinute) }
      // Could never fit, not even in an empty window: refuse without counting anything.
      if (cost > perMinute) return { allowed: false, state: await peek(limiter, key, perMinute), retryAfterSeconds: TOKEN_WINDOW_SECONDS }
      try {
        // One atomic INCRBY (Lua) in Redis: concurrent reservations see each other's points,
        // so the sum of granted reservations can never pass the budget.
        return { allowed: true, state: stateOf(perMinute, await limiter.consume(key, cost)) }
      } catch (error) {
        const refused = asRefusal(error)
        // The limiter counted the refused points too: give them back so a refusal reserves nothing.
        const after = await giveBack(limiter, key, cost)
        return { allowed: false, state: stateOf(perMinute, after), retryAfterSeconds: retryAfter(refused) }
      }
    },

    async refundTokens(key, tokens, perMinute) {
      const points = Math.floor(tokens)
      if (points > 0) await giveBack(tokenLimiter(perMinute), key, points)
    },

    peekTokens: (key, perMinute) => peek(tokenLimiter(perMinute), key, perMinute),

    acquireSlot: (key, max) => slots.acquire(key, max),
  }
}

/** `reward`, without ever leaving the counter below zero. */
async function giveBack(limiter: RateLimiterAbstract, key: string, points: number): Promise<RateLimiterRes> {
  const res = await limiter.reward(key, points)
  // A reward that lands after its window expired starts a new window below zero, which would
  // be extra budget: add the difference back (atomically, so concurrent consumes still count).
  if (res.consumedPoints < 0) return limiter.penalty(key, -res.consumedPoints)
  return res
}

async function peek(limiter: RateLimiterAbstract, key: string, limit: number): Promise<LimitState> {
  const res = await limiter.get(key)
  return res ? stateOf(limit, res) : { limit, remaining: limit, resetSeconds: 0 }
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
