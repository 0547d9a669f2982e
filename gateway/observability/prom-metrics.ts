import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { GatewayMetrics } from '../types.ts'

const latencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]

/** The gateway's metrics on prom-client (Node entry). */
export function createPromMetrics(options: { defaultMetrics?: boolean } = {}): GatewayMetrics & { registry: Registry } {
  const registry = new Registry()
  const registers = [registry]
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry })
  const requests = new Counter({ name: 'switchyard_gateway_requests_total', help: 'Requests by route, status and API key id', labelNames: ['route', 'status', 'key_id'], registers })
  const duration = new Histogram({ name: 'switchyard_gateway_request_duration_seconds', help: 'Request duration to the last byte (streams included)', labelNames: ['route'], buckets: latencyBuckets, registers })
  const firstByte = new Histogram({ name: 'switchyard_gateway_time_to_first_byte_seconds', help: 'Time from request to the first byte from the backend (time to first token for streams)', labelNames: ['route'], buckets: latencyBuckets, registers })
  const tokens = new Counter({ name: 'switchyard_gateway_tokens_total', help: 'Tokens by API key id and kind', labelNames: ['key_id', 'kind'], registers })
  const rateLimited = new Counter({ name: 'switchyard_gateway_rate_limited_total', help: 'Requests refused by a rate limit', labelNames: ['limit'], registers })
  const cache = new Counter({ name: 'switchyard_gateway_cache_total', help: 'Response cache lookups by result', labelNames: ['result'], registers })
  const storeErrors = new Counter({ name: 'switchyard_gateway_store_errors_total', help: 'Errors talking to the shared store', labelNames: ['store', 'operation'], registers })
  const storeUp = new Gauge({ name: 'switchyard_gateway_store_up', help: '1 while the shared store (Redis) answers, 0 while in-memory fallbacks serve', registers })
  storeUp.set(1)
  return {
    registry,
    request: (l, seconds) => {
      requests.inc({ route: l.route, status: String(l.status), key_id: l.keyId })
      duration.observe({ route: l.route }, seconds)
    },
    firstByte: (l, seconds) => firstByte.observe(l, seconds),
    tokens: (l, count) => tokens.inc({ key_id: l.keyId, kind: l.kind }, count),
    rateLimited: (l) => rateLimited.inc(l),
    cache: (result) => cache.inc({ result }),
    storeError: (store, operation) => storeErrors.inc({ store, operation }),
    storeUp: (up) => storeUp.set(up ? 1 : 0),
    render: async () => ({ contentType: registry.contentType, body: await registry.metrics() }),
  }
}
