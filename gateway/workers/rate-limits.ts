import { type AdmissionOutcome, toAdmission } from '../limits/counters.ts'
import type { AdmissionRequest, Decision, RateLimitStore } from '../types.ts'
import { keepAlive } from './keep-alive.ts'
import type { DurableObjectNamespace } from './runtime.ts'

/** The rate-limit object's RPC surface (one object per limit key); times are the object's clock. */
export interface RateLimiterRpc {
  hitRequest(limit: number, windowMs: number): Decision
  admit(want: AdmissionRequest, slotId: string, slotTtlMs: number): AdmissionOutcome
  renew(slotId: string, slotTtlMs: number): boolean
  settle(slotId: string | undefined, refund: number, tokenWindow: number | undefined): void
}

export interface DurableObjectRateLimitOptions {
  /**
   * A concurrency slot is a lease of this length, renewed every third of it while its request
   * runs, so a slot whose request workerd dropped (a client that left, an isolate that died)
   * is free again within this long. Default 15 s: one renewal RPC per held slot every 5 s.
   */
  slotTtlMs?: number
}

/**
 * The RateLimitStore of the Workers gateway: every limit key is its own Durable Object
 * (RateLimiterObject), so the counters are global and strongly consistent, one caller's
 * admission is one call to its object, and the keys of different callers never contend.
 * Settles (slot release, refund) happen after the response and keep the request alive until done.
 */
export function createDurableObjectRateLimits(
  namespace: DurableObjectNamespace<RateLimiterRpc>,
  options: DurableObjectRateLimitOptions = {},
): RateLimitStore {
  const slotTtlMs = options.slotTtlMs ?? 15_000
  // A stub is cheap and belongs to the request that made it, so each call makes its own.
  const counters = (name: string) => namespace.get(namespace.idFromName(name))

  return {
    hitRequest(key, limit, windowSeconds): Promise<Decision> {
      // The window is part of the name, so a key whose window changes starts a fresh count.
      const window = Math.max(1, Math.ceil(windowSeconds))
      return counters(`${key}@${window}s`).hitRequest(limit, window * 1000)
    },
    async admit(key, want) {
      const slotId = want.maxConcurrent === undefined ? undefined : crypto.randomUUID()
      const outcome = await counters(key).admit(want, slotId ?? '', slotTtlMs)
      // The renewals run on the request's timers: when workerd ends the request without the
      // settle below (its client left and the abort came too late), they stop with it.
      const lease =
        outcome.allowed && slotId !== undefined
          ? renewEvery(slotTtlMs / 3, () => counters(key).renew(slotId, slotTtlMs))
          : undefined
      return toAdmission(outcome, want, async (refund, tokenWindow) => {
        if (lease !== undefined) clearInterval(lease)
        if (slotId !== undefined || refund > 0) await keepAlive(counters(key).settle(slotId, refund, tokenWindow))
      })
    },
  }
}

/**
 * Calls `renew` every `intervalMs` until cleared, or until a renewal finds the slot gone (it
 * expired: renewing cannot bring it back). A failed renewal is retried at the next tick.
 */
function renewEvery(intervalMs: number, renew: () => Promise<boolean>): ReturnType<typeof setInterval> {
  const timer = setInterval(() => {
    try {
      renew().then(
        (held) => {
          if (!held) clearInterval(timer)
        },
        () => {},
      )
    } catch {
      // A stub that cannot be used now (its object or runtime is going away): the next tick retries.
    }
  }, intervalMs)
  // Node (the store tests): do not hold the process open. workerd has no unref.
  ;(timer as { unref?: () => void }).unref?.()
  return timer
}
