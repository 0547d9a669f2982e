import { errorBody, errorEvent } from '../../openai/errors.ts'
import { DONE_EVENT } from '../../openai/responses.ts'
import { createEventParser } from '../cache/event-stream.ts'
import type { StreamOutcome } from '../types.ts'
import type { ByteStream } from '../upstream/upstream.ts'
import { ChunkRewriter, type ChunkRewriterOptions, type StreamProgress } from './chunk-rewriter.ts'
import { StreamBroken } from './errors.ts'

const encoder = new TextEncoder()

class DeadlineReached extends Error {}

export interface StreamRelayOptions extends ChunkRewriterOptions {
  /** The first node's event stream. */
  body: ByteStream
  stallTimeoutMs: number
  /** performance.now() time at which the stream is ended with a timeout error event. */
  deadline: number
  /**
   * The current node broke (error, early end, error event, stall): returns the event stream of
   * a node that continues from `progress`, or null when none can (the client then gets an
   * error event).
   */
  resume(progress: StreamProgress, failure: StreamBroken): Promise<ByteStream | null>
  /** The stream ended with an error event because nothing could continue it. */
  onGiveUp(failure: StreamBroken): void
  /** Called once when the client's stream ends: closed after its last event, or cancelled by the client. */
  onEnd?(outcome: StreamOutcome): void
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
  const chunks = new ChunkRewriter(options)
  let reader = options.body.getReader()
  let ended = false
  const end = (outcome: StreamOutcome) => {
    if (ended) return
    ended = true
    options.onEnd?.(outcome)
  }
  // The data of the events completed by the last read; a continuation gets a fresh parser.
  const events: string[] = []
  const newParser = () => createEventParser((data) => events.push(data))
  let parse = newParser()

  const readWithStallTimer = async (): Promise<{ done?: boolean; value?: Uint8Array }> => {
    let timer: ReturnType<typeof setTimeout> | undefined
    const left = options.deadline - performance.now()
    const stalled = new Promise<never>((_, reject) => {
      if (left <= options.stallTimeoutMs) timer = setTimeout(() => reject(new DeadlineReached()), Math.max(0, left))
      else
        timer = setTimeout(
          () => reject(new StreamBroken('stall', `no event for ${options.stallTimeoutMs} ms`)),
          options.stallTimeoutMs,
        )
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

  /** One read's events rewritten for the client (possibly none), and the failure an error event meant. */
  const relayNextRead = async (): Promise<{ out: string; failure?: StreamBroken }> => {
    const { value, done } = await readWithStallTimer()
    if (done) throw new StreamBroken('connect_error', 'the backend ended the stream early')
    events.length = 0
    parse(value!)
    let out = ''
    for (const data of events) {
      if (chunks.finished) break
      try {
        out += chunks.rewrite(data)
      } catch (error) {
        // Events before the broken one still reach the client.
        return { out, failure: error instanceof StreamBroken ? error : new StreamBroken('server_error', String(error)) }
      }
    }
    return { out }
  }

  const failOrResume = async (failure: StreamBroken): Promise<string | null> => {
    await reader.cancel().catch(() => {})
    if (chunks.complete) {
      chunks.finished = true
      return DONE_EVENT
    }
    const progress = chunks.progress
    const next = await options
      .resume({ tokenIds: [...progress.tokenIds], textOffset: progress.textOffset }, failure)
      .catch(() => null)
    if (!next) {
      options.onGiveUp(failure)
      chunks.finished = true
      return errorEvent(
        errorBody('The backend serving this stream failed and no other node could continue it', {
          type: 'server_error',
          code: 'stream_interrupted',
        }),
      )
    }
    reader = next.getReader()
    chunks.resumed = true
    parse = newParser()
    return null
  }

  /**
   * After [DONE] the node's answer is read to its end (normally already here), so its
   * connection is reused; cancelling would close it. After anything else it is cancelled.
   */
  const endUpstream = async () => {
    if (chunks.sawDone) {
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
          if (chunks.finished) {
            end('ok')
            controller.close()
            return
          }
          let out = ''
          let failure: StreamBroken | undefined
          try {
            ;({ out, failure } = await relayNextRead())
            // The client left while the read was pending: nothing more to send or continue.
            if (ended) return
          } catch (error) {
            if (ended) return
            if (error instanceof DeadlineReached) {
              // The request's time is up: no continuation, however healthy the nodes.
              await reader.cancel().catch(() => {})
              options.onGiveUp(new StreamBroken('stall', 'deadline'))
              chunks.finished = true
              out += errorEvent(
                errorBody('The request took longer than the gateway allows', { type: 'server_error', code: 'timeout' }),
              )
            } else failure = error instanceof StreamBroken ? error : new StreamBroken('server_error', String(error))
          }
          if (failure) {
            const errorEvent = await failOrResume(failure)
            if (errorEvent) out += errorEvent
          }
          if (out) {
            controller.enqueue(encoder.encode(out))
            if (chunks.finished) {
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
      chunks.finished = true
      await reader.cancel(reason).catch(() => {})
    },
  })
}
