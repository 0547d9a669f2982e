import { errorMessage } from '../../lib/error-message.ts'
import { SequenceSampler, scoreToken } from '../sampling/sampler.ts'
import type {
  FinishReason,
  PromptLogprob,
  SequenceRequest,
  StepRunner,
  StepStats,
  TokenConstraint,
  TokenEvent,
} from './types.ts'

export interface SchedulerOptions {
  /** Most sequences decoded together in one forward pass. */
  maxBatchSize: number
  /** Admission stops while running prompts + their max_tokens would pass this (bounds KV memory). */
  maxTokensInFlight: number
  /**
   * Padded prompt tokens prefilled in one pass at a step boundary, before the decode pass. A
   * longer prompt is prefilled in chunks of this size, one per step, between decode passes.
   */
  maxPrefillTokens: number
  /** The model's context window; a sequence that reaches it ends with `length`. */
  contextLength: number
}

interface Sequence {
  request: SequenceRequest
  /** Prompt, then any tokens generated before a resume: what prefill runs over. */
  prefillIds: number[]
  sampler: SequenceSampler
  eos: Set<number>
  generated: number
  /** Next input token (the last sampled one). */
  next: number
  finish?: FinishReason
  /** With request.promptLogprobs: the prompt's logprobs so far. */
  promptLogprobs?: PromptLogprob[]
  /** Grammar-constrained decoding: the tokens this sequence may sample. */
  constraint?: TokenConstraint
}

/** A prompt longer than maxPrefillTokens, prefilled one chunk per step. */
interface ChunkedPrefill {
  seq: Sequence
  staging: unknown
  /** Tokens of seq.prefillIds already prefilled. */
  done: number
}

/**
 * Iteration-level (continuous) batching: one decode pass per step over every running
 * sequence. Waiting requests are prefilled at step boundaries and decode with the rest from
 * the next step; finished or aborted sequences leave at the boundary, freeing their row.
 * A prompt longer than maxPrefillTokens is prefilled in chunks, one per step, so running
 * sequences keep decoding while it is admitted.
 */
export class Scheduler {
  private readonly runner: StepRunner
  private readonly options: SchedulerOptions
  private readonly emit: (events: TokenEvent[], stats: StepStats) => void
  private readonly waiting: Sequence[] = []
  /** running[r] owns KV cache row r. */
  private readonly running: Sequence[] = []
  private chunked: ChunkedPrefill | null = null
  private readonly aborted = new Set<number>()
  private wake: (() => void) | null = null
  private stopped = false
  private loopDone: Promise<void> | null = null

  constructor(runner: StepRunner, options: SchedulerOptions, emit: (events: TokenEvent[], stats: StepStats) => void) {
    this.runner = runner
    this.options = options
    this.emit = emit
  }

  /** Sequences not decoding yet: queued, or a long prompt part-way through its prefill. */
  get waitingCount(): number {
    return this.waiting.length + (this.chunked ? 1 : 0)
  }

  get runningCount(): number {
    return this.running.length
  }

  start(): void {
    this.loopDone ??= this.loop()
  }

  /** Ends the loop after the current step. */
  async stop(): Promise<void> {
    this.stopped = true
    this.wake?.()
    await this.loopDone
  }

  /** `constraint` must already have accepted the request's generatedIds (a resumed stream). */
  add(request: SequenceRequest, constraint?: TokenConstraint): void {
    const generatedIds = request.generatedIds ?? []
    const sampler = new SequenceSampler(request.sampling, request.promptIds)
    sampler.replay(generatedIds)
    this.waiting.push({
      request,
      prefillIds: generatedIds.length > 0 ? request.promptIds.concat(generatedIds) : request.promptIds,
      sampler,
      eos: new Set(request.eosTokenIds),
      generated: generatedIds.length,
      next: 0,
      promptLogprobs: request.promptLogprobs ? [{ token: request.promptIds[0], logprob: null }] : undefined,
      constraint,
    })
    this.wake?.()
  }

  /** The sequence leaves at the next step boundary with finish reason `abort`. */
  abort(id: number): void {
    this.aborted.add(id)
    this.wake?.()
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (this.waiting.length === 0 && this.running.length === 0 && !this.chunked) {
        this.aborted.clear()
        await new Promise<void>((resolve) => (this.wake = resolve))
        this.wake = null
        continue
      }
      try {
        await this.step()
      } catch (error) {
        this.failRunning(error)
      }
    }
  }

  /** A forward pass failed: end every running sequence with `error` and free the cache. */
  private failRunning(error: unknown): void {
    const message = errorMessage(error).split('\n')[0]
    const failed = this.chunked ? [...this.running, this.chunked.seq] : this.running
    const events: TokenEvent[] = failed.map((seq) => ({ id: seq.request.id, finish: 'error' as const, message }))
    for (const seq of this.running) seq.finish = 'error'
    this.chunked = null
    this.removeFinished()
    this.emit(events, {
      waiting: this.waiting.length,
      running: 0,
      batchSize: 0,
      decodeMs: 0,
      prefillMs: 0,
      prefillTokens: 0,
    })
  }

  /** One scheduler iteration: retire; prefill (a chunk, new prompts); then one decode pass. */
  async step(): Promise<void> {
    const events: TokenEvent[] = []
    this.retireAbortedAndExpired(events)
    const stats: StepStats = { waiting: 0, running: 0, batchSize: 0, decodeMs: 0, prefillMs: 0, prefillTokens: 0 }

    const started = performance.now()
    let budget = this.options.maxPrefillTokens
    if (this.chunked) budget -= await this.prefillChunk(events, budget, stats)
    const { batch, long } = this.admit(budget)
    if (long) {
      this.chunked = { seq: long, staging: this.runner.startChunkedPrefill(long.prefillIds.length), done: 0 }
      await this.prefillChunk(events, budget, stats)
    }
    if (batch.length > 0) {
      const rows = batch.map((seq) => ({
        row: this.runner.cache.addRow(),
        tokens: seq.prefillIds,
        logitPositions: this.logitPositions(seq, 0, seq.prefillIds.length),
      }))
      this.running.push(...batch)
      const logits = await this.runner.prefill(rows)
      stats.prefillTokens += rows.length * Math.max(...rows.map((r) => r.tokens.length))
      const masks = await this.masksOf(batch)
      batch.forEach((seq, i) => {
        this.prefilled(seq, 0, logits[i], events, masks[i])
      })
    }
    if (stats.prefillTokens > 0) {
      stats.prefillMs = performance.now() - started
      // First tokens go out now, not after this step's decode pass: that is the TTFT. The
      // prefill is reported with them, once; the decode pass reports itself below.
      this.emit(events.splice(0), { ...stats, waiting: this.waitingCount, running: this.running.length })
      stats.prefillMs = stats.prefillTokens = 0
    }

    // Sequences admitted this step already have their first token; all rows decode together.
    this.removeFinished()
    if (this.running.length > 0) {
      const started = performance.now()
      const logits = await this.runner.decode(this.running.map((s) => s.next))
      stats.decodeMs = performance.now() - started
      stats.batchSize = this.running.length
      const V = this.runner.shape.vocabSize
      const masks = await this.masksOf(this.running)
      this.running.forEach((seq, r) => {
        this.sampleInto(seq, logits.subarray(r * V, (r + 1) * V), events, masks[r])
      })
      this.removeFinished()
    }
    stats.waiting = this.waitingCount
    stats.running = this.running.length
    if (events.length > 0) this.emit(events, stats)
  }

  /** Prefills the next chunk (at most `budget` tokens) of the long prompt; returns its size. */
  private async prefillChunk(events: TokenEvent[], budget: number, stats: StepStats): Promise<number> {
    const chunked = this.chunked!
    const { seq } = chunked
    const start = chunked.done
    const end = Math.min(seq.prefillIds.length, start + Math.max(1, budget))
    const logits = await this.runner.prefillChunk(
      chunked.staging,
      seq.prefillIds.slice(start, end),
      this.logitPositions(seq, start, end),
    )
    chunked.done = end
    stats.prefillTokens += end - start
    if (end === seq.prefillIds.length) {
      this.chunked = null
      this.runner.finishChunkedPrefill(chunked.staging)
      this.running.push(seq)
    }
    const [mask] = end === seq.prefillIds.length ? await this.masksOf([seq]) : [undefined]
    this.prefilled(seq, start, logits, events, mask)
    return end - start
  }

  /**
   * Positions of prefillIds[start..end) whose logits are needed, relative to `start`: the
   * last prompt position (the first sample), and with promptLogprobs every position whose
   * next token is a prompt token.
   */
  private logitPositions(seq: Sequence, start: number, end: number): number[] {
    const total = seq.prefillIds.length
    const positions: number[] = []
    if (seq.promptLogprobs)
      for (let p = start; p < Math.min(end, seq.request.promptIds.length - 1); p++) positions.push(p - start)
    if (end === total && positions[positions.length - 1] !== total - 1 - start) positions.push(total - 1 - start)
    return positions
  }

  /** Takes the logits of a prefill pass over prefillIds[start..]: prompt logprobs, then, at the end, the first token. */
  private prefilled(seq: Sequence, start: number, logits: Float32Array, events: TokenEvent[], mask?: Int32Array): void {
    const V = this.runner.shape.vocabSize
    const prompt = seq.request.promptIds
    const rows = logits.length / V
    if (seq.promptLogprobs) {
      for (let j = 0, p = start; p + 1 < prompt.length && j < rows; j++, p++) {
        const token = prompt[p + 1]
        seq.promptLogprobs.push({
          token,
          ...scoreToken(logits.subarray(j * V, (j + 1) * V), token, seq.request.sampling.logprobs),
        })
      }
    }
    if (!this.running.includes(seq)) return
    const id = seq.request.id
    if (seq.promptLogprobs) events.push({ id, prompt: seq.promptLogprobs })
    if (seq.request.maxTokens === 0) {
      seq.finish = 'length'
      events.push({ id, finish: 'length' })
      return
    }
    this.sampleInto(seq, logits.subarray(logits.length - V), events, mask)
  }

  /** Next-token masks of the constrained sequences (undefined for the others). */
  private masksOf(seqs: Sequence[]): Promise<(Int32Array | undefined)[]> {
    return Promise.all(seqs.map((seq) => seq.constraint?.nextTokenMask()))
  }

  private sampleInto(seq: Sequence, logits: Float32Array, events: TokenEvent[], mask?: Int32Array): void {
    const id = seq.request.id
    let sampled: ReturnType<SequenceSampler['sample']>
    try {
      sampled = seq.sampler.sample(logits, mask)
      if (seq.constraint && !seq.constraint.accept(sampled.token))
        throw new Error(`the grammar refused token ${sampled.token} it had allowed`)
    } catch (error) {
      // A constraint failing ends its own sequence, not the batch.
      seq.finish = 'error'
      events.push({ id, finish: 'error', message: `constrained decoding failed: ${errorMessage(error)}` })
      return
    }
    const { token, logprob, top } = sampled
    // A finished grammar allows only its stop tokens (the model's EOS ids): the sequence is complete.
    if (seq.eos.has(token) || seq.constraint?.isTerminated()) {
      seq.finish = 'stop'
      events.push({ id, finish: 'stop' })
      return
    }
    seq.sampler.accept(token)
    seq.generated++
    seq.next = token
    const event: TokenEvent = { id, token }
    if (logprob !== undefined) Object.assign(event, { logprob, top })
    const length = seq.request.promptIds.length + seq.generated
    if (seq.generated >= seq.request.maxTokens || length >= this.options.contextLength)
      seq.finish = event.finish = 'length'
    events.push(event)
  }

  /**
   * Takes waiting sequences that fit the batch, the in-flight budget and `budget` prefill
   * tokens. A prompt longer than maxPrefillTokens is taken alone, as `long`, to be prefilled
   * in chunks, when no other is.
   */
  private admit(budget: number): { batch: Sequence[]; long?: Sequence } {
    const { maxBatchSize, maxTokensInFlight, maxPrefillTokens } = this.options
    const cost = (seq: Sequence) => seq.request.promptIds.length + seq.request.maxTokens
    let inFlight = 0
    for (const seq of this.running) inFlight += cost(seq)
    if (this.chunked) inFlight += cost(this.chunked.seq)
    const occupied = this.running.length + (this.chunked ? 1 : 0)
    const batch: Sequence[] = []
    let widest = 0
    while (this.waiting.length > 0 && occupied + batch.length < maxBatchSize) {
      const seq = this.waiting[0]
      // An idle engine always takes the head of the queue, whatever its size.
      const alone = occupied === 0 && batch.length === 0
      if (!alone && inFlight + cost(seq) > maxTokensInFlight) break
      if (seq.prefillIds.length > maxPrefillTokens) {
        if (this.chunked || batch.length > 0 || budget < maxPrefillTokens) break
        this.waiting.shift()
        return { batch, long: seq }
      }
      const width = Math.max(widest, seq.prefillIds.length)
      if (!alone && (batch.length + 1) * width > budget) break
      this.waiting.shift()
      batch.push(seq)
      inFlight += cost(seq)
      widest = width
    }
    return { batch }
  }

  private retireAbortedAndExpired(events: TokenEvent[]): void {
    const now = Date.now()
    const reason = (seq: Sequence): FinishReason | undefined =>
      this.aborted.has(seq.request.id)
        ? 'abort'
        : seq.request.deadline !== undefined && now > seq.request.deadline
          ? 'timeout'
          : undefined
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const finish = reason(this.waiting[i])
      if (finish) {
        events.push({ id: this.waiting[i].request.id, finish })
        this.waiting[i].constraint?.dispose()
        this.waiting.splice(i, 1)
      }
    }
    for (const seq of this.running) {
      const finish = reason(seq)
      if (finish && !seq.finish) {
        seq.finish = finish
        events.push({ id: seq.request.id, finish })
      }
    }
    const chunkedFinish = this.chunked && reason(this.chunked.seq)
    if (chunkedFinish) {
      events.push({ id: this.chunked!.seq.request.id, finish: chunkedFinish })
      this.chunked!.seq.constraint?.dispose()
      this.chunked = null
    }
    this.aborted.clear()
    this.removeFinished()
  }

  /** Frees the rows of finished sequences. Descending order keeps the row moves consistent. */
  private removeFinished(): void {
    for (let r = this.running.length - 1; r >= 0; r--) {
      if (!this.running[r].finish) continue
      this.running[r].constraint?.dispose()
      const movedFrom = this.runner.cache.removeRow(r)
      const last = this.running.pop()!
      if (movedFrom !== -1) this.running[r] = last
    }
  }
}
