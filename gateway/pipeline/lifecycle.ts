import type { StreamOutcome } from '../types.ts'
import { observeStream } from './observe-stream.ts'

/**
 * What the gateway learns about one request as it runs, and the callbacks that must run once
 * when it ends: after the JSON body is sent, or when a stream finishes or the client leaves.
 * Limits refund tokens and free slots here; the access log and metrics record here.
 */
export interface Usage {
  promptTokens: number
  completionTokens: number
}

export interface RequestRecord {
  requestId: string
  route: string
  startedAt: number
  keyId?: string
  model?: string
  status?: number
  cache?: 'HIT' | 'MISS' | 'BYPASS'
  firstByteAt?: number
  /** The node and region that answered (the first one, for a stream continued elsewhere). */
  backend?: string
  region?: string
  /** Times a broken stream was continued on another node. */
  resumes?: number
  usage?: Usage
  /** How the response ended: complete, client went away, upstream broke. */
  outcome?: StreamOutcome
}

export class RequestLifecycle {
  readonly record: RequestRecord
  /** Headers every response to this request carries: the request id, the rate-limit state. */
  readonly headers: Record<string, string> = {}
  /** The response made by respond(): it has `headers` already, and a stream ends the request at its last byte. */
  response: Response | undefined
  /** respond() was given a stream. */
  streaming = false
  private readonly callbacks: ((record: RequestRecord) => void | Promise<void>)[] = []
  private ended = false

  constructor(record: RequestRecord) {
    this.record = record
  }

  /**
   * The handler's response, with this request's headers added as plain values (so nothing
   * builds a Headers object on the way out) and, for a stream, the end of the request tied to
   * its last byte or the client leaving. A stream that calls `endStream` itself
   * (`endsItself`) is not wrapped: one Web stream less per request.
   */
  respond(
    body: string | ReadableStream<Uint8Array> | null,
    status: number,
    headers: Record<string, string>,
    options: { endsItself?: boolean } = {},
  ): Response {
    Object.assign(headers, this.headers)
    this.streaming = body instanceof ReadableStream
    if (body instanceof ReadableStream && !options.endsItself) body = observeStream(body, { onEnd: this.endStream })
    return (this.response = new Response(body, { status, headers }))
  }

  /** Ends the request when its response stream ends, with the outcome the stream saw unless one was recorded. */
  readonly endStream = (outcome: StreamOutcome): void => this.end({ outcome: this.record.outcome ?? outcome })

  onEnd(callback: (record: RequestRecord) => void | Promise<void>): void {
    this.callbacks.push(callback)
  }

  /** Runs the end callbacks once, in reverse order of registration (like a stack of finally blocks). */
  end(update: Partial<RequestRecord> = {}): void {
    if (this.ended) return
    this.ended = true
    Object.assign(this.record, update)
    for (const callback of this.callbacks.reverse()) {
      try {
        const result = callback(this.record)
        if (result instanceof Promise) result.catch(() => {})
      } catch {
        // One failing callback must not stop the others (a refund must not block a log line).
      }
    }
  }
}

declare module 'hono' {
  interface ContextVariableMap {
    lifecycle: RequestLifecycle
  }
}
