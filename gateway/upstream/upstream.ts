/** A request to a backend node; a plain object, so no Request is built per call. */
export interface UpstreamRequest {
  url: string
  method: 'GET' | 'POST'
  headers: Record<string, string>
  body?: string
  /** Cuts the request short (a try's timeout, the client leaving). */
  cancel?: Cancellation
}

/**
 * A request's cancellation, shaped like the EventEmitter signal undici accepts. Not an
 * AbortSignal: on Node, adding a listener to a fresh AbortSignal (which undici does for every
 * request given one) costs more CPU than the rest of a try. Runtimes whose client wants a Web
 * AbortSignal make one from it (`toAbortSignal`).
 */
export class Cancellation {
  aborted = false
  reason: unknown = undefined
  private listeners: (() => void)[] = []

  cancel(reason: unknown = new Error('request cancelled')): void {
    if (this.aborted) return
    this.aborted = true
    this.reason = reason
    for (const listener of this.listeners.splice(0)) listener()
  }

  on(_event: 'abort', listener: () => void): this {
    this.listeners.push(listener)
    return this
  }

  once(event: 'abort', listener: () => void): this {
    return this.on(event, listener)
  }

  removeListener(_event: 'abort', listener: () => void): this {
    const index = this.listeners.indexOf(listener)
    if (index >= 0) this.listeners.splice(index, 1)
    return this
  }
}

/** A Web AbortSignal that aborts with the cancellation (for `fetch`). */
export function toAbortSignal(cancel: Cancellation): AbortSignal {
  const controller = new AbortController()
  if (cancel.aborted) controller.abort(cancel.reason)
  else cancel.once('abort', () => controller.abort(cancel.reason))
  return controller.signal
}

/**
 * The part of a byte stream the gateway reads: a Web `ReadableStream` has it. The Node client
 * gives a lighter one over its own body, since building a Web stream from a Node stream
 * (`Readable.toWeb`) costs ~50 µs per answer before the first byte.
 */
export interface ByteStream {
  getReader(): ByteReader
}

export interface ByteReader {
  read(): Promise<{ done?: boolean; value?: Uint8Array }>
  cancel(reason?: unknown): Promise<void>
}

/**
 * What the gateway reads of a backend's answer. A Web `Response` satisfies it (Workers); the
 * Node client returns a lighter object with no Web stream machinery.
 */
export interface UpstreamResponse {
  status: number
  headers: { get(name: string): string | null }
  /** The body as a byte stream (event streams). */
  readonly body: ByteStream | null
  /** The whole body as text (JSON answers). */
  text(): Promise<string>
}

/**
 * The gateway's HTTP client for backend nodes. The Node entry supplies a pooled undici client
 * (much cheaper per request than the global fetch); Workers use `fetch`.
 */
export type UpstreamFetch = (request: UpstreamRequest) => Promise<UpstreamResponse>

export const fetchUpstream: UpstreamFetch = (request) =>
  fetch(request.url, {
    method: request.method,
    headers: request.headers,
    body: request.body,
    signal: request.cancel && toAbortSignal(request.cancel),
  })
