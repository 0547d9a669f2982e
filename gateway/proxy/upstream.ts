/** A request to a backend node; a plain object, so no Request is built per call. */
export interface UpstreamRequest {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
  signal?: AbortSignal
}

/**
 * The gateway's HTTP client for backend nodes. The Node entry supplies a pooled undici client
 * (much cheaper per request than the global fetch); Workers use `fetch`.
 */
export type UpstreamFetch = (request: UpstreamRequest) => Promise<Response>

export const fetchUpstream: UpstreamFetch = (request) =>
  fetch(request.url, { method: request.method, headers: request.headers, body: request.body, signal: request.signal })
