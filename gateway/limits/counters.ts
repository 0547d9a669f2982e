import type { Admission, AdmissionRefusal, AdmissionRequest, Decision, LimitState } from '../types.ts'

/** One fixed window: it starts with its first use and resets whole at `resetAt` (ms). */
export interface Window {
  used: number
  resetAt: number
}

/** What one caller's counters hold: named windows (requests, tokens) and concurrency slots. */
export interface CounterState {
  windows: Record<string, Window>
  /** Slot id → expiry (ms). */
  slots: Record<string, number>
}

/**
 * An admission decided, as plain data (it crosses Workers RPC). A grant carries the token
 * window it reserved in (`tokenWindow`, its reset time), so a refund never lands in a later one.
 */
export type AdmissionOutcome =
  | { allowed: true; requests?: LimitState; tokens?: LimitState; tokenWindow?: number }
  | AdmissionRefusal

export const TOKEN_WINDOW_MS = 60_000
const TOKENS = 'tokens'
const requestWindow = (windowMs: number) => `requests:${windowMs}`

/**
 * The limit counters of one caller, as plain synchronous logic. The memory store keeps one per
 * key; on Workers the Durable Object that owns a key runs one call at a time. Either way a
 * check and its update cannot interleave with another caller's, which is what makes admission
 * all-or-nothing and concurrent token reservations unable to overshoot. The Redis store runs
 * the same rules as one Lua script (node/limits/redis-admission.ts).
 */
export class LimitCounters {
  /** Set by every change, cleared by whoever persists the state. */
  dirty = false
  readonly state: CounterState

  /**
   * Kept beside the plain state (which is what gets persisted): how many slots are held and
   * when the first expires, so an admission neither counts nor scans them; slots live for
   * minutes, so a scan is rare.
   */
  private slotCount: number
  private firstSlotExpiry = 0

  constructor(state?: Partial<CounterState>) {
    this.state = { windows: state?.windows ?? {}, slots: state?.slots ?? {} }
    this.slotCount = 0
    this.pruneSlots(Number.NEGATIVE_INFINITY)
  }

  /** Counts one hit of a plain request window (per-IP guard); refuses past the limit without counting. */
  hit(limit: number, windowMs: number, now: number): Decision {
    const name = requestWindow(windowMs)
    const window = this.liveWindow(name, now)
    if (window && window.used + 1 > limit) return refusal(limit, window.used, window.resetAt - now)
    const counted = this.count(name, 1, windowMs, now)
    return { allowed: true, state: stateOf(limit, counted.used, counted.resetAt - now) }
  }

  /**
   * Requests in the window, then concurrency, then tokens: all granted, or nothing counted.
   * A reservation larger than the whole budget is refused (retry after a full window).
   */
  admit(want: AdmissionRequest, slotId: string, slotTtlMs: number, now: number): AdmissionOutcome {
    const requestMs = want.requests ? Math.max(1, Math.ceil(want.requests.windowSeconds)) * 1000 : 0
    const requestName = requestWindow(requestMs)
    const requestLive = want.requests ? this.liveWindow(requestName, now) : undefined
    const tokenLive = want.tokens ? this.liveWindow(TOKENS, now) : undefined
    const requests =
      want.requests &&
      (requestLive
        ? stateOf(want.requests.limit, requestLive.used, requestLive.resetAt - now)
        : fresh(want.requests.limit))
    const tokens =
      want.tokens &&
      (tokenLive
        ? stateOf(want.tokens.perMinute, tokenLive.used, tokenLive.resetAt - now)
        : fresh(want.tokens.perMinute))
    const refuse = (refusedBy: 'requests' | 'concurrency' | 'tokens', msLeft: number): AdmissionOutcome => ({
      allowed: false,
      refusedBy,
      retryAfterSeconds: Math.max(1, Math.ceil(msLeft / 1000)),
      requests,
      tokens,
    })

    if (want.requests && requestLive && requestLive.used + 1 > want.requests.limit)
      return refuse('requests', requestLive.resetAt - now)
    if (want.maxConcurrent !== undefined) {
      this.pruneSlots(now)
      // A slot frees when its request ends, at the latest when it expires: that is the retry time promised.
      if (this.slotCount >= want.maxConcurrent) return refuse('concurrency', this.firstSlotExpiry - now)
    }
    const cost = want.tokens ? Math.ceil(want.tokens.cost) : 0
    if (want.tokens && cost > want.tokens.perMinute) return refuse('tokens', TOKEN_WINDOW_MS)
    if (want.tokens && cost > 0 && tokenLive && tokenLive.used + cost > want.tokens.perMinute)
      return refuse('tokens', tokenLive.resetAt - now)

    const granted: Extract<AdmissionOutcome, { allowed: true }> = { allowed: true, requests, tokens }
    if (want.requests) {
      const counted = this.count(requestName, 1, requestMs, now)
      granted.requests = stateOf(want.requests.limit, counted.used, counted.resetAt - now)
    }
    if (want.maxConcurrent !== undefined) {
      if (!(slotId in this.state.slots)) this.slotCount++
      this.state.slots[slotId] = now + slotTtlMs
      this.firstSlotExpiry = this.slotCount === 1 ? now + slotTtlMs : Math.min(this.firstSlotExpiry, now + slotTtlMs)
      this.dirty = true
    }
    if (want.tokens && cost > 0) {
      const counted = this.count(TOKENS, cost, TOKEN_WINDOW_MS, now)
      granted.tokens = stateOf(want.tokens.perMinute, counted.used, counted.resetAt - now)
      granted.tokenWindow = counted.resetAt
    }
    return granted
  }

  /** Extends a held slot's lease to `now + slotTtlMs`; false when it is no longer held (expired). */
  renew(slotId: string, slotTtlMs: number, now: number): boolean {
    this.pruneSlots(now)
    if (!(slotId in this.state.slots)) return false
    // The cached first expiry may now be early: that only brings the next recount forward.
    this.state.slots[slotId] = now + slotTtlMs
    this.dirty = true
    return true
  }

  /** Frees a slot and gives back tokens of the window they were reserved in (never below zero). */
  settle(slotId: string | undefined, refund: number, tokenWindow: number | undefined, now: number): void {
    if (slotId !== undefined && slotId in this.state.slots) {
      delete this.state.slots[slotId]
      this.slotCount--
      this.dirty = true
    }
    const window = this.liveWindow(TOKENS, now)
    if (refund > 0 && window && window.resetAt === tokenWindow) {
      window.used = Math.max(0, window.used - refund)
      this.dirty = true
    }
  }

  /** When everything held now will have expired; null when nothing is held. */
  expiresAt(now: number): number | null {
    this.pruneSlots(now)
    const times = Object.values(this.state.slots)
    for (const [name, window] of Object.entries(this.state.windows)) {
      if (window.resetAt > now) times.push(window.resetAt)
      else delete this.state.windows[name]
    }
    return times.length ? Math.max(...times) : null
  }

  private liveWindow(name: string, now: number): Window | undefined {
    const window = this.state.windows[name]
    return window && window.resetAt > now ? window : undefined
  }

  private count(name: string, points: number, windowMs: number, now: number): Window {
    const window = this.liveWindow(name, now) ?? (this.state.windows[name] = { used: 0, resetAt: now + windowMs })
    window.used += points
    this.dirty = true
    return window
  }

  /** Drops expired slots (all of them are recounted); a no-op until the first one expires. */
  private pruneSlots(now: number): void {
    if (this.slotCount > 0 && this.firstSlotExpiry > now) return
    let count = 0
    let first = Number.POSITIVE_INFINITY
    for (const id in this.state.slots) {
      const expiry = this.state.slots[id]
      if (expiry > now) {
        count++
        first = Math.min(first, expiry)
        continue
      }
      delete this.state.slots[id]
      this.dirty = true
    }
    this.slotCount = count
    this.firstSlotExpiry = first
  }
}

export function stateOf(limit: number, used: number, msLeft: number): LimitState {
  return { limit, remaining: Math.min(limit, Math.max(0, limit - used)), resetSeconds: Math.max(0, msLeft) / 1000 }
}

const fresh = (limit: number): LimitState => ({ limit, remaining: limit, resetSeconds: 0 })

function refusal(limit: number, used: number, msLeft: number): Decision {
  return {
    allowed: false,
    state: stateOf(limit, used, msLeft),
    retryAfterSeconds: Math.max(1, Math.ceil(msLeft / 1000)),
  }
}

/**
 * The Admission a store hands back: a grant's settle runs at most once (a second call must not
 * free someone else's slot) and refunds what was reserved but not used.
 */
export function toAdmission(
  outcome: AdmissionOutcome,
  want: AdmissionRequest,
  settle: (refund: number, tokenWindow: number | undefined) => Promise<void>,
): Admission {
  if (!outcome.allowed) return outcome
  const reserved = outcome.tokenWindow === undefined ? 0 : Math.ceil(want.tokens!.cost)
  let settled: Promise<void> | undefined
  return {
    allowed: true,
    requests: outcome.requests,
    tokens: outcome.tokens,
    settle: (usedTokens) =>
      (settled ??= settle(Math.max(0, reserved - Math.max(0, Math.floor(usedTokens))), outcome.tokenWindow)),
  }
}

/** Admission from counters in this process: for a single gateway, and while Redis is unreachable. */
export function createMemoryAdmission(
  options: { slotTtlMs?: number } = {},
): (key: string, want: AdmissionRequest) => Promise<Admission> {
  const slotTtlMs = options.slotTtlMs ?? 10 * 60_000
  const counters = new Map<string, LimitCounters>()
  let calls = 0
  let slots = 0
  return async (key, want) => {
    const now = Date.now()
    // Bounded: counters that hold nothing live are dropped now and then.
    if (++calls % 1024 === 0) for (const [k, c] of counters) if (c.expiresAt(now) === null) counters.delete(k)
    let own = counters.get(key)
    if (!own) counters.set(key, (own = new LimitCounters()))
    const slotId = want.maxConcurrent === undefined ? undefined : String(++slots)
    const outcome = own.admit(want, slotId ?? '', slotTtlMs, now)
    return toAdmission(outcome, want, async (refund, tokenWindow) =>
      (counters.get(key) ?? own).settle(slotId, refund, tokenWindow, Date.now()),
    )
  }
}
