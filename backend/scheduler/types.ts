import type { GrammarSpec } from '../grammar/spec.ts'
import type { SamplingParams } from '../sampling/sampler.ts'

/** One sequence to generate, in token ids. */
export interface SequenceRequest {
  id: number
  promptIds: number[]
  /**
   * Tokens this sequence already generated elsewhere (a resumed stream): prefilled after the
   * prompt, replayed into the sampler, and counted against maxTokens. Fewer than maxTokens.
   */
  generatedIds?: number[]
  maxTokens: number
  sampling: SamplingParams
  /** Generation ends with finish reason `stop` on any of these (unless empty). */
  eosTokenIds: number[]
  /** Epoch milliseconds after which the sequence is ended with `timeout`. */
  deadline?: number
  /** Output format to enforce (compiled in the engine worker before the sequence is queued). */
  grammar?: GrammarSpec
  /**
   * Report the prompt tokens' logprobs (OpenAI's echo + logprobs), with `sampling.logprobs`
   * alternatives each, in one event before the first token. maxTokens 0 then only scores.
   */
  promptLogprobs?: boolean
}

/** One prompt token's log-probability given the tokens before it; null for the first token. */
export interface PromptLogprob {
  token: number
  logprob: number | null
  top?: { token: number; logprob: number }[]
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'timeout' | 'error'

/** A token for one sequence, and/or its end. An EOS token ends the sequence and is not reported. */
export interface TokenEvent {
  id: number
  token?: number
  logprob?: number
  top?: { token: number; logprob: number }[]
  /** The prompt's logprobs (requests with promptLogprobs), sent once its prefill is done. */
  prompt?: PromptLogprob[]
  finish?: FinishReason
  /** With finish `error`: what failed. */
  message?: string
}

export interface StepStats {
  waiting: number
  running: number
  /** Rows in this step's decode pass (0 when the step only prefilled). */
  batchSize: number
  decodeMs: number
  prefillMs: number
  prefillTokens: number
}

/** What the model runner must offer the scheduler. */
export interface StepRunner {
  readonly shape: { vocabSize: number }
  readonly cache: { rows: number; lengths: Int32Array; addRow(): number; removeRow(row: number): number }
  /** Per row, the logits of `logitPositions` (default: the last position), [positions × vocab]. */
  prefill(rows: { row: number; tokens: ArrayLike<number>; logitPositions?: number[] }[]): Promise<Float32Array[]>
  /** A staging cache for one prompt prefilled chunk by chunk, outside the decode batch. */
  startChunkedPrefill(totalTokens: number): unknown
  prefillChunk(staging: unknown, tokens: ArrayLike<number>, logitPositions: number[]): Promise<Float32Array>
  /** Moves the staged prompt into a new decode row and returns it. */
  finishChunkedPrefill(staging: unknown): number
  decode(tokens: ArrayLike<number>): Promise<Float32Array>
}

/**
 * Restricts which tokens a sequence may sample next (grammar-constrained decoding). The
 * scheduler asks for the mask before sampling and reports every token that joins the sequence.
 */
export interface TokenConstraint {
  /** Bit `t & 31` of word `t >> 5` is set when token t is allowed (xgrammar's bitmask layout). */
  nextTokenMask(): Promise<Int32Array>
  /** Advances over a sampled token; false if the constraint does not allow it. */
  accept(token: number): boolean
  /** True once the constraint has accepted its stop token: the sequence is complete. */
  isTerminated(): boolean
  dispose(): void
}
