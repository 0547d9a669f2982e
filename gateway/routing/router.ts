import type { RoutingConfig } from '../config/schema.ts'
import type { Logger, RoutingMetrics } from '../types.ts'
import type { UpstreamFetch } from '../upstream/upstream.ts'
import { BackendNode } from './backend-node.ts'
import { pickNode } from './balancer.ts'
import { expandNodes, type ResolvedNames } from './discovery.ts'
import { type HealthChecks, startHealthChecks } from './health-checker.ts'
import { RetryBudget } from './retry-budget.ts'

interface Region {
  name: string
  fallback: string[]
  nodes: BackendNode[]
}

export interface RouterHooks {
  metrics: RoutingMetrics
  logger: Logger
  upstream: UpstreamFetch
  /** Headers for health checks (the gateway's backend token). */
  headers?: () => Promise<Record<string, string>>
  /**
   * False where timers die with the request that set them (Workers): nothing runs in the
   * background, and the runtime calls maintain() on each request instead. Default true.
   */
  timers?: boolean
}

/**
 * The topology of regions and backend nodes with their live state. The request path asks it
 * for the regions to try and the next node to try; the health checks and breakers keep the
 * node states current. `update` swaps in a new topology and keeps the state of nodes that did
 * not change, so a config reload drops nothing.
 */
export class Router {
  private settings: RoutingConfig
  private regions = new Map<string, Region>()
  private budget: RetryBudget
  /** Addresses of the config's `dns` node entries, as last reported by the entry's discovery. */
  private discovered: ResolvedNames = new Map()
  private readonly checks: HealthChecks

  constructor(
    settings: RoutingConfig,
    private readonly hooks: RouterHooks,
  ) {
    this.settings = settings
    this.budget = new RetryBudget(settings.retry)
    this.build(settings, new Map())
    this.checks = startHealthChecks({
      nodes: () => this.nodes(),
      upstream: hooks.upstream,
      settings: () => this.settings.healthCheck,
      headers: hooks.headers,
      timers: hooks.timers,
    })
  }

  /**
   * Without timers: the background work done now, a request at a time. Breakers are brought
   * up to date at once; a round of health checks, when one is due, is returned for the runtime
   * to keep alive (Workers: ctx.waitUntil). Does nothing when timers run.
   */
  maintain(): Promise<void> | undefined {
    const now = Date.now()
    for (const node of this.nodes()) node.maintain(now)
    return this.checks.checkIfDue()
  }

  get config(): RoutingConfig {
    return this.settings
  }

  get retryBudget(): RetryBudget {
    return this.budget
  }

  nodes(): BackendNode[] {
    return [...this.regions.values()].flatMap((r) => r.nodes)
  }

  /** The region a request prefers: the client's header, else its edge location, else ours. Null for an unknown region name. */
  preferredRegion(requested: string | undefined, edgeLocation: string | undefined): string | null {
    if (requested !== undefined) return this.regions.has(requested) ? requested : null
    const edge = edgeLocation === undefined ? undefined : this.settings.edgeRegions[edgeLocation]
    return edge ?? this.settings.region ?? this.regions.keys().next().value!
  }

  /** The preferred region, then its fallbacks in order. */
  regionOrder(preferred: string): string[] {
    const region = this.regions.get(preferred)
    return region ? [preferred, ...region.fallback.filter((f) => f !== preferred)] : []
  }

  /**
   * The next node to try: the first region in order that has a usable one. When health checks
   * or outlier ejection have taken out every node (for example checks timing out on overloaded
   * nodes), it tries those nodes anyway rather than refuse everything ("panic mode", as Envoy
   * does); open breakers are still respected.
   */
  pick(
    order: readonly string[],
    model: string | undefined,
    exclude: ReadonlySet<BackendNode>,
  ): BackendNode | undefined {
    for (const panic of [false, true]) {
      for (const name of order) {
        const region = this.regions.get(name)
        const node = region && pickNode(region.nodes, model, exclude, { panic })
        if (node) return node
      }
    }
    return undefined
  }

  /** Whether any region in `order` has a node declared for the model (usable or not). */
  servesModel(order: readonly string[], model: string | undefined): boolean {
    return order.some((name) => this.regions.get(name)?.nodes.some((n) => n.serves(model)))
  }

  update(settings: RoutingConfig): void {
    const old = new Map(this.nodes().map((n) => [n.id, n]))
    if (JSON.stringify(settings.retry) !== JSON.stringify(this.settings.retry))
      this.budget = new RetryBudget(settings.retry)
    const sameBreaker =
      JSON.stringify([settings.breaker, settings.outlier, settings.healthCheck]) ===
      JSON.stringify([this.settings.breaker, this.settings.outlier, this.settings.healthCheck])
    this.settings = settings
    this.build(settings, sameBreaker ? old : new Map())
    const current = new Map(this.nodes().map((n) => [n.id, n]))
    for (const node of old.values()) {
      if (current.get(node.id) === node) continue
      node.shutdown()
      // A node rebuilt under the same id and region (new weight, breaker settings) keeps its series.
      if (current.get(node.id)?.region !== node.region) this.hooks.metrics.nodeRemoved(node.labels)
    }
    void this.checks.checkNow()
  }

  /** New addresses for `dns` node entries: nodes that stayed keep their state. */
  setDiscovered(resolved: ResolvedNames): void {
    this.discovered = resolved
    this.update(this.settings)
  }

  /** For GET /status. */
  status() {
    return {
      region: this.settings.region,
      retryBudget: {
        ...this.budget.snapshot(),
        ratio: this.settings.retry.budgetRatio,
        minPerSecond: this.settings.retry.budgetMinPerSecond,
      },
      regions: [...this.regions.values()].map((r) => ({
        name: r.name,
        fallback: r.fallback,
        nodes: r.nodes.map((n) => ({
          id: n.id,
          url: n.url,
          weight: n.weight,
          models: n.models ? [...n.models] : null,
          usable: n.usable,
          healthy: n.healthy,
          ejected: n.ejected,
          breaker: n.breakerState,
          inFlight: n.inFlight,
          lastCheck: n.lastCheck ?? null,
          recent: n.recentStats(),
        })),
      })),
    }
  }

  close(): void {
    this.checks.stop()
    for (const node of this.nodes()) node.shutdown()
  }

  private build(settings: RoutingConfig, reusable: Map<string, BackendNode>): void {
    const regions = new Map<string, Region>()
    for (const region of settings.regions) {
      const nodes = expandNodes(region.nodes, this.discovered).map((n) => {
        const models = n.models ? new Set(n.models) : null
        const kept = reusable.get(n.id)
        const same =
          kept &&
          kept.url === n.url &&
          kept.region === region.name &&
          kept.weight === n.weight &&
          JSON.stringify(kept.models && [...kept.models]) === JSON.stringify(n.models ?? null)
        return same ? kept : new BackendNode(n.id, region.name, n.url, n.weight, models, settings, this.hooks)
      })
      regions.set(region.name, { name: region.name, fallback: region.fallback, nodes })
    }
    this.regions = regions
  }
}
