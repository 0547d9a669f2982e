import type { BackendNode } from '../routing/backend-node.ts'
import type { Router } from '../routing/router.ts'
import type { AttemptOutcome, RoutingMetrics } from '../types.ts'

/** The last try that failed; a busy node's answer is kept, to pass on when no node can serve. */
export interface FailedTry {
  node: BackendNode
  outcome: AttemptOutcome
  response?: { status: number; text: string; retryAfter: string | null }
}

export interface AttemptsOptions {
  router: Router
  metrics: RoutingMetrics
  /** Regions to try, in order. */
  regions: string[]
  /** The model id sent to the backend, to pick nodes that serve it. */
  model?: string
  /** performance.now() time after which no try starts. */
  deadline: number
}

/**
 * The tries of one request, the first answer's and a stream's continuations alike: the nodes
 * tried, how many, the last failure, and whether another try may start (tries left for the
 * first answer, the router's retry budget, backoff within the deadline).
 */
export class Attempts {
  readonly tried = new Set<BackendNode>()
  count = 0
  last: FailedTry | undefined

  constructor(private readonly options: AttemptsOptions) {
    options.router.retryBudget.recordRequest()
  }

  /**
   * The next node to try after `previous` failed with `previousOutcome` (nothing failed yet
   * for the first), or null when out of nodes, tries, budget or time. `scope` 'node' counts
   * against retry.maxAttempts; a stream's continuations are bounded by stream.maxResumes.
   */
  async next(
    previousOutcome: AttemptOutcome | undefined,
    previous: BackendNode | undefined,
    scope: 'node' | 'stream',
  ): Promise<BackendNode | null> {
    const { router, metrics } = this.options
    const retry = router.config.retry
    if (scope === 'node' && this.count >= retry.maxAttempts) return null
    const node = router.pick(this.options.regions, this.options.model, this.tried)
    if (!node) return null
    if (previousOutcome) {
      if (!router.retryBudget.tryRetry()) {
        metrics.retryBudgetExhausted()
        return null
      }
      metrics.retry(previousOutcome)
      metrics.failover({
        reason: previousOutcome,
        scope: scope === 'stream' ? 'stream' : previous && previous.region !== node.region ? 'region' : 'node',
      })
      const backoff = Math.min(retry.backoffMaxMs, retry.backoffBaseMs * 2 ** (this.count - 1)) * Math.random()
      if (performance.now() + backoff >= this.options.deadline) return null
      await new Promise((r) => setTimeout(r, backoff))
    }
    this.tried.add(node)
    this.count++
    return node
  }

  /** The next node after the last failed try (`fallback`: the outcome when no try has failed yet). */
  afterFailure(scope: 'node' | 'stream', fallback?: AttemptOutcome): Promise<BackendNode | null> {
    return this.next(this.last?.outcome ?? fallback, this.last?.node, scope)
  }
}
