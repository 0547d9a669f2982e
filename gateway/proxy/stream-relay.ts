import type { Usage } from '../pipeline/lifecycle.ts'
import type { AttemptOutcome } from '../types.ts'
import type { ByteStream } from './upstream.ts'

const encoder = new TextEncoder()

/** What a continuation needs: the tokens sampled so far and how much text the client has. */
export interface StreamProgress {
  tokenIds: number[]
  textOffset: number
}

/** A failure of the stream's current node, after its first byte. */
export class StreamBroken extends Error {
  constructor(readonly reason: Extract<AttemptOutcome, 'connect_error' | 'server_error' | 'stall'>, message: string) {
    super(message)
    this.name = 'StreamBroken'
  }
}

class DeadlineReached extends Error {}

export interface StreamRelayOptions {
  /** The first node's event stream. */
  body: ByteStream
  stallTimeoutMs: number
  /** performance.now() time at which the stream is ended with a timeout error event. */
  deadline: number
  /** Drop the usage chunk (the gateway asked for it, the client did not). */
  dropUsageEvent: boolean
  /** Drop `token_ids` from chunks (the gateway asked for them, the client did not). */
  dropTokenIds: boolean
  onUsage(usage: Usage): void
  /**
   * The current node broke (error, early end, error event, stall): returns the event stream of
   * a node that continues from `progress`, or null when none can (the client then gets an
   * error event).
   */
  resume(progress: StreamProgress, failure: StreamBroken): Promise<ByteStream | null>
  /** The stream ended with an error event because nothing could continue it. */
  onGiveUp(failure: StreamBroken): void
  /** Called once when the client's stream ends: closed after its last event, or cancelled by the client. */
  onEnd?(outcome: 'ok' | 'client_closed' | 'upstream_error'): void
}

interface Chunk {
  id?: string
  created?: number
  choices?: { text?: string; delta?: { role?: string; content?: string | null }; token_ids?: number[]; finish_reason?: string | null }[]
  usage?: { prompt_tokens?: number; completion_tokens?: number } | null
  error?: unknown
}

/**
 * Relays an OpenAI event stream from a backend node to the client event by event, and when the
 * node breaks mid-stream (connection lost, stream cut short, an error event, or no event for
 * `stallTimeoutMs`) continues the same stream from another node: the new node gets the tokens
 * sampled so far and regenerates nothing the client already has. Chunk ids stay those of the
 * first node, so the client sees one stream. If no node can continue, the stream ends with an
 * error event in OpenAI's shape, never a silent [DONE].
 */
export function relayEventStream(options: StreamRelayOptions): ReadableStream<Uint8Array> {
  const progress: StreamProgress = { tokenIds: [], textOffset: 0 }
  let reader = options.body.getReader()
  let resumed = false
  let finished = false
  let sawDone = false
  let ended = false
  const end = (outcome: 'ok' | 'client_closed' | 'upstream_error') => {
    if (ended) return
    ended = true
    options.onEnd?.(outcome)
  }
  /** The choice has its finish_reason: all its text is here, only usage and [DONE] may be missing. */
  let complete = false
  let identity: { id?: string; created?: number } | undefined
  const decoder = new TextDecoder()
  let pending = ''

  const readWithStallTimer = async (): Promise<{ done?: boolean; value?: Uint8Array }> => {
    let timer: ReturnType<typeof setTimeout> | undefined
    const left = options.deadline - performance.now()
    const stalled = new Promise<never>((_, reject) => {
      if (left <= options.stallTimeoutMs) timer = setTimeout(() => reject(new DeadlineReached()), Math.max(0, left))
      else timer = setTimeout(() => reject(new StreamBroken('stall', `no event for ${options.stallTimeoutMs} ms`)), options.stallTimeoutMs)
    })
    try {
      return await Promise.race([reader.read(), stalled])
    } catch (error) {
      if (error instanceof StreamBroken || error instanceof DeadlineReached) throw error
      throw new StreamBroken('connect_error', 'the backend connection broke')
    } finally {
      clearTimeout(timer)
    }
  }

  /** One complete event in, the bytes to send out (possibly none); throws StreamBroken on an error event. */
  const relayEvent = (event: string): string => {
    if (!event.startsWith('data:')) return `${event}\n\n`
    const data = event.slice(5).trim()
    if (data === '[DONE]') {
      finished = true
      sawDone = true
      return 'data: [DONE]\n\n'
    }
    let chunk: Chunk
    try {
      chunk = JSON.parse(data) as Chunk
    } catch {
      throw new StreamBroken('server_error', 'the backend sent an event that is not JSON')
    }
    if (chunk.error !== undefined) {
      // The request's own deadline passed at the backend: another node would time out too, and
      // the client should learn that it was a timeout (the backend's event says so).
      if ((chunk.error as { code?: unknown } | null)?.code === 'timeout') {
        options.onGiveUp(new StreamBroken('server_error', 'the backend timed out'))
        finished = true
        return `${event}\n\n`
      }
      throw new StreamBroken('server_error', 'the backend sent an error event')
    }
    if (chunk.usage) options.onUsage({ promptTokens: chunk.usage.prompt_tokens ?? 0, completionTokens: chunk.usage.completion_tokens ?? 0 })
    const choices = Array.isArray(chunk.choices) ? chunk.choices : []
    if (choices.length === 0 && chunk.usage && options.dropUsageEvent) return ''
    let edited = false
    if (!identity) identity = { id: chunk.id, created: chunk.created }
    else if (chunk.id !== identity.id || chunk.created !== identity.created) {
      chunk.id = identity.id
      chunk.created = identity.created
      edited = true
    }
    const choice = choices[0]
    if (choice) {
      if (Array.isArray(choice.token_ids)) {
        progress.tokenIds.push(...choice.token_ids)
        if (options.dropTokenIds) {
          delete choice.token_ids
          edited = true
        }
      }
      if (choice.finish_reason) complete = true
      const text = choice.text ?? choice.delta?.content ?? ''
      progress.textOffset += text.length
      // A continuation opens with its own assistant-role chunk; the client already had one.
      if (resumed && choice.delta && choice.delta.role !== undefined && !text && !choice.finish_reason) return ''
    }
    return edited ? `data: ${JSON.stringify(chunk)}\n\n` : `${event}\n\n`
  }

  const failOrResume = async (failure: StreamBroken): Promise<string | null> => {
    await reader.cancel().catch(() => {})
    if (complete) {
      finished = true
      return 'data: [DONE]\n\n'
    }
    const next = await options.resume({ tokenIds: [...progress.tokenIds], textOffset: progress.textOffset }, failure).catch(() => null)
    if (!next) {
      options.onGiveUp(failure)
      finished = true
      return `data: ${JSON.stringify({ error: { message: 'The backend serving this stream failed and no other node could continue it', type: 'server_error', param: null, code: 'stream_interrupted' } })}\n\n`
    }
    reader = next.getReader()
    resumed = true
    pending = ''
    return null
  }

  /**
   * After [DONE] the node's answer is read to its end (normally already here), so its
   * connection is reused; cancelling would close it. After anything else it is cancelled.
   */
  const endUpstream = async () => {
    if (sawDone) {
      try {
        while (!(await readWithStallTimer()).done) {}
        return
      } catch {
        // Broken or stalled after [DONE]: cancelled below.
      }
    }
    await reader.cancel().catch(() => {})
  }

  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        // Loop until there is something to send: some reads hold only part of an event.
        for (;;) {
          if (finished) {
            end('ok')
            controller.close()
            return
          }
          let out = ''
          try {
            const { value, done } = await readWithStallTimer()
            // The client left while the read was pending: nothing more to send or continue.
            if (ended) return
            if (done) throw new StreamBroken('connect_error', 'the backend ended the stream early')
            pending += decoder.decode(value, { stream: true })
            let cut: number
            while (!finished && (cut = pending.indexOf('\n\n')) !== -1) {
              const event = pending.slice(0, cut)
              pending = pending.slice(cut + 2)
              if (event) out += relayEvent(event)
            }
          } catch (error) {
            if (ended) return
            if (error instanceof DeadlineReached) {
              // The request's time is up: no continuation, however healthy the nodes.
              await reader.cancel().catch(() => {})
              options.onGiveUp(new StreamBroken('stall', 'deadline'))
              finished = true
              out += `data: ${JSON.stringify({ error: { message: 'The request took longer than the gateway allows', type: 'server_error', param: null, code: 'timeout' } })}\n\n`
            } else {
              const failure = error instanceof StreamBroken ? error : new StreamBroken('server_error', String(error))
              const errorEvent = await failOrResume(failure)
              if (errorEvent) out += errorEvent
            }
          }
          if (out) {
            controller.enqueue(encoder.encode(out))
            if (finished) {
              await endUpstream()
              end('ok')
              controller.close()
            }
            return
          }
        }
      } catch (error) {
        // Not expected (every failure above becomes an event), but the request must still end.
        end('upstream_error')
        await reader.cancel().catch(() => {})
        throw error
      }
    },
    async cancel(reason) {
      end('client_closed')
      finished = true
      await reader.cancel(reason).catch(() => {})
    },
  })
}
