import { errorMessage } from '../../lib/error-message.ts'
import type { CacheStore, GatewayMetrics, Logger } from '../types.ts'
import { readBounded } from './bounded-body.ts'
import { cacheKey, isDeterministic } from './cache-key.ts'
import { type CacheEntry, decodeEntry, encodeEntry, replayEvents } from './event-stream.ts'
import { eventStreamWithIdentity, freshIdentity, withIdentity } from './fresh-identity.ts'
import { SharedStream } from './shared-stream.ts'

export { cacheKey, isDeterministic } from './cache-key.ts'

export interface CacheRequest {
  /** Request path, e.g. `/v1/completions`. */
  route: string
  tenant: string
  /** The JSON body as it will be forwarded. */
  body: Record<string, unknown>
  /** Anything else that changes the response's bytes (e.g. whether the usage chunk is shown). */
  variant?: string
  /** Whether the answer depends only on the body; default isDeterministic(body) (greedy or seeded sampling). */
  deterministic?: boolean
  /** The client's Cache-Control header. */
  cacheControl: string | undefined
  /** Keeps the runtime alive for a store write that outlives the response (Workers' ctx.waitUntil). */
  waitUntil?: (promise: Promise<unknown>) => void
}

export interface ResponseCacheOptions {
  store: CacheStore
  ttlSeconds: number
  /** Largest value stored; a larger response is passed on but not stored. */
  maxEntryBytes: number
  metrics: GatewayMetrics
  logger: Logger
  /** Identical requests arriving while one is in flight follow it instead of forwarding (default true). */
  coalesce?: boolean
}

export interface ResponseCache {
  handle(request: CacheRequest, forward: () => Promise<Response>): Promise<Response>
}

/** What a request in flight produces, for identical requests that arrive meanwhile. */
type Shared = { kind: 'json'; body: string } | { kind: 'sse'; stream: SharedStream }
interface Flight {
  result: Promise<Shared | null>
  resolve: (shared: Shared | null) => void
  /** Takes this flight out of the in-flight map (no new followers). */
  release: () => void
}

/** A follower whose leader failed may follow one more leader before it forwards on its own. */
const MAX_LEADERS_FOLLOWED = 2

const JSON_TYPE = 'application/json'
const SSE_TYPE = 'text/event-stream'
const encoder = new TextEncoder()

/** The no-cache and no-store directives of a Cache-Control header. */
export function cacheDirectives(header: string | undefined): { noCache: boolean; noStore: boolean } {
  const names = new Set((header ?? '').split(',').map((part) => part.split('=')[0].trim().toLowerCase()))
  return { noCache: names.has('no-cache'), noStore: names.has('no-store') }
}

/**
 * Exact-match response cache for deterministic requests (greedy or seeded; see
 * isDeterministic). JSON responses are stored as their body, streams as their `data:` events,
 * and a stream hit is replayed as SSE. `x-cache` tells HIT, MISS or BYPASS.
 *
 * Identical concurrent misses share one upstream call: later requests wait for the one in
 * flight and get its body (JSON) or its events as they arrive (SSE), marked
 * `x-cache: HIT` + `x-cache-coalesced: 1`. This coalescing is per process (per isolate on
 * Workers): across gateway instances each would need a lock in the shared store.
 *
 * The store is an optimisation: its errors are logged and the request goes on without it.
 */
export function createResponseCache(options: ResponseCacheOptions): ResponseCache {
  const { store, metrics, logger } = options
  const inFlight = new Map<string, Flight>()

  async function handle(request: CacheRequest, forward: () => Promise<Response>): Promise<Response> {
    const { noCache, noStore } = cacheDirectives(request.cacheControl)
    if (!(request.deterministic ?? isDeterministic(request.body)) || (noCache && noStore)) {
      metrics.cache('bypass')
      return withCacheHeader(await forward(), 'BYPASS')
    }
    const key = await cacheKey({
      route: request.route,
      tenant: request.tenant,
      body: request.body,
      variant: request.variant,
    })
    if (!noCache) {
      const entry = await lookup(key)
      if (entry) {
        metrics.cache('hit')
        const identity = freshIdentity()
        return entry.kind === 'json'
          ? cachedResponse(withIdentity(entry.body, identity), JSON_TYPE, false)
          : cachedResponse(replayEvents(entry.events.map((e) => withIdentity(e, identity))), SSE_TYPE, false)
      }
      const followed = new Set<Flight>()
      for (
        let flight = inFlight.get(key);
        flight && !followed.has(flight) && followed.size < MAX_LEADERS_FOLLOWED;
        flight = inFlight.get(key)
      ) {
        followed.add(flight)
        const response = await follow(flight)
        if (response) {
          metrics.cache('coalesced')
          return response
        }
        // The leader failed: try the next one, if another identical request leads by now.
      }
    }
    return miss(key, noStore, forward, request.waitUntil)
  }

  async function follow(flight: Flight): Promise<Response | null> {
    const shared = await flight.result
    if (!shared) return null
    const identity = freshIdentity()
    if (shared.kind === 'json') return cachedResponse(withIdentity(shared.body, identity), JSON_TYPE, true)
    const events = await shared.stream.join()
    return events ? cachedResponse(eventStreamWithIdentity(events, identity), SSE_TYPE, true) : null
  }

  async function miss(
    key: string,
    noStore: boolean,
    forward: () => Promise<Response>,
    waitUntil: CacheRequest['waitUntil'],
  ): Promise<Response> {
    metrics.cache('miss')
    // A response that may not be stored is not shared with other requests either.
    const flight = noStore ? null : startFlight(key)
    let response: Response
    try {
      response = await forward()
    } catch (error) {
      flight?.resolve(null)
      flight?.release()
      throw error
    }
    const type = (response.headers.get('content-type') ?? '').toLowerCase()
    const sse = type.startsWith(SSE_TYPE)
    if (!flight || response.status !== 200 || !response.body || !(sse || isJsonType(type))) {
      flight?.resolve(null)
      flight?.release()
      return withCacheHeader(response, 'MISS')
    }
    if (sse) {
      const stream = new SharedStream(response.body, {
        maxEntryBytes: options.maxEntryBytes,
        onRelease: flight.release,
        onComplete: (events) => save(key, { kind: 'sse', events }, waitUntil),
      })
      flight.resolve({ kind: 'sse', stream })
      return withCacheHeader(response, 'MISS', stream.body)
    }
    let read: Awaited<ReturnType<typeof readBounded>>
    try {
      read = await readBounded(response.body, options.maxEntryBytes)
    } catch (error) {
      flight.resolve(null)
      flight.release()
      throw error
    }
    const text = read.complete ? decodeUtf8(read.bytes) : null
    flight.resolve(text === null ? null : { kind: 'json', body: text })
    flight.release()
    if (text !== null) save(key, { kind: 'json', body: text }, waitUntil)
    return withCacheHeader(response, 'MISS', read.complete ? read.bytes : read.body)
  }

  function startFlight(key: string): Flight {
    let resolve!: (shared: Shared | null) => void
    const result = new Promise<Shared | null>((r) => (resolve = r))
    const flight: Flight = {
      result,
      resolve,
      release: () => {
        if (inFlight.get(key) === flight) inFlight.delete(key)
      },
    }
    // Not coalescing: the flight still collects what to store, but nobody can join it.
    if (options.coalesce ?? true) inFlight.set(key, flight)
    return flight
  }

  async function lookup(key: string): Promise<CacheEntry | null> {
    let stored: string | null
    try {
      stored = await store.get(key)
    } catch (error) {
      logger.warn({ operation: 'cache_get', error: errorMessage(error) }, 'response cache lookup failed; forwarding')
      return null
    }
    if (typeof stored !== 'string') return null
    const entry = decodeEntry(stored)
    if (!entry) logger.warn({ operation: 'cache_get' }, 'unreadable response cache entry ignored')
    return entry
  }

  /** Stores in the background: the response never waits for the store, nor fails with it. */
  function save(key: string, entry: CacheEntry, waitUntil: CacheRequest['waitUntil']): void {
    const value = encodeEntry(entry)
    if (encoder.encode(value).byteLength > options.maxEntryBytes) return
    const write = (async () => {
      try {
        await store.set(key, value, options.ttlSeconds)
      } catch (error) {
        logger.warn({ operation: 'cache_set', error: errorMessage(error) }, 'response cache store failed')
      }
    })()
    waitUntil?.(write)
  }

  return { handle }
}

/** The upstream response with its status and headers, plus `x-cache` (and optionally a new body). */
function withCacheHeader(
  response: Response,
  value: 'HIT' | 'MISS' | 'BYPASS',
  body: BodyInit | null = response.body,
): Response {
  const headers = new Headers(response.headers)
  headers.set('x-cache', value)
  return new Response(body, { status: response.status, statusText: response.statusText, headers })
}

/** A response from the cache (or a shared flight): content-type and the cache headers only. */
function cachedResponse(body: BodyInit, contentType: string, coalesced: boolean): Response {
  const headers: Record<string, string> = { 'content-type': contentType, 'x-cache': 'HIT' }
  if (coalesced) headers['x-cache-coalesced'] = '1'
  return new Response(body, { status: 200, headers })
}

function isJsonType(type: string): boolean {
  return /^application\/([\w.+-]+\+)?json\b/.test(type)
}

/** The body as text, or null when it is not valid UTF-8 (stored text must give back the same bytes). */
function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes)
  } catch {
    return null
  }
}
