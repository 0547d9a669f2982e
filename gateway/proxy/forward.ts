import type { Context } from 'hono'
import { observeStream } from '../pipeline/observe-stream.ts'
import { gatewayError } from '../pipeline/errors.ts'
import { createSseUsageReader, usageFromJson } from './sse-usage.ts'
import type { UpstreamFetch, UpstreamResponse } from './upstream.ts'

/** Headers passed to the backend as they came: tracing and content negotiation only. */
const PASSED_HEADERS = ['traceparent', 'tracestate', 'accept']
/** Backend response headers the client sees; the rest (hop-by-hop, server internals) stay behind. */
const RETURNED_HEADERS = ['content-type', 'retry-after', 'cache-control']

export interface ForwardOptions {
  upstream: UpstreamFetch
  /** Backend base URL, no trailing slash. */
  baseUrl: string
  path: string
  method: 'GET' | 'POST'
  body?: string
  /** The client asked for the usage chunk (stream_options.include_usage); else it is removed. */
  keepUsageEvent?: boolean
  timeoutMs: number
}

/**
 * Sends the request to a backend node and returns its response with streaming passthrough:
 * SSE chunks go to the client as they arrive. Usage is recorded on the request's lifecycle.
 */
export async function forwardToBackend(c: Context, options: ForwardOptions): Promise<Response> {
  const lifecycle = c.get('lifecycle')
  const headers: Record<string, string> = { 'x-request-id': lifecycle.record.requestId }
  if (options.body !== undefined) headers['content-type'] = 'application/json'
  for (const name of PASSED_HEADERS) {
    const value = c.req.header(name)
    if (value) headers[name] = value
  }
  const timeout = AbortSignal.timeout(options.timeoutMs)
  let response: UpstreamResponse
  try {
    response = await options.upstream({ url: options.baseUrl + options.path, method: options.method, headers, body: options.body, signal: timeout })
  } catch (error) {
    if (timeout.aborted) throw gatewayError(504, 'The backend did not answer in time', 'upstream_timeout')
    throw gatewayError(502, 'The backend could not be reached', 'upstream_unavailable', { cause: error })
  }
  lifecycle.record.firstByteAt ??= performance.now()
  // A plain object, not Headers: @hono/node-server writes such a response without building a Web one.
  const out: Record<string, string> = {}
  for (const name of RETURNED_HEADERS) {
    const value = response.headers.get(name)
    if (value) out[name] = value
  }
  const type = out['content-type'] ?? ''
  if (type.startsWith('text/event-stream') && response.body) {
    const readUsage = createSseUsageReader({
      keepUsageEvent: options.keepUsageEvent ?? false,
      onUsage: (usage) => (lifecycle.record.usage = usage),
      onError: () => (lifecycle.record.outcome = 'upstream_error'),
    })
    const body = observeStream(response.body, { onChunk: readUsage, onEnd: () => {} })
    return new Response(body, { status: response.status, headers: out })
  }
  const text = await response.text()
  lifecycle.record.usage = usageFromJson(text)
  return new Response(response.status === 204 || response.status === 304 ? null : text, { status: response.status, headers: out })
}
