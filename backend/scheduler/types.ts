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
}

export type FinishReason = 'stop' | 'length' | 'abort' | 'timeout' | 'error'

/** A token for one sequence, and/or its end. An EOS token ends the sequence and is not reported. */
export interface TokenEvent {
  id: number
  token?: number
  logprob?: number
  top?: { token: number; logprob: number }[]
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
  prefill(rows: { row: number; tokens: ArrayLike<number> }[]): Promise<Float32Array[]>
  decode(tokens: ArrayLike<number>): Promise<Float32Array>
}
