import type { Decision, RateLimitStore } from '../types.ts'
import { keepAlive } from './keep-alive.ts'
import type { RateLimiterRpc } from './limit-counters.ts'
import type { DurableObjectNamespace } from './runtime.ts'

const TOKEN_WINDOW_MS = 60_000

export interface DurableObjectRateLimitOptions {
  /** A concurrency slot not released within this long is reclaimed (an isolate that died mid-request). Default 10 minutes. */
  slotTtlMs?: number
}

/**
 * The RateLimitStore of the Workers gateway: every limit key is its own Durable Object
 * (RateLimiterObject), so the counters are global and strongly consistent, and the keys of
 * different callers never contend. Writes that happen after the response (refunds, slot
 * releases) keep the request alive until they are done.
 */
export function createDurableObjectRateLimits(namespace: DurableObjectNamespace<RateLimiterRpc>, options: DurableObjectRateLimitOptions = {}): RateLimitStore {
  const slotTtlMs = options.slotTtlMs ?? 10 * 60_000
  // A stub is cheap and belongs to the request that made it, so each call makes its own.
  const counters = (name: string) => namespace.get(namespace.idFromName(name))

  return {
    hitRequest(key, limit, windowSeconds): Promise<Decision> {
      // The window is part of the name, so a key whose window changes starts a fresh count.
      const window = Math.max(1, Math.ceil(windowSeconds))
      return counters(`${key}@${window}s`).hitRequest(limit, window * 1000)
    },
    reserveTokens: (key, tokens, perMinute) => counters(key).reserveTokens(Math.ceil(tokens), perMinute, TOKEN_WINDOW_MS),
    async refundTokens(key, tokens) {
      const points = Math.floor(tokens)
      if (points > 0) await keepAlive(counters(key).refundTokens(points))
    },
    peekTokens: (key, perMinute) => counters(key).peekTokens(perMinute),
    async acquireSlot(key, max) {
      if (max <= 0) return { allowed: false }
      const id = crypto.randomUUID()
      if (!(await counters(key).acquireSlot(id, max, slotTtlMs))) return { allowed: false }
      let released: Promise<void> | undefined
      // Idempotent: a second call must not free someone else's slot.
      return { allowed: true, release: () => (released ??= keepAlive(counters(key).releaseSlot(id))) }
    },
  }
}
