import type { Context } from 'hono'
import { type WatchClient, watchRequestSignal } from '../pipeline/watch-client.ts'
import { type ForwardOptions, type ForwardResult, forwardToBackend } from '../proxy/forward.ts'
import type { Router } from '../routing/router.ts'
import type { RoutingMetrics } from '../types.ts'
import type { UpstreamFetch } from '../upstream/upstream.ts'

/** What a route decides about its backend call; the rest is the gateway's. */
export type BackendCall = Omit<
  ForwardOptions,
  'upstream' | 'router' | 'metrics' | 'regions' | 'deadline' | 'backendHeaders' | 'onTokenRefused'
>

/** Forwards the request to a backend node; the proxy's result becomes the Response here. */
export type Forward = (c: Context, call: BackendCall) => Promise<Response>

export interface ForwardDeps {
  upstream: UpstreamFetch
  router: Router
  metrics: RoutingMetrics
  /** No try starts and streams end this long after the request started. */
  requestTimeoutMs: number
  backendHeaders?: ForwardOptions['backendHeaders']
  onTokenRefused?: ForwardOptions['onTokenRefused']
  watchClient?: WatchClient
}

export function createForward(deps: ForwardDeps): Forward {
  return async (c, call) => {
    const lifecycle = c.get('lifecycle')
    const client = {
      lifecycle,
      header: (name: string) => c.req.header(name),
      watch: (onGone: () => void) => (deps.watchClient ?? watchRequestSignal)(c, onGone),
    }
    const deadline = lifecycle.record.startedAt + deps.requestTimeoutMs
    const result: ForwardResult = await forwardToBackend(client, {
      upstream: deps.upstream,
      router: deps.router,
      metrics: deps.metrics,
      regions: c.get('regionOrder'),
      deadline,
      backendHeaders: deps.backendHeaders,
      onTokenRefused: deps.onTokenRefused,
      ...call,
    })
    return lifecycle.respond(result.body, result.status, result.headers, { endsItself: result.kind === 'stream' })
  }
}
