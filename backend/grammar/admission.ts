import { errorMessage } from '../../lib/error-message.ts'
import type { CompileResult, FromWorker } from '../engine/protocol.ts'
import type { SequenceRequest, TokenConstraint } from '../scheduler/types.ts'
import { GrammarCache } from './compiler.ts'
import { GrammarError, type GrammarSpec, ResumeMismatch } from './spec.ts'
import { type GrammarVocabulary, padVocabulary } from './vocabulary.ts'

interface Admits {
  add(request: SequenceRequest, constraint?: TokenConstraint): void
  abort(id: number): void
}

/**
 * The engine worker's side of constrained decoding: compiles grammars (cached) and gives each
 * constrained sequence its matcher before it reaches the scheduler, so the step loop never
 * compiles. Compilation runs between steps, when the worker reads its messages.
 */
export class GrammarAdmission {
  private readonly cache: GrammarCache | undefined
  /** Why grammars cannot be compiled on this engine (xgrammar failed to load), if so. */
  private unavailable: string | undefined
  private readonly scheduler: Admits
  private readonly post: (message: FromWorker) => void
  /** Constrained sequences whose matcher is being made; true once aborted meanwhile. */
  private readonly pending = new Map<number, boolean>()

  /** `modelVocabSize`: the logit row length, which may exceed the tokenizer's vocabulary. */
  constructor(
    options: { vocabulary: GrammarVocabulary; cacheSize: number } | undefined,
    modelVocabSize: number,
    scheduler: Admits,
    post: (message: FromWorker) => void,
  ) {
    this.cache = options && new GrammarCache(padVocabulary(options.vocabulary, modelVocabSize), options.cacheSize)
    if (!options) this.unavailable = 'this engine was started without a vocabulary for grammars'
    this.scheduler = scheduler
    this.post = post
  }

  /** Loads xgrammar and the model's TokenizerInfo up front; a failure leaves plain decoding working. */
  async warm(): Promise<void> {
    try {
      await this.cache?.warm()
    } catch (error) {
      this.unavailable = `the grammar engine (xgrammar) failed to load: ${errorMessage(error)}`
      this.post({ type: 'log', message: this.unavailable })
    }
  }

  async compile(ticket: number, spec: GrammarSpec, replayIds?: number[]): Promise<void> {
    const started = performance.now()
    let result: CompileResult
    if (this.unavailable || !this.cache)
      result = { ok: false, invalid: false, message: this.unavailable ?? 'no grammar engine' }
    else {
      const before = this.cache.size
      try {
        await this.cache.compile(spec)
        result = { ok: true, ms: performance.now() - started, cached: this.cache.size === before }
        if (replayIds?.length) (await this.cache.constraint(spec, replayIds)).dispose()
      } catch (error) {
        result = {
          ok: false,
          invalid: error instanceof GrammarError,
          message: errorMessage(error),
          param: error instanceof ResumeMismatch ? 'resume.token_ids' : undefined,
        }
      }
    }
    this.post({ type: 'compiled', ticket, result })
  }

  add(request: SequenceRequest): void {
    if (!request.grammar) {
      this.scheduler.add(request)
      return
    }
    this.pending.set(request.id, false)
    void this.matcherFor(request).then(
      (constraint) => {
        const aborted = this.pending.get(request.id)
        this.pending.delete(request.id)
        if (aborted) {
          constraint.dispose()
          this.post({ type: 'ended', events: [{ id: request.id, finish: 'abort' }] })
        } else this.scheduler.add(request, constraint)
      },
      (error: Error) => {
        this.pending.delete(request.id)
        this.post({
          type: 'ended',
          events: [
            { id: request.id, finish: 'error', message: `the output format could not be prepared: ${error.message}` },
          ],
        })
      },
    )
  }

  abort(id: number): void {
    if (this.pending.has(id)) this.pending.set(id, true)
    else this.scheduler.abort(id)
  }

  private async matcherFor(request: SequenceRequest): Promise<TokenConstraint> {
    if (this.unavailable || !this.cache) throw new Error(this.unavailable ?? 'no grammar engine')
    return this.cache.constraint(request.grammar!, request.generatedIds)
  }
}
