import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible'
import type { Admission, AdmissionRequest, Decision, LimitState, RateLimitStore } from '../types.ts'
import { createMemoryAdmission } from './counters.ts'

export type LimiterFactory = (points: number, durationSeconds: number) => RateLimiterAbstract
export type Admit = (key: string, want: AdmissionRequest) => Promise<Admission>

/** Counters in this process: for a single gateway instance. */
export function createMemoryRateLimits(): RateLimitStore {
  return createRateLimitStore(
    (points, duration) => new RateLimiterMemory({ keyPrefix: 'requests', points, duration }),
    createMemoryAdmission(),
  )
}

/** A store from a request limiter per (limit, window) and an admission for per-key limits (memory here, Redis on Node). */
export function createRateLimitStore(makeLimiter: LimiterFactory, admit: Admit): RateLimitStore {
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
