import CircuitBreaker from 'opossum'
import type { RoutingConfig } from '../config/schema.ts'
import type { AttemptOutcome, BreakerState, Logger, RoutingMetrics } from '../types.ts'

/**
 * Errors that say nothing about the node's health (a busy answer, a client that left) carry
 * `countsAgainstNode: false` (proxy/errors.ts).
 */
const notTheNodes = (error: unknown) => (error as { countsAgainstNode?: unknown } | null)?.countsAgainstNode === false

/** One try's outcome, kept for the status page's recent error rate and latency. */
interface RecentResult {
  at: number
  ok: boolean
  ms: number
}

const RECENT_LIMIT = 200
const RECENT_WINDOW_MS = 60_000
/** Slices of the breaker's rolling window. */
const BREAKER_BUCKETS = 10

/**
 * What opossum calls on its rotateBucketController ('rotate' is its only event): a Node
 * EventEmitter's part of it, so the core needs no node:events.
 */
class RotationSignal {
  private readonly listeners = new Set<() => void>()
  on(_event: 'rotate', listener: () => void): this {
    this.listeners.add(listener)
    return this
  }
  removeListener(_event: 'rotate', listener: () => void): this {
    this.listeners.delete(listener)
    return this
  }
  listenerCount(_event: 'rotate', listener?: () => void): number {
    return listener ? Number(this.listeners.has(listener)) : this.listeners.size
  }
  rotate(): void {
    for (const listener of this.listeners) listener()
  }
}

/**
 * A backend node and everything the router knows about it: active health verdict, passive
 * outlier ejection, its circuit breaker (opossum), in-flight count and recent results.
 */
export class BackendNode {
  readonly labels: { region: string; backend: string }
  inFlight = 0
  /** Verdict of the active health checks; optimistic until the first check says otherwise. */
  healthy = true
  /** Taken out by passive outlier detection until a health check passes again. */
  ejected = false
  lastCheck: { at: string; ok: boolean; detail?: string } | undefined
  private checkPasses = 0
  private checkFailures = 0
  private consecutiveFailures = 0
  private readonly recent: RecentResult[] = []
  private breaker: CircuitBreaker<[() => Promise<unknown>], unknown>
  /**
   * Without timers (hooks.timers false: Workers, where a timer dies with the request that set
   * it) maintain() rotates the breaker's rolling window through this, and half-opens it.
   */
  private readonly rotation: RotationSignal | undefined
  private rotatedAt = Date.now()
  /** Shut down (left the topology): a check or breaker event still under way reports no metrics. */
  private retired = false
  private openedAt = 0

  constructor(
    readonly id: string,
    readonly region: string,
    readonly url: string,
    readonly weight: number,
    readonly models: ReadonlySet<string> | null,
    private readonly settings: Pick<RoutingConfig, 'breaker' | 'healthCheck' | 'outlier'>,
    private readonly hooks: { metrics: RoutingMetrics; logger: Logger; timers?: boolean },
  ) {
    this.labels = { region, backend: id }
    this.rotation = hooks.timers === false ? new RotationSignal() : undefined
    this.breaker = this.createBreaker(false)
    hooks.metrics.breaker(this.labels, 'closed', false)
    hooks.metrics.health(this.labels, true, true)
  }

  /**
   * The timers' work, for runtimes without lasting timers: rotates the breaker's window by the
   * time gone since the last call, and half-opens a breaker open for longer than resetTimeoutMs.
   * A no-op when timers drive the breaker.
   */
  maintain(now = Date.now()): void {
    if (!this.rotation) return
    const { rollingWindowMs, resetTimeoutMs } = this.settings.breaker
    const bucketMs = rollingWindowMs / BREAKER_BUCKETS
    const due = Math.floor((now - this.rotatedAt) / bucketMs)
    if (due > 0) {
      for (let i = 0; i < Math.min(due, BREAKER_BUCKETS); i++) this.rotation.rotate()
      this.rotatedAt += due * bucketMs
    }
    if (this.breaker.opened && now - this.openedAt >= resetTimeoutMs) {
      // opossum half-opens from a timer; instead a breaker is made in that state (opossum's
      // "breaker state initialization", meant for serverless runtimes).
      this.breaker.shutdown()
      this.breaker = this.createBreaker(true)
      this.transitioned('half_open')
    }
  }

  serves(model: string | undefined): boolean {
    return this.models === null || model === undefined || this.models.has(model)
  }

  get breakerState(): BreakerState {
    return this.breaker.opened ? 'open' : this.breaker.halfOpen ? 'half_open' : 'closed'
  }

  /** Worth a try now: healthy, not ejected, and the breaker lets a call through. */
  get usable(): boolean {
    return this.healthy && !this.ejected && this.breakerAllows
  }

  get breakerAllows(): boolean {
    return this.breaker.closed || this.breaker.pendingClose
  }

  /**
   * Runs one try through the breaker. An error with `countsAgainstNode: false` does not count against the node; an
   * open breaker rejects at once with code EOPENBREAKER.
   */
  async run<T>(attempt: () => Promise<T>): Promise<T> {
    const started = Date.now()
    this.setInFlight(+1)
    try {
      const result = (await this.breaker.fire(attempt)) as T
      this.record(true, Date.now() - started)
      return result
    } catch (error) {
      if (!notTheNodes(error) && (error as { code?: string }).code !== 'EOPENBREAKER')
        this.record(false, Date.now() - started)
      throw error
    } finally {
      this.setInFlight(-1)
    }
  }

  /** A failure found after the try had succeeded (a stream that broke or stalled). */
  reportLateFailure(error: Error): void {
    this.record(false, 0)
    this.breaker.fire(() => Promise.reject(error)).catch(() => {})
  }

  /** An active check's result; flips `healthy` after enough in a row. */
  checked(ok: boolean, detail?: string): void {
    this.lastCheck = { at: new Date().toISOString(), ok, detail }
    const h = this.settings.healthCheck
    if (ok) {
      this.checkPasses++
      this.checkFailures = 0
      if (!this.healthy && this.checkPasses >= h.healthyAfter) this.setHealthy(true)
      if (this.ejected) {
        this.ejected = false
        this.consecutiveFailures = 0
        this.hooks.logger.info(this.labels, 'node back after outlier ejection')
      }
    } else {
      this.checkFailures++
      this.checkPasses = 0
      if (this.healthy && this.checkFailures >= h.unhealthyAfter) this.setHealthy(false, detail)
    }
    if (!this.retired) this.hooks.metrics.health(this.labels, ok, this.healthy)
  }

  /** Error rate and latency of the last minute of real traffic. */
  recentStats(): { requests: number; errorRate: number; p50Ms: number | null; p99Ms: number | null } {
    const since = Date.now() - RECENT_WINDOW_MS
    const recent = this.recent.filter((r) => r.at >= since)
    const latencies = recent
      .filter((r) => r.ok)
      .map((r) => r.ms)
      .sort((a, b) => a - b)
    const pick = (q: number) =>
      latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] : null
    return {
      requests: recent.length,
      errorRate: recent.length ? recent.filter((r) => !r.ok).length / recent.length : 0,
      p50Ms: pick(0.5),
      p99Ms: pick(0.99),
    }
  }

  shutdown(): void {
    this.retired = true
    this.breaker.shutdown()
  }

  private createBreaker(halfOpen: boolean): CircuitBreaker<[() => Promise<unknown>], unknown> {
    const b = this.settings.breaker
    const options: CircuitBreaker.Options & { state?: { closed: boolean; halfOpen: boolean } } = {
      timeout: false, // tries have their own deadlines
      errorThresholdPercentage: b.errorThresholdPercentage,
      volumeThreshold: b.volumeThreshold,
      resetTimeout: b.resetTimeoutMs,
      rollingCountTimeout: b.rollingWindowMs,
      rollingCountBuckets: BREAKER_BUCKETS,
      // opossum types it as a Node EventEmitter; it calls only on, removeListener and listenerCount.
      rotateBucketController: this.rotation as CircuitBreaker.Options['rotateBucketController'],
      // Latency percentiles and snapshot events cost per call and nothing here reads them
      // (the status page keeps its own recent latencies).
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      errorFilter: notTheNodes,
      // `state` is opossum's documented option, missing from @types/opossum.
      ...(halfOpen ? { state: { closed: false, halfOpen: true } } : {}),
    }
    const breaker = new CircuitBreaker((run: () => Promise<unknown>) => run(), options)
    breaker.on('open', () => {
      this.openedAt = Date.now()
      this.transitioned('open')
    })
    breaker.on('halfOpen', () => this.transitioned('half_open'))
    breaker.on('close', () => this.transitioned('closed'))
    return breaker
  }

  private transitioned(state: BreakerState): void {
    if (!this.retired) this.hooks.metrics.breaker(this.labels, state, true)
    const log = state === 'open' ? this.hooks.logger.warn : this.hooks.logger.info
    log.call(this.hooks.logger, { ...this.labels, breaker: state }, `circuit breaker ${state.replace('_', '-')}`)
  }

  private record(ok: boolean, ms: number): void {
    this.recent.push({ at: Date.now(), ok, ms })
    if (this.recent.length > RECENT_LIMIT) this.recent.splice(0, this.recent.length - RECENT_LIMIT)
    if (ok) {
      this.consecutiveFailures = 0
      return
    }
    this.consecutiveFailures++
    if (!this.ejected && this.consecutiveFailures >= this.settings.outlier.consecutiveFailures) {
      this.ejected = true
      this.hooks.logger.warn(
        { ...this.labels, failures: this.consecutiveFailures },
        'node ejected after consecutive failures; back when a health check passes',
      )
    }
  }

  private setHealthy(healthy: boolean, detail?: string): void {
    this.healthy = healthy
    if (healthy) this.hooks.logger.info(this.labels, 'node healthy')
    else this.hooks.logger.warn({ ...this.labels, detail }, 'node unhealthy')
  }

  private setInFlight(delta: number): void {
    this.inFlight += delta
    this.hooks.metrics.inFlight(this.labels, this.inFlight)
  }
}

export type { AttemptOutcome }
