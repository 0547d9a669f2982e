import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import { boundedLabel } from '../observability/bounded-label.ts'
import { ATTEMPT_OUTCOMES, BREAKER_STATES, type GatewayMetrics } from '../types.ts'

const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** How many nodes that left are remembered, so a try still finishing there does not bring their series back. */
const GONE_NODES_REMEMBERED = 1000

export interface PromMetricsOptions {
  defaultMetrics?: boolean
  /**
   * Distinct key ids labelled on requests_total and tokens_total (the first ones seen by this
   * process); the requests of any further key are counted under `(other)`. Absent = unbounded.
   */
  keyIdLabels?: number
}

/** The gateway's metrics on prom-client (Node entry). */
export function createPromMetrics(options: PromMetricsOptions = {}): GatewayMetrics & { registry: Registry } {
  const registry = new Registry()
  const keyId = boundedLabel(options.keyIdLabels, '(other)')
  const registers = [registry]
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry })
  const requests = new Counter({
    name: 'switchyard_gateway_requests_total',
    help: 'Requests by route, status and API key id',
    labelNames: ['route', 'status', 'key_id'],
    registers,
  })
  const duration = new Histogram({
    name: 'switchyard_gateway_request_duration_seconds',
    help: 'Request duration to the last byte (streams included)',
    labelNames: ['route'],
    buckets: latencyBuckets,
    registers,
  })
  const firstByte = new Histogram({
    name: 'switchyard_gateway_time_to_first_byte_seconds',
    help: 'Time from request to the first byte from the backend (time to first token for streams)',
    labelNames: ['route'],
    buckets: latencyBuckets,
    registers,
  })
  const tokens = new Counter({
    name: 'switchyard_gateway_tokens_total',
    help: 'Tokens by API key id and kind',
    labelNames: ['key_id', 'kind'],
    registers,
  })
  const rateLimited = new Counter({
    name: 'switchyard_gateway_rate_limited_total',
    help: 'Requests refused by a rate limit',
    labelNames: ['limit'],
    registers,
  })
  const ipGuardEvents = new Counter({
    name: 'switchyard_gateway_ip_guard_events_total',
    help: 'Per-IP failed-authentication guard: failures counted, addresses blocked and unblocked, requests refused, valid keys let through from blocked addresses',
    labelNames: ['event'],
    registers,
  })
  const ipGuardBlocked = new Gauge({
    name: 'switchyard_gateway_ip_guard_blocked_addresses',
    help: 'Addresses the per-IP failed-authentication guard blocks now in this process',
    registers,
  })
  const cache = new Counter({
    name: 'switchyard_gateway_cache_total',
    help: 'Response cache lookups by result',
    labelNames: ['result'],
    registers,
  })
  const storeErrors = new Counter({
    name: 'switchyard_gateway_store_errors_total',
    help: 'Errors talking to the shared store',
    labelNames: ['store', 'operation'],
    registers,
  })
  const storeUp = new Gauge({
    name: 'switchyard_gateway_store_up',
    help: '1 while the shared store (Redis) answers, 0 while in-memory fallbacks serve',
    registers,
  })
  storeUp.set(1)
  const node = ['region', 'backend']
  const attempts = new Counter({
    name: 'switchyard_gateway_upstream_attempts_total',
    help: 'Tries at backend nodes by outcome',
    labelNames: [...node, 'outcome'],
    registers,
  })
  const retries = new Counter({
    name: 'switchyard_gateway_retries_total',
    help: 'Tries after the first, by the failure that caused them',
    labelNames: ['reason'],
    registers,
  })
  const failovers = new Counter({
    name: 'switchyard_gateway_failovers_total',
    help: 'Moves to another node, another region, or a stream continued elsewhere',
    labelNames: ['reason', 'scope'],
    registers,
  })
  const breakerState = new Gauge({
    name: 'switchyard_gateway_breaker_state',
    help: 'Circuit breaker per node: 0 closed, 1 half-open, 2 open',
    labelNames: node,
    registers,
  })
  const breakerTransitions = new Counter({
    name: 'switchyard_gateway_breaker_transitions_total',
    help: 'Circuit breaker state changes',
    labelNames: [...node, 'to'],
    registers,
  })
  const healthy = new Gauge({
    name: 'switchyard_gateway_backend_healthy',
    help: '1 while the node passes its health checks',
    labelNames: node,
    registers,
  })
  const checks = new Counter({
    name: 'switchyard_gateway_health_checks_total',
    help: 'Active health checks by result',
    labelNames: [...node, 'result'],
    registers,
  })
  const budgetExhausted = new Counter({
    name: 'switchyard_gateway_retry_budget_exhausted_total',
    help: 'Retries not made because the retry budget was spent',
    registers,
  })
  // Counted in a plain map on the request path and copied into the gauge at scrape time:
  // prom-client's per-call label handling would cost more than the rest of the routing.
  // Found by the node's own labels object (one per node), so no key string is built per
  // request; a node replaced by a reload takes over its series.
  type InFlight = { region: string; backend: string; value: number }
  const inFlightOf = new WeakMap<object, InFlight>()
  const inFlightNow = new Map<string, InFlight>()
  const inFlight = new Gauge({
    name: 'switchyard_gateway_backend_in_flight',
    help: 'Requests in flight per node',
    labelNames: node,
    registers,
    collect() {
      for (const { region, backend, value } of inFlightNow.values()) this.set({ region, backend }, value)
    },
  })
  const served = new Counter({
    name: 'switchyard_gateway_served_total',
    help: 'Requests served by model version and region',
    labelNames: ['model', 'version', 'region'],
    registers,
  })
  const stateValue = { closed: 0, half_open: 1, open: 2 } as const
  // Nodes that left, by region and id: a try that was still running there when it left reports
  // late, and must not bring its series back. A node that comes back (its constructor reports
  // its breaker) is taken off.
  const nodeKey = (l: { region: string; backend: string }) => `${l.region}\u0000${l.backend}`
  const gone = new Set<string>()
  const isGone = (l: { region: string; backend: string }) => gone.size > 0 && gone.has(nodeKey(l))
  const removeNode = (l: { region: string; backend: string }) => {
    const labels = { region: l.region, backend: l.backend }
    const key = nodeKey(labels)
    gone.add(key)
    if (gone.size > GONE_NODES_REMEMBERED) gone.delete(gone.values().next().value!)
    inFlightNow.delete(key)
    for (const gauge of [breakerState, healthy, inFlight]) gauge.remove(labels)
    for (const outcome of ATTEMPT_OUTCOMES) attempts.remove({ ...labels, outcome })
    for (const to of BREAKER_STATES) breakerTransitions.remove({ ...labels, to })
    for (const result of ['ok', 'fail']) checks.remove({ ...labels, result })
  }
  return {
    registry,
    request: (l, seconds) => {
      requests.inc({ route: l.route, status: String(l.status), key_id: keyId(l.keyId) })
      duration.observe({ route: l.route }, seconds)
    },
    firstByte: (l, seconds) => firstByte.observe(l, seconds),
    tokens: (l, count) => tokens.inc({ key_id: keyId(l.keyId), kind: l.kind }, count),
    rateLimited: (l) => rateLimited.inc(l),
    cache: (result) => cache.inc({ result }),
    storeError: (store, operation) => storeErrors.inc({ store, operation }),
    storeUp: (up) => storeUp.set(up ? 1 : 0),
    ipGuard: (event, blocked) => {
      ipGuardEvents.inc({ event })
      ipGuardBlocked.set(blocked)
    },
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
    routing: {
      attempt: (l) => {
        if (!isGone(l)) attempts.inc(l)
      },
      retry: (reason) => retries.inc({ reason }),
      failover: (l) => failovers.inc(l),
      breaker: (l, state, transition) => {
        gone.delete(nodeKey(l))
        breakerState.set(l, stateValue[state])
        if (transition) breakerTransitions.inc({ ...l, to: state })
      },
      health: (l, ok, isHealthy) => {
        checks.inc({ ...l, result: ok ? 'ok' : 'fail' })
        healthy.set(l, isHealthy ? 1 : 0)
      },
      retryBudgetExhausted: () => budgetExhausted.inc(),
      inFlight: (l, value) => {
        let entry = inFlightOf.get(l)
        if (!entry) {
          if (isGone(l)) return
          inFlightOf.set(l, (entry = { region: l.region, backend: l.backend, value }))
          inFlightNow.set(`${l.region}\u0000${l.backend}`, entry)
        }
        entry.value = value
      },
      served: (l) => served.inc(l),
      nodeRemoved: removeNode,
    },
  }
}
