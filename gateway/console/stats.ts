import type { GatewayMetrics } from '../types.ts'

/**
 * The short history behind the console's charts: requests, errors, tokens, cache results and
 * latency histograms in fixed 5-second steps over the last five minutes, in this process (one
 * isolate on Workers). Steps are advanced lazily by the clock on each record or read, so it
 * needs no timer and runs the same on Node and Workers. Recording is a few array writes.
 */

export const STEP_SECONDS = 5
export const STEPS = 60
const STEP_MS = STEP_SECONDS * 1000

/** Client-facing traffic; the console's own polling, /status, /metrics and load balancer probes are not counted. */
const API_ROUTES = new Set([
  '/v1/completions',
  '/v1/chat/completions',
  '/generate',
  '/v1/models',
  '/v1/embeddings',
  '/predict',
  '/models',
])
/** Routes whose latency is charted: listing models is not comparable with generating text. */
const GENERATION_ROUTES = new Set(['/v1/completions', '/v1/chat/completions', '/generate'])

// Latency histogram: bucket 0 is below 1 ms, bucket i ≥ 1 holds [1.1^(i-1), 1.1^i) ms, the last
// is open-ended (1.1^139 ms ≈ 9 min). A percentile is reported as its bucket's geometric middle,
// so it is within 5% of the true value.
const GROWTH = 1.1
const LOG_GROWTH = Math.log(GROWTH)
const BUCKETS = 140

function bucketOf(ms: number): number {
  if (!(ms >= 1)) return 0
  return Math.min(BUCKETS - 1, 1 + Math.floor(Math.log(ms) / LOG_GROWTH))
}

function percentile(histogram: Uint32Array, count: number, q: number): number | null {
  if (count === 0) return null
  const rank = Math.max(1, Math.ceil(q * count))
  let seen = 0
  for (let i = 0; i < BUCKETS; i++) {
    seen += histogram[i]
    if (seen < rank) continue
    if (i === 0) return 0.5
    const ms = i === BUCKETS - 1 ? GROWTH ** (i - 1) : GROWTH ** (i - 0.5)
    return Math.round(ms * 10) / 10
  }
  return null
}

/** The ring slot of a step (a test clock may start near zero, so indexes can be negative). */
const slotOf = (index: number) => ((index % STEPS) + STEPS) % STEPS

interface Step {
  /** Step number since the epoch (time / STEP_SECONDS); -1 for a slot never used. */
  index: number
  requests: number
  clientErrors: number
  serverErrors: number
  promptTokens: number
  completionTokens: number
  cacheHits: number
  cacheMisses: number
  latencyCount: number
  latency: Uint32Array
  firstByteCount: number
  firstByte: Uint32Array
}

function emptyStep(index: number): Step {
  return {
    index,
    requests: 0,
    clientErrors: 0,
    serverErrors: 0,
    promptTokens: 0,
    completionTokens: 0,
    cacheHits: 0,
    cacheMisses: 0,
    latencyCount: 0,
    latency: new Uint32Array(BUCKETS),
    firstByteCount: 0,
    firstByte: new Uint32Array(BUCKETS),
  }
}

/** A step nothing was recorded in (read only). */
const NO_TRAFFIC = emptyStep(-1)

/**
 * One finished 5-second step, as rates (per second) and percentiles (ms; null with no samples).
 * Steps from before this process started have no data: every value is null.
 */
export interface SeriesPoint {
  /** Start of the step, ms since the epoch. */
  at: number
  requestsPerSecond: number | null
  clientErrorsPerSecond: number | null
  serverErrorsPerSecond: number | null
  promptTokensPerSecond: number | null
  completionTokensPerSecond: number | null
  /** (hits + coalesced) / lookups of cacheable requests; null when nothing was looked up. */
  cacheHitRate: number | null
  latencyP50Ms: number | null
  latencyP95Ms: number | null
  latencyP99Ms: number | null
  firstByteP50Ms: number | null
}

export interface Totals {
  since: string
  requests: number
  serverErrors: number
  promptTokens: number
  completionTokens: number
}

export class ConsoleStats {
  private readonly steps: Step[] = Array.from({ length: STEPS }, () => emptyStep(-1))
  private readonly totals = { requests: 0, serverErrors: 0, promptTokens: 0, completionTokens: 0 }
  private readonly startedAt: number

  constructor(private readonly now: () => number = Date.now) {
    this.startedAt = now()
  }

  request(route: string, status: number, seconds: number): void {
    if (!API_ROUTES.has(route)) return
    const step = this.current()
    step.requests++
    this.totals.requests++
    if (status >= 500) {
      step.serverErrors++
      this.totals.serverErrors++
    } else if (status >= 400) step.clientErrors++
    if (status < 400 && GENERATION_ROUTES.has(route)) {
      step.latency[bucketOf(seconds * 1000)]++
      step.latencyCount++
    }
  }

  firstByte(route: string, seconds: number): void {
    if (!GENERATION_ROUTES.has(route)) return
    const step = this.current()
    step.firstByte[bucketOf(seconds * 1000)]++
    step.firstByteCount++
  }

  tokens(kind: 'prompt' | 'completion', count: number): void {
    const step = this.current()
    if (kind === 'prompt') {
      step.promptTokens += count
      this.totals.promptTokens += count
    } else {
      step.completionTokens += count
      this.totals.completionTokens += count
    }
  }

  cache(result: 'hit' | 'miss' | 'bypass' | 'coalesced'): void {
    // A coalesced request shared another's backend call, so for load it counts as a hit; a
    // bypass was not cacheable at all and is left out of the rate.
    if (result === 'bypass') return
    const step = this.current()
    if (result === 'miss') step.cacheMisses++
    else step.cacheHits++
  }

  /** The last STEPS finished steps, oldest first; the step in progress is left out so no point is partial. */
  series(): SeriesPoint[] {
    const currentIndex = this.stepIndex()
    const points: SeriesPoint[] = []
    for (let index = currentIndex - STEPS; index < currentIndex; index++) {
      const at = index * STEP_MS
      const end = at + STEP_MS
      if (end <= this.startedAt) {
        points.push({
          at,
          requestsPerSecond: null,
          clientErrorsPerSecond: null,
          serverErrorsPerSecond: null,
          promptTokensPerSecond: null,
          completionTokensPerSecond: null,
          cacheHitRate: null,
          latencyP50Ms: null,
          latencyP95Ms: null,
          latencyP99Ms: null,
          firstByteP50Ms: null,
        })
        continue
      }
      const slot = this.steps[slotOf(index)]
      const step = slot.index === index ? slot : NO_TRAFFIC
      const lookups = step.cacheHits + step.cacheMisses
      // The step the process started in is shorter; at least a second, so a request just after start is no spike.
      const seconds = Math.max(1, (end - Math.max(at, this.startedAt)) / 1000)
      points.push({
        at,
        requestsPerSecond: step.requests / seconds,
        clientErrorsPerSecond: step.clientErrors / seconds,
        serverErrorsPerSecond: step.serverErrors / seconds,
        promptTokensPerSecond: step.promptTokens / seconds,
        completionTokensPerSecond: step.completionTokens / seconds,
        cacheHitRate: lookups ? step.cacheHits / lookups : null,
        latencyP50Ms: percentile(step.latency, step.latencyCount, 0.5),
        latencyP95Ms: percentile(step.latency, step.latencyCount, 0.95),
        latencyP99Ms: percentile(step.latency, step.latencyCount, 0.99),
        firstByteP50Ms: percentile(step.firstByte, step.firstByteCount, 0.5),
      })
    }
    return points
  }

  totalsSinceStart(): Totals {
    return { since: new Date(this.startedAt).toISOString(), ...this.totals }
  }

  private stepIndex(): number {
    return Math.floor(this.now() / STEP_MS)
  }

  private current(): Step {
    const index = this.stepIndex()
    const slot = slotOf(index)
    if (this.steps[slot].index !== index) this.steps[slot] = emptyStep(index)
    return this.steps[slot]
  }
}

// One history per metrics object: the Node entry rebuilds the app on a config reload with the
// same metrics, and the charts should not start over then.
const statsByMetrics = new WeakMap<GatewayMetrics, ConsoleStats>()

export function statsFor(metrics: GatewayMetrics): ConsoleStats {
  let stats = statsByMetrics.get(metrics)
  if (!stats) statsByMetrics.set(metrics, (stats = new ConsoleStats()))
  return stats
}

/**
 * The gateway's metrics with the console's history fed from the same calls. Everything not
 * overridden here (routing metrics, render, store health) is the original, via the prototype.
 */
export function teeMetrics(metrics: GatewayMetrics, stats: ConsoleStats): GatewayMetrics {
  const tee: GatewayMetrics = Object.create(metrics)
  tee.request = (labels, seconds) => {
    metrics.request(labels, seconds)
    stats.request(labels.route, labels.status, seconds)
  }
  tee.firstByte = (labels, seconds) => {
    metrics.firstByte(labels, seconds)
    stats.firstByte(labels.route, seconds)
  }
  tee.tokens = (labels, count) => {
    metrics.tokens(labels, count)
    stats.tokens(labels.kind, count)
  }
  tee.cache = (result) => {
    metrics.cache(result)
    stats.cache(result)
  }
  return tee
}
