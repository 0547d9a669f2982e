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
  outcome?: 'ok' | 'client_closed' | 'upstream_error'
}

export class RequestLifecycle {
  readonly record: RequestRecord
  private readonly callbacks: ((record: RequestRecord) => void | Promise<void>)[] = []
  private ended = false

  constructor(record: RequestRecord) {
    this.record = record
  }

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
