import { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import type { UpstreamFetch } from './upstream.ts'

/**
 * Node's upstream client: undici's request() over a keep-alive agent. JSON bodies are read
 * whole (no stream machinery for a few hundred bytes); event streams are passed on as Web
 * streams, chunk by chunk.
 */
export function createNodeUpstream(options: { connections?: number; connectTimeoutMs?: number } = {}): UpstreamFetch {
  const dispatcher = new Agent({ connections: options.connections ?? 128, connect: { timeout: options.connectTimeoutMs ?? 2000 }, keepAliveTimeout: 30_000 })
  return async ({ url, method, headers, body, signal }) => {
    const response = await request(url, { method, headers, body, signal, dispatcher })
    const responseHeaders = new Headers()
    for (const [name, value] of Object.entries(response.headers)) {
      if (value !== undefined) responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value)
    }
    const type = responseHeaders.get('content-type') ?? ''
    if (type.startsWith('text/event-stream')) {
      return new Response(Readable.toWeb(response.body) as ReadableStream<Uint8Array>, { status: response.statusCode, headers: responseHeaders })
    }
    const bytes = await response.body.arrayBuffer()
    return new Response(response.statusCode === 204 || response.statusCode === 304 ? null : bytes, { status: response.statusCode, headers: responseHeaders })
  }
}
