import type { Decision, LimitState } from '../types.ts'

/** What one rate-limit Durable Object stores: a fixed window's count, and concurrency slots. */
export interface CounterState {
  window?: { used: number; resetAt: number }
  /** Slot id → expiry (ms). */
  slots: Record<string, number>
}

/** The rate-limit object's RPC surface (one object per limit key); times are the object's clock. */
export interface RateLimiterRpc {
  hitRequest(limit: number, windowMs: number): Decision
  reserveTokens(cost: number, limit: number, windowMs: number): Decision
  refundTokens(points: number): void
  peekTokens(limit: number): LimitState
  acquireSlot(id: string, max: number, ttlMs: number): boolean
  releaseSlot(id: string): void
}

/**
 * The counters of one limit key, as plain synchronous logic: the Durable Object that owns a
 * key runs one call at a time, so a check and its update cannot interleave with another
 * caller's (that is what makes concurrent reservations unable to overshoot). Fixed windows, as
 * the Node gateway's rate-limiter-flexible counters: a window starts with its first use and
 * resets whole.
 */
export class LimitCounters {
  /** Set by every change, cleared by whoever persists the state. */
  dirty = false

  constructor(readonly state: CounterState = { slots: {} }) {}

  hit(limit: number, windowMs: number, now: number): Decision {
    const window = this.liveWindow(now)
    if (window && window.used + 1 > limit) return refusal(limit, window.used, window.resetAt - now)
    const counted = this.count(1, windowMs, now)
    return { allowed: true, state: stateOf(limit, counted.used, counted.resetAt - now) }
  }

  /** All of `cost` or nothing: a refused reservation leaves the count as it was. */
  reserve(cost: number, limit: number, windowMs: number, now: number): Decision {
    if (cost <= 0) return { allowed: true, state: this.peek(limit, now) }
    // Could never fit, not even in an empty window.
    if (cost > limit) return { allowed: false, state: this.peek(limit, now), retryAfterSeconds: Math.max(1, Math.ceil(windowMs / 1000)) }
    const window = this.liveWindow(now)
    if (window && window.used + cost > limit) return refusal(limit, window.used, window.resetAt - now)
    const counted = this.count(cost, windowMs, now)
    return { allowed: true, state: stateOf(limit, counted.used, counted.resetAt - now) }
  }

  /** Gives back points of the current window; never below zero, and nothing into a new window. */
  refund(points: number, now: number): void {
    const window = this.liveWindow(now)
    if (!window || points <= 0) return
    window.used = Math.max(0, window.used - points)
    this.dirty = true
  }

  peek(limit: number, now: number): LimitState {
    const window = this.liveWindow(now)
    return window ? stateOf(limit, window.used, window.resetAt - now) : { limit, remaining: limit, resetSeconds: 0 }
  }

  /** Takes a slot unless `max` unexpired ones are held. A slot not released expires after `ttlMs`. */
  acquire(id: string, max: number, ttlMs: number, now: number): boolean {
    this.pruneSlots(now)
    if (Object.keys(this.state.slots).length >= max) return false
    this.state.slots[id] = now + ttlMs
    this.dirty = true
    return true
  }

  release(id: string): void {
    if (!(id in this.state.slots)) return
    delete this.state.slots[id]
    this.dirty = true
  }

  /** When everything held now will have expired; null when nothing is held. */
  expiresAt(now: number): number | null {
    this.pruneSlots(now)
    const times = Object.values(this.state.slots)
    const window = this.liveWindow(now)
    if (window) times.push(window.resetAt)
    return times.length ? Math.max(...times) : null
  }

  private liveWindow(now: number) {
    const window = this.state.window
    return window && window.resetAt > now ? window : undefined
  }

  private count(points: number, windowMs: number, now: number) {
    const window = this.liveWindow(now) ?? (this.state.window = { used: 0, resetAt: now + windowMs })
    window.used += points
    this.dirty = true
    return window
  }

  private pruneSlots(now: number): void {
    for (const [id, expiresAt] of Object.entries(this.state.slots)) {
      if (expiresAt > now) continue
      delete this.state.slots[id]
      this.dirty = true
    }
  }
}

function stateOf(limit: number, used: number, msLeft: number): LimitState {
  return { limit, remaining: Math.min(limit, Math.max(0, limit - used)), resetSeconds: Math.max(0, msLeft) / 1000 }
}

function refusal(limit: number, used: number, msLeft: number): Decision {
  return { allowed: false, state: stateOf(limit, used, msLeft), retryAfterSeconds: Math.max(1, Math.ceil(msLeft / 1000)) }
}
