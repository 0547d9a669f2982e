import { type ChatDelta, type CompletionChoice, DONE_EVENT, type StreamChunk } from '../../openai/responses.ts'
import { encodeEvent } from '../cache/event-stream.ts'
import type { Usage } from '../pipeline/lifecycle.ts'
import { StreamBroken } from './errors.ts'
import { type ReceivedUsage, usageFrom } from './usage.ts'

/** What a continuation needs: the tokens sampled so far and how much text the client has. */
export interface StreamProgress {
  tokenIds: number[]
  textOffset: number
}

export interface ChunkRewriterOptions {
  /** Drop the usage chunk (the gateway asked for it, the client did not). */
  dropUsageEvent: boolean
  /** Drop `token_ids` from chunks (the gateway asked for them, the client did not). */
  dropTokenIds: boolean
  onUsage(usage: Usage): void
  /** The backend's own timeout event ends the stream: nothing can continue it. */
  onGiveUp(failure: StreamBroken): void
}

/**
 * A chunk of either stream (openai/responses.ts) as received from a backend: the fields the
 * rewriter reads, any of them missing, or an error event instead.
 */
interface Chunk extends Partial<Pick<StreamChunk, 'id' | 'created'>> {
  choices?: (Partial<Pick<CompletionChoice, 'text' | 'token_ids' | 'finish_reason'>> & { delta?: Partial<ChatDelta> })[]
  usage?: ReceivedUsage | null
  error?: unknown
}

/**
 * Rewrites a backend's stream chunk by chunk for the client, and keeps what a continuation
 * needs: chunk ids stay those of the first node, `token_ids` and the usage chunk are dropped
 * when the client did not ask for them, and a continuation's opening role chunk is skipped.
 */
export class ChunkRewriter {
  readonly progress: StreamProgress = { tokenIds: [], textOffset: 0 }
  /** The choice has its finish_reason: all its text is here, only usage and [DONE] may be missing. */
  complete = false
  /** Nothing more is relayed: [DONE] or the backend's timeout event went out. */
  finished = false
  sawDone = false
  /** The current node continues another's stream. */
  resumed = false
  private identity: { id?: string; created?: number } | undefined

  constructor(private readonly options: ChunkRewriterOptions) {}

  /** One event's data in, the bytes to send out (possibly none); throws StreamBroken on an error event. */
  rewrite(data: string): string {
    if (data.trim() === '[DONE]') {
      this.finished = true
      this.sawDone = true
      return DONE_EVENT
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
        this.options.onGiveUp(new StreamBroken('server_error', 'the backend timed out'))
        this.finished = true
        return encodeEvent(data)
      }
      throw new StreamBroken('server_error', 'the backend sent an error event')
    }
    if (chunk.usage) this.options.onUsage(usageFrom(chunk.usage))
    const choices = Array.isArray(chunk.choices) ? chunk.choices : []
    if (choices.length === 0 && chunk.usage && this.options.dropUsageEvent) return ''
    let edited = false
    if (!this.identity) this.identity = { id: chunk.id, created: chunk.created }
    else if (chunk.id !== this.identity.id || chunk.created !== this.identity.created) {
      chunk.id = this.identity.id
      chunk.created = this.identity.created
      edited = true
    }
    const choice = choices[0]
    if (choice) {
      if (Array.isArray(choice.token_ids)) {
        this.progress.tokenIds.push(...choice.token_ids)
        if (this.options.dropTokenIds) {
          delete choice.token_ids
          edited = true
        }
      }
      if (choice.finish_reason) this.complete = true
      const text = choice.text ?? choice.delta?.content ?? ''
      this.progress.textOffset += text.length
      // A continuation opens with its own assistant-role chunk; the client already had one.
      if (this.resumed && choice.delta && choice.delta.role !== undefined && !text && !choice.finish_reason) return ''
    }
    return encodeEvent(edited ? JSON.stringify(chunk) : data)
  }
}
