const encoder = new TextEncoder()

/** Splits an SSE byte stream into `data:` payloads as it passes. */
export function createEventParser(onData: (data: string) => void) {
  const decoder = new TextDecoder()
  let pending = ''
  return (chunk: Uint8Array) => {
    pending += decoder.decode(chunk, { stream: true })
    let cut: number
    while ((cut = pending.indexOf('\n\n')) !== -1) {
      const event = pending.slice(0, cut)
      pending = pending.slice(cut + 2)
      const data = event
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n')
      if (data) onData(data)
    }
  }
}

/**
 * Events of one stream, readable by any number of followers while it is still being written:
 * a follower gets what was already written, then each new event as it comes.
 */
export class EventBroadcast {
  readonly events: string[] = []
  /** 'ok': ended with [DONE]; 'failed': broke or carried an error event. */
  state: 'open' | 'ok' | 'failed' = 'open'
  private waiters: (() => void)[] = []

  push(data: string): void {
    this.events.push(data)
    this.wake()
  }

  finish(state: 'ok' | 'failed'): void {
    if (this.state === 'open') this.state = state
    this.wake()
  }

  /** A fresh SSE stream of these events, ending when the broadcast ends. */
  subscribe(): ReadableStream<Uint8Array> {
    let next = 0
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        while (next === this.events.length && this.state === 'open') await new Promise<void>((resolve) => this.waiters.push(resolve))
        if (next < this.events.length) {
          const batch = this.events.slice(next).map((d) => `data: ${d}\n\n`).join('')
          next = this.events.length
          controller.enqueue(encoder.encode(batch))
          return
        }
        if (this.state === 'failed' && !this.events.some((e) => e.startsWith('{"error"'))) {
          controller.enqueue(encoder.encode(`data: ${JSON.stringify({ error: { message: 'The upstream stream broke', type: 'server_error', param: null, code: 'upstream_error' } })}\n\n`))
        }
        controller.close()
      },
    })
  }

  private wake(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }
}

/** Replays stored events as an SSE stream. */
export function replayEvents(events: string[]): ReadableStream<Uint8Array> {
  const broadcast = new EventBroadcast()
  for (const e of events) broadcast.push(e)
  broadcast.finish('ok')
  return broadcast.subscribe()
}
