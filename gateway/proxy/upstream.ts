/** A request to a backend node; a plain object, so no Request is built per call. */
export interface UpstreamRequest {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
  signal?: AbortSignal
}

/**
 * What the gateway reads of a backend's answer. A Web `Response` satisfies it (Workers); the
 * Node client returns a lighter object that builds a Web stream only for event streams.
 */
export interface UpstreamResponse {
  status: number
  headers: { get(name: string): string | null }
  /** The body as a byte stream (event streams). */
  readonly body: ReadableStream<Uint8Array> | null
  /** The whole body as text (JSON answers). */
  text(): Promise<string>
}

/**
 * The gateway's HTTP client for backend nodes. The Node entry supplies a pooled undici client
 * (much cheaper per request than the global fetch); Workers use `fetch`.
 */
export type UpstreamFetch = (request: UpstreamRequest) => Promise<UpstreamResponse>

export const fetchUpstream: UpstreamFetch = (request) =>
  fetch(request.url, { method: request.method, headers: request.headers, body: request.body, signal: request.signal })
