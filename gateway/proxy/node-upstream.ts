import { Readable } from 'node:stream'
import { Agent, request } from 'undici'
import type { UpstreamFetch, UpstreamResponse } from './upstream.ts'

/**
 * Node's upstream client: undici's request() over a keep-alive agent. The answer is a plain
 * object over undici's body: JSON is read as text with no Web stream machinery, and only an
 * event stream is turned into a Web stream (chunk by chunk).
 */
export function createNodeUpstream(options: { connections?: number; connectTimeoutMs?: number } = {}): UpstreamFetch {
  const dispatcher = new Agent({ connections: options.connections ?? 128, connect: { timeout: options.connectTimeoutMs ?? 2000 }, keepAliveTimeout: 30_000 })
  return async ({ url, method, headers, body, signal }) => {
    const response = await request(url, { method, headers, body, signal, dispatcher })
    const raw = response.headers
    let webBody: ReadableStream<Uint8Array> | undefined
    const answer: UpstreamResponse = {
      status: response.statusCode,
      headers: {
        get: (name) => {
          const value = raw[name.toLowerCase()]
          return value === undefined ? null : Array.isArray(value) ? value.join(', ') : value
        },
      },
      get body() {
        return (webBody ??= Readable.toWeb(response.body) as ReadableStream<Uint8Array>)
      },
      text: () => response.body.text(),
    }
    return answer
  }
}
