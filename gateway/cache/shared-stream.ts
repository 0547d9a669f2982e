import { BROKEN_STREAM_EVENT, createEventParser, encodeEvent, isErrorEvent } from './event-stream.ts'

const encoder = new TextEncoder()

export interface SharedStreamOptions {
  /** Upstream bytes past which events are not kept for storing (nor, once nobody follows, at all). */
  maxEntryBytes: number
  /** The stream can take no new followers any more: it ended, or grew too large to store. Called once. */
  onRelease: () => void
  /** The stream ended with `data: [DONE]`, no error event, within the size limit. */
  onComplete: (events: string[]) => void
}

/**
 * One upstream SSE response shared by the leader's client and any number of followers
 * (an in-memory broadcaster: the events so far plus readers that wait for more).
 *
 * The leader's client gets the upstream bytes unchanged, each chunk as soon as it is read;
 * followers get the parsed `data:` payloads re-encoded as SSE, also as they arrive. Any reader
 * that needs more data pulls the next upstream chunk (or joins the read under way), so a slow
 * reader never holds the others back. The upstream is cancelled once every reader has gone.
 */
export class SharedStream {
  /** The leader's client body. */
  readonly body: ReadableStream<Uint8Array>
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>
  private readonly parse: (chunk: Uint8Array) => void
  private readonly events: string[] = []
  private state: 'open' | 'complete' | 'failed' = 'open'
  /** False once the events were dropped (too large, nobody following): nobody may join. */
  private retained = true
  private storable = true
  private released = false
  private bytes = 0
  private sawError = false
  private lastEvent: string | undefined
  private followers = 0
  private client: ReadableStreamDefaultController<Uint8Array> | null = null
  private clientAttached = true
  private reading: Promise<void> | null = null

  constructor(
    upstream: ReadableStream<Uint8Array>,
    private readonly options: SharedStreamOptions,
  ) {
    this.reader = upstream.getReader()
    this.parse = createEventParser((data) => {
      if (isErrorEvent(data)) {
        // Doomed: never stored, and new identical requests should not join it.
        this.sawError = true
        this.release()
      }
      this.lastEvent = data
      if (this.retained) this.events.push(data)
    })
    this.body = new ReadableStream<Uint8Array>(
      {
        start: (controller) => {
          this.client = controller
        },
        pull: () => this.next(),
        cancel: (reason) => {
          this.clientAttached = false
          this.client = null
          if (this.followers === 0) this.abort(reason)
        },
      },
      { highWaterMark: 0 },
    )
  }

  /**
   * For a follower: waits for the first event, then a stream of all events so far and to come.
   * Null when joining would not give a good copy (the stream failed, begins with an error
   * event, or was too large to keep): the follower should forward on its own instead.
   */
  async join(): Promise<ReadableStream<Uint8Array> | null> {
    while (this.state === 'open' && this.retained && !this.sawError && this.events.length === 0) await this.next()
    // Checked and subscribed without an await in between, so nothing is dropped meanwhile.
    if (!this.retained || this.sawError || this.state === 'failed') return null
    return this.subscribe()
  }

  /** Reads the next upstream chunk, or joins the read already under way. */
  private next(): Promise<void> {
    if (this.state !== 'open') return Promise.resolve()
    return (this.reading ??= this.readOnce().finally(() => (this.reading = null)))
  }

  private async readOnce(): Promise<void> {
    let result: ReadableStreamReadResult<Uint8Array>
    try {
      result = await this.reader.read()
    } catch (error) {
      this.end('failed', { error })
      return
    }
    if (this.state !== 'open') return
    if (result.done) {
      this.end(this.lastEvent === '[DONE]' && !this.sawError ? 'complete' : 'failed')
      return
    }
    this.bytes += result.value.byteLength
    if (this.storable && this.bytes > this.options.maxEntryBytes) this.overflow()
    this.parse(result.value)
    if (this.client) {
      try {
        this.client.enqueue(result.value)
      } catch {
        this.client = null
      }
    }
  }

  /** Too large to store: no new followers; the events are kept only while someone follows. */
  private overflow(): void {
    this.storable = false
    if (this.followers === 0) this.dropEvents()
    this.release()
  }

  private dropEvents(): void {
    this.retained = false
    this.events.length = 0
  }

  private end(state: 'complete' | 'failed', upstreamError?: { error: unknown }): void {
    if (this.state !== 'open') return
    this.state = state
    if (this.client) {
      try {
        if (upstreamError) this.client.error(upstreamError.error)
        else this.client.close()
      } catch {
        // The client stream is already closed.
      }
      this.client = null
    }
    this.release()
    if (state === 'complete' && this.storable) this.options.onComplete(this.events.slice())
  }

  /** Nobody reads any more: stop the upstream (a partial stream is never stored). */
  private abort(reason: unknown): void {
    if (this.state !== 'open') return
    this.state = 'failed'
    this.release()
    this.reader.cancel(reason).catch(() => {})
  }

  private release(): void {
    if (this.released) return
    this.released = true
    this.options.onRelease()
  }

  private subscribe(): ReadableStream<Uint8Array> {
    let index = 0
    let left = false
    this.followers++
    const leave = (reason?: unknown) => {
      if (left) return
      left = true
      this.followers--
      if (this.followers > 0) return
      if (!this.clientAttached) this.abort(reason)
      else if (!this.storable) this.dropEvents()
    }
    return new ReadableStream<Uint8Array>(
      {
        pull: async (controller) => {
          while (index === this.events.length && this.state === 'open') await this.next()
          if (index < this.events.length) {
            const batch = this.events.slice(index).map(encodeEvent).join('')
            index = this.events.length
            controller.enqueue(encoder.encode(batch))
            return
          }
          if (this.state === 'failed' && !this.sawError)
            controller.enqueue(encoder.encode(encodeEvent(BROKEN_STREAM_EVENT)))
          leave()
          controller.close()
        },
        cancel: (reason) => leave(reason),
      },
      { highWaterMark: 0 },
    )
  }
}
