import { SequenceSampler } from '../sampling/sampler.ts'
import type { FinishReason, SequenceRequest, StepRunner, StepStats, TokenConstraint, TokenEvent } from './types.ts'

export interface SchedulerOptions {
  /** Most sequences decoded together in one forward pass. */
  maxBatchSize: number
  /** Admission stops while running prompts + their max_tokens would pass this (bounds KV memory). */
  maxTokensInFlight: number
  /** Padded prompt tokens prefilled in one pass at a step boundary, before the decode pass. */
  maxPrefillTokens: number
  /** The model's context window; a sequence that reaches it ends with `length`. */
  contextLength: number
}

interface Sequence {
  request: SequenceRequest
  /** Prompt, then any tokens generated before a resume: what prefill runs over. */
  prefillIds: number[]
  sampler: SequenceSampler
  /** Grammar-constrained decoding: the tokens this sequence may sample. */
  constraint?: TokenConstraint
  eos: Set<number>
  generated: number
  /** Next input token (the last sampled one). */
  next: number
  finish?: FinishReason
}

/**
 * Iteration-level (continuous) batching: one decode pass per step over every running
 * sequence. Waiting requests are prefilled at step boundaries and decode with the rest from
 * the next step; finished or aborted sequences leave at the boundary, freeing their row.
 */
export class Scheduler {
  private readonly runner: StepRunner
  private readonly options: SchedulerOptions
  private readonly emit: (events: TokenEvent[], stats: StepStats) => void
  private readonly waiting: Sequence[] = []
  /** running[r] owns KV cache row r. */
  private readonly running: Sequence[] = []
  private readonly aborted = new Set<number>()
  private wake: (() => void) | null = null
  private stopped = false
  private loopDone: Promise<void> | null = null

  constructor(runner: StepRunner, options: SchedulerOptions, emit: (events: TokenEvent[], stats: StepStats) => void) {
    this.runner = runner
    this.options = options
    this.emit = emit
  }

  get waitingCount(): number {
    return this.waiting.length
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
      constraint,
      eos: new Set(request.eosTokenIds),
      generated: generatedIds.length,
      next: 0,
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
      if (this.waiting.length === 0 && this.running.length === 0) {
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
    const events: TokenEvent[] = this.running.map((seq) => ({ id: seq.request.id, finish: 'error' as const, message: String((error as Error)?.message ?? error).split('\n')[0] }))
    for (const seq of this.running) seq.finish = 'error'
    this.removeFinished()
    this.emit(events, { waiting: this.waiting.length, running: 0, batchSize: 0, decodeMs: 0, prefillMs: 0, prefillTokens: 0 })
  }

  /** One scheduler iteration: retire, admit and prefill, then one decode pass. */
  async step(): Promise<void> {
    const events: TokenEvent[] = []
    this.retireAbortedAndExpired(events)
    const stats: StepStats = { waiting: 0, running: 0, batchSize: 0, decodeMs: 0, prefillMs: 0, prefillTokens: 0 }

    const admitted = this.admit()
    if (admitted.length > 0) {
      const started = performance.now()
      const rows = admitted.map((seq) => ({ row: this.runner.cache.addRow(), tokens: seq.prefillIds }))
      this.running.push(...admitted)
      const logits = await this.runner.prefill(rows)
      stats.prefillMs = performance.now() - started
      stats.prefillTokens = rows.length * Math.max(...rows.map((r) => r.tokens.length))
      const masks = await this.masksOf(admitted)
      admitted.forEach((seq, i) => this.sampleInto(seq, logits[i], events, masks[i]))
      // First tokens go out now, not after this step's decode pass: that is the TTFT.
      this.emit(events.splice(0), { ...stats, waiting: this.waiting.length, running: this.running.length })
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
      this.running.forEach((seq, r) => this.sampleInto(seq, logits.subarray(r * V, (r + 1) * V), events, masks[r]))
      this.removeFinished()
    }
    stats.waiting = this.waiting.length
    stats.running = this.running.length
    if (events.length > 0) this.emit(events, stats)
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
      if (seq.constraint && !seq.constraint.accept(sampled.token)) throw new Error(`the grammar refused token ${sampled.token} it had allowed`)
    } catch (error) {
      // A constraint failing ends its own sequence, not the batch.
      seq.finish = 'error'
      events.push({ id, finish: 'error', message: `constrained decoding failed: ${(error as Error).message}` })
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
    if (seq.generated >= seq.request.maxTokens || length >= this.options.contextLength) seq.finish = event.finish = 'length'
    events.push(event)
  }

  /** Takes waiting sequences that fit the batch, the in-flight budget and the prefill budget. */
  private admit(): Sequence[] {
    const { maxBatchSize, maxTokensInFlight, maxPrefillTokens } = this.options
    let inFlight = 0
    for (const seq of this.running) inFlight += seq.request.promptIds.length + seq.request.maxTokens
    const admitted: Sequence[] = []
    let widest = 0
    while (this.waiting.length > 0 && this.running.length + admitted.length < maxBatchSize) {
      const seq = this.waiting[0]
      const cost = seq.request.promptIds.length + seq.request.maxTokens
      const width = Math.max(widest, seq.prefillIds.length)
      const alone = this.running.length === 0 && admitted.length === 0
      // An idle engine always takes the head of the queue, whatever its size.
      if (!alone && (inFlight + cost > maxTokensInFlight || (admitted.length + 1) * width > maxPrefillTokens)) break
      this.waiting.shift()
      admitted.push(seq)
      inFlight += cost
      widest = width
    }
    return admitted
  }

  private retireAbortedAndExpired(events: TokenEvent[]): void {
    const now = Date.now()
    const reason = (seq: Sequence): FinishReason | undefined =>
      this.aborted.has(seq.request.id) ? 'abort' : seq.request.deadline !== undefined && now > seq.request.deadline ? 'timeout' : undefined
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
