import { DurableObject } from 'cloudflare:workers'
import { type AdmissionOutcome, type CounterState, LimitCounters } from '../limits/counters.ts'
import type { AdmissionRequest, Decision } from '../types.ts'
import type { RateLimiterRpc } from './rate-limits.ts'
import type { DurableObjectState } from './runtime.ts'

const STATE_KEY = 'state'

/**
 * One rate-limit key's counters (a caller's requests per window, token budget and
 * concurrency slots, or one client IP's failed authentications), as a Durable Object: one
 * instance per key in the whole world, running one call at a time, so every gateway isolate
 * sees the same count and a check-and-update is atomic.
 *
 * Each change is written to the object's storage without awaiting it: the runtime's output
 * gate holds the reply until the write is durable, so a restart (eviction, deploy) never
 * forgets a granted request. An alarm deletes the storage once everything in it has expired.
 */
export class RateLimiterObject extends DurableObject<unknown, DurableObjectState> implements RateLimiterRpc {
  private counters = new LimitCounters()
  private alarmAt: number | null = null

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env)
    void ctx.blockConcurrencyWhile(async () => {
      const stored = await ctx.storage.get<CounterState>(STATE_KEY)
      if (stored) this.counters = new LimitCounters(stored)
      this.alarmAt = await ctx.storage.getAlarm()
    })
  }

  hitRequest(limit: number, windowMs: number): Decision {
    return this.saved(this.counters.hit(limit, windowMs, Date.now()))
  }

  admit(want: AdmissionRequest, slotId: string, slotTtlMs: number): AdmissionOutcome {
    return this.saved(this.counters.admit(want, slotId, slotTtlMs, Date.now()))
  }

  renew(slotId: string, slotTtlMs: number): boolean {
    return this.saved(this.counters.renew(slotId, slotTtlMs, Date.now()))
  }

  settle(slotId: string | undefined, refund: number, tokenWindow: number | undefined): void {
    this.saved(this.counters.settle(slotId, refund, tokenWindow, Date.now()))
  }

  async alarm(): Promise<void> {
    this.alarmAt = null
    const expiresAt = this.counters.expiresAt(Date.now())
    if (expiresAt === null) {
      this.counters = new LimitCounters()
      await this.ctx.storage.deleteAll()
      return
    }
    this.persist(expiresAt)
  }

  /** Writes the state if the call changed it, and returns the call's result. */
  private saved<T>(result: T): T {
    if (this.counters.dirty) this.persist(this.counters.expiresAt(Date.now()))
    return result
  }

  private persist(expiresAt: number | null): void {
    this.counters.dirty = false
    void this.ctx.storage.put(STATE_KEY, this.counters.state)
    // One alarm at a time: when it fires it sets the next one if something is still held.
    if (expiresAt !== null && this.alarmAt === null) {
      this.alarmAt = expiresAt
      void this.ctx.storage.setAlarm(expiresAt)
    }
  }
}
