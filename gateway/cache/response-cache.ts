import { observeStream } from '../pipeline/observe-stream.ts'
import type { CacheStore, GatewayMetrics, Logger } from '../types.ts'
import { cacheKey, isDeterministic } from './cache-key.ts'
import { EventBroadcast, createEventParser, replayEvents } from './event-stream.ts'

type Entry = { kind: 'json'; body: string } | { kind: 'sse'; events: string[] }
/** What a request in flight will produce, for identical requests arriving meanwhile. */
type InFlight = Promise<{ kind: 'json'; body: string } | { kind: 'sse'; broadcast: EventBroadcast } | null>

export interface CacheRequest {
  route: string
  tenant: string
  body: Record<string, unknown>
  /** Anything else that changes the response's bytes (e.g. whether the usage chunk is shown). */
  variant?: string
  cacheControl: string | undefined
}

const JSON_TYPE = { 'content-type': 'application/json' }
const SSE_TYPE = { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }

/**
 * Exact-match response cache for deterministic requests. Streams are cached as their events
 * and replayed as SSE; identical concurrent misses share one upstream call (per process: a
 * cross-instance version would need a lock in the store).
 */
export function createResponseCache(options: { store: CacheStore; ttlSeconds: number; maxEntryBytes: number; metrics: GatewayMetrics; logger: Logger }) {
  const { store, metrics } = options
  const inFlight = new Map<string, InFlight>()

  const tag = (response: Response, value: 'HIT' | 'MISS' | 'BYPASS', extra: Record<string, string> = {}) => {
    const headers = new Headers(response.headers)
    headers.set('x-cache', value)
    for (const [k, v] of Object.entries(extra)) headers.set(k, v)
    return new Response(response.body, { status: response.status, headers })
  }

  async function handle(request: CacheRequest, forward: () => Promise<Response>): Promise<Response> {
    const directives = (request.cacheControl ?? '').toLowerCase()
    const noCache = directives.includes('no-cache')
    const noStore = directives.includes('no-store')
    if (!isDeterministic(request.body) || (noCache && noStore)) {
      metrics.cache('bypass')
      return tag(await forward(), 'BYPASS')
    }
    const stream = request.body.stream === true
    const key = await cacheKey({ route: request.route, tenant: request.tenant, variant: `${stream ? 'sse' : 'json'}:${request.variant ?? ''}`, body: request.body })
    if (!noCache) {
      const stored = await store.get(key)
      const entry = stored ? parseEntry(stored) : null
      if (entry) {
        metrics.cache('hit')
        return entry.kind === 'json' ? new Response(entry.body, { headers: { ...JSON_TYPE, 'x-cache': 'HIT' } }) : new Response(replayEvents(entry.events), { headers: { ...SSE_TYPE, 'x-cache': 'HIT' } })
      }
      const leader = inFlight.get(key)
      if (leader) {
        const shared = await leader
        if (shared) {
          metrics.cache('coalesced')
          const headers = { 'x-cache': 'HIT', 'x-cache-coalesced': '1' }
          return shared.kind === 'json' ? new Response(shared.body, { headers: { ...JSON_TYPE, ...headers } }) : new Response(shared.broadcast.subscribe(), { headers: { ...SSE_TYPE, ...headers } })
        }
        // The leader failed: this request tries on its own.
      }
    }
    metrics.cache('miss')
    let settle!: (value: Awaited<InFlight>) => void
    const mine: InFlight = new Promise((resolve) => (settle = resolve))
    if (!noCache) inFlight.set(key, mine)
    const done = () => inFlight.get(key) === mine && inFlight.delete(key)
    let response: Response
    try {
      response = await forward()
    } catch (error) {
      settle(null)
      done()
      throw error
    }
    const type = response.headers.get('content-type') ?? ''
    if (response.status !== 200 || !response.body) {
      settle(null)
      done()
      return tag(response, 'MISS')
    }
    if (type.startsWith('text/event-stream')) {
      const broadcast = new EventBroadcast()
      settle({ kind: 'sse', broadcast })
      const parse = createEventParser((data) => {
        if (data.startsWith('{"error"')) broadcast.finish('failed')
        if (broadcast.state === 'open') broadcast.push(data)
      })
      const body = observeStream(response.body, {
        onChunk: (chunk) => (parse(chunk), chunk),
        onEnd: (outcome) => {
          done()
          const complete = outcome === 'ok' && broadcast.state === 'open' && broadcast.events.at(-1) === '[DONE]'
          broadcast.finish(complete ? 'ok' : 'failed')
          if (complete && !noStore) void save(key, { kind: 'sse', events: broadcast.events })
        },
      })
      return tag(new Response(body, response), 'MISS')
    }
    const text = await response.text()
    settle({ kind: 'json', body: text })
    done()
    if (!noStore) void save(key, { kind: 'json', body: text })
    return tag(new Response(text, response), 'MISS')
  }

  async function save(key: string, entry: Entry): Promise<void> {
    const value = JSON.stringify(entry)
    if (value.length > options.maxEntryBytes) return
    await store.set(key, value, options.ttlSeconds).catch(() => {})
  }

  return { handle }
}

function parseEntry(stored: string): Entry | null {
  try {
    const entry = JSON.parse(stored) as Entry
    return entry.kind === 'json' || entry.kind === 'sse' ? entry : null
  } catch {
    return null
  }
}
