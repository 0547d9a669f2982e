import { Pool } from 'undici'
import type { ByteStream, UpstreamFetch, UpstreamResponse } from '../upstream/upstream.ts'

/**
 * Node's upstream client: undici's request() on one keep-alive pool per backend origin (a pool
 * called with a path skips the URL parsing and agent lookup of a URL request, a good share of
 * the proxy's CPU). The answer is a plain object over undici's body: JSON is read as text, and an
 * event stream is read through the body's async iterator, with no Web stream machinery.
 */
export function createNodeUpstream(
  options: { connections?: number; connectTimeoutMs?: number } = {},
): UpstreamFetch & { close(): Promise<void> } {
  const pools = new Map<string, Pool>()
  const poolFor = (origin: string) => {
    let pool = pools.get(origin)
    if (!pool)
      pools.set(
        origin,
        (pool = new Pool(origin, {
          connections: options.connections ?? 128,
          connect: { timeout: options.connectTimeoutMs ?? 2000 },
          keepAliveTimeout: 30_000,
        })),
      )
    return pool
  }
  const upstream = async ({ url, method, headers, body, cancel }: Parameters<UpstreamFetch>[0]) => {
    // Origin and path without a URL object: the path starts at the first "/" after "scheme://".
    const slash = url.indexOf('/', url.indexOf('://') + 3)
    const response = await poolFor(slash < 0 ? url : url.slice(0, slash)).request({
      path: slash < 0 ? '/' : url.slice(slash),
      method,
      headers,
      body,
      signal: cancel,
    })
    const raw = response.headers
    const answer: UpstreamResponse = {
      status: response.statusCode,
      headers: {
        get: (name) => {
          const value = raw[name.toLowerCase()]
          return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value
        },
      },
      body: {
        getReader() {
          const chunks = response.body[Symbol.asyncIterator]() as AsyncIterator<Uint8Array>
          return {
            read: () => chunks.next(),
            cancel: async (reason?: unknown) => {
              // Destroyed first: return() alone would wait behind a read still pending (a stalled
              // node). Destroying the body aborts the request and frees the connection.
              response.body.destroy(reason instanceof Error ? reason : undefined)
              await chunks.return?.()
            },
          }
        },
      } satisfies ByteStream,
      text: () => response.body.text(),
    }
    return answer
  }
  return Object.assign(upstream, {
    close: async () => void (await Promise.all([...pools.values()].map((pool) => pool.close()))),
  })
}
