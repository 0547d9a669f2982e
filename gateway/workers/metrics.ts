import type { GatewayMetrics } from '../types.ts'
import type { AnalyticsEngineDataset } from './runtime.ts'

/**
 * The gateway's metrics on Workers. prom-client does not fit: there is no process to scrape,
 * and a Worker runs as many short-lived isolates in many locations, each of which would count
 * only its own share. Instead every event is a Workers Analytics Engine data point (when the
 * METRICS binding is configured), aggregated across all isolates by SQL at query time:
 *
 *   index1 = blob1 = event name; blob2… = its labels, in the order below; double1 = its value
 *   (seconds for durations, a count for tokens, 1 otherwise). Count with SUM(_sample_interval),
 *   sum values with SUM(_sample_interval * double1).
 *
 * Gauges that only make sense per process (in-flight per node, store up) are not written;
 * /metrics answers 404 (render() is null). Every request also has its JSON access log line.
 */
export function createWorkersMetrics(dataset: AnalyticsEngineDataset | undefined): GatewayMetrics {
  const write = (event: string, labels: (string | number)[], value = 1) => {
    dataset?.writeDataPoint({ indexes: [event], blobs: [event, ...labels.map(String)], doubles: [value] })
  }
  // Health checks run often in every isolate: only failures and changes of verdict are written.
  const healthy = new Map<string, boolean>()
  return {
    request: ({ route, status, keyId }, seconds) => write('request', [route, status, keyId], seconds),
    firstByte: ({ route }, seconds) => write('first_byte', [route], seconds),
    tokens: ({ keyId, kind }, count) => write('tokens', [keyId, kind], count),
    rateLimited: ({ limit }) => write('rate_limited', [limit]),
    cache: (result) => write('cache', [result]),
    storeError: (store, operation) => write('store_error', [store, operation]),
    storeUp: () => {},
    ipGuard: (event) => write('ip_guard', [event]),
    render: async () => null,
    routing: {
      attempt: ({ region, backend, outcome }) => write('attempt', [region, backend, outcome]),
      retry: (reason) => write('retry', [reason]),
      failover: ({ reason, scope }) => write('failover', [reason, scope]),
      breaker: ({ region, backend }, state, transition) => {
        if (transition) write('breaker_transition', [region, backend, state])
      },
      health: ({ region, backend }, ok, isHealthy) => {
        const node = `${region}/${backend}`
        const changed = healthy.get(node) !== isHealthy
        healthy.set(node, isHealthy)
        if (!ok || changed)
          write('health_check', [region, backend, ok ? 'pass' : 'fail', isHealthy ? 'healthy' : 'unhealthy'])
      },
      retryBudgetExhausted: () => write('retry_budget_exhausted', []),
      inFlight: () => {},
      nodeRemoved: ({ region, backend }) => healthy.delete(`${region}/${backend}`),
      served: ({ model, version, region }) => write('served', [model, version, region]),
    },
  }
}
