import type { GrammarSpec } from '../grammar/spec.ts'
import type { ModelFolder } from '../model/folder.ts'
import { IncrementalDecoder, type TextTokenizer } from '../model/tokenizer.ts'
import { randomSeed } from '../sampling/prng.ts'
import type { SamplingParams } from '../sampling/sampler.ts'
import { StopMatcher } from '../sampling/stop-matcher.ts'
import type { PromptLogprob, TokenEvent } from '../scheduler/types.ts'
import type { Engine } from './engine.ts'
import type { ResumedChoice } from './resume.ts'

/** A loaded model as the API layer sees it. */
export interface ServedModel {
  id: string
  folder: ModelFolder
  tokenizer: TextTokenizer
  engine: Engine
  created: number
}

export interface TextRequest {
  /** One or more prompts (OpenAI batch prompts); choice index = prompt index × n + i. */
  prompts: number[][]
  /** Independent choices generated for each prompt. */
  n: number
  maxTokens: number
  stop: string[]
  /** Without a seed, each choice gets a random one. */
  sampling: Omit<SamplingParams, 'seed'> & { seed?: number }
  ignoreEos?: boolean
  /** Milliseconds from submission until the request is ended with a timeout. */
  timeoutMs?: number
  /** Continue an interrupted choice (one prompt, n = 1) from its replayed state; see resume.ts. */
  resume?: ResumedChoice
  /** Output format every choice must match (already compiled: see Engine.compileGrammar). */
  grammar?: GrammarSpec
  /** Report each prompt's token logprobs (echo + logprobs); not with resume. */
  promptLogprobs?: boolean
}

export interface TokenLogprob {
  token: number
  logprob: number
  top?: { token: number; logprob: number }[]
}

/** New output of one choice. `finishReason` is set on its last chunk. */
export interface TextChunk {
  index: number
  text: string
  /** Tokens this chunk accounts for (they may carry no text yet). */
  tokens: number
  /** Their ids: every sampled id arrives with the chunk whose text it released or holds back. */
  tokenIds: number[]
  logprobs?: TokenLogprob[]
  /** The prompt's logprobs, on the choice's first chunk when the request asked for them. */
  promptLogprobs?: PromptLogprob[]
  finishReason?: 'stop' | 'length'
}

/** The engine could not take or finish the request; the API maps `kind` to a status. */
export class GenerationError extends Error {
  readonly kind: 'queue_full' | 'too_many_sequences' | 'timeout' | 'error' | 'aborted'
  constructor(kind: GenerationError['kind'], message: string) {
    super(message)
    this.kind = kind
  }
}

/**
 * Generates text for every choice: submits token sequences to the engine, decodes tokens into
 * text incrementally, and applies stop sequences (never emitted; the sequence is stopped).
 * Admission is checked here, synchronously, so a full queue is refused before any response
 * starts. Aborting `signal` stops every choice at the engine's next step.
 */
export function generateText(
  model: ServedModel,
  request: TextRequest,
  maxQueued: number,
  signal?: AbortSignal,
): AsyncGenerator<TextChunk> {
  const sequences = request.prompts.length * request.n
  if (request.resume && sequences !== 1) throw new Error('a resumed request has exactly one choice')
  if (sequences > maxQueued)
    throw new GenerationError(
      'too_many_sequences',
      `this request needs ${sequences} sequences; at most ${maxQueued} can wait at once`,
    )
  if (model.engine.queuedCount + sequences > maxQueued)
    throw new GenerationError('queue_full', 'the server is at capacity; retry shortly')
  return streamChoices(model, request, signal)
}

async function* streamChoices(
  model: ServedModel,
  request: TextRequest,
  signal?: AbortSignal,
): AsyncGenerator<TextChunk> {
  const { engine, tokenizer } = model
  if (signal?.aborted) throw new GenerationError('aborted', 'request aborted')
  const prompts = request.prompts.flatMap((prompt) => Array.from({ length: request.n }, () => prompt))
  const resume = request.resume
  if (resume?.finished) {
    yield { index: 0, text: resume.pending, tokens: 0, tokenIds: [], finishReason: resume.finished }
    return
  }

  const inbox: { index: number; event: TokenEvent }[] = []
  let notify: (() => void) | null = null
  const deadline = request.timeoutMs ? Date.now() + request.timeoutMs : undefined
  const baseSeed = request.sampling.seed ?? randomSeed()
  const ids = prompts.map((promptIds, index) =>
    engine.submit(
      {
        promptIds,
        generatedIds: resume?.generatedIds,
        maxTokens: request.maxTokens,
        // Choice i of a seeded prompt uses seed + i: reproducible, and different across choices.
        sampling: { ...request.sampling, seed: baseSeed + (index % request.n) },
        eosTokenIds: request.ignoreEos ? [] : model.folder.eosTokenIds,
        deadline,
        grammar: request.grammar,
        promptLogprobs: request.promptLogprobs && !resume,
      },
      (event) => {
        inbox.push({ index, event })
        notify?.()
      },
    ),
  )
  const onAbort = () =>
    ids.forEach((id) => {
      engine.abort(id)
    })
  signal?.addEventListener('abort', onAbort, { once: true })

  const decoders = resume ? [resume.decoder] : prompts.map((promptIds) => new IncrementalDecoder(tokenizer, promptIds))
  const stops = resume ? [resume.stops] : ids.map(() => new StopMatcher(request.stop))
  const done = ids.map(() => false)
  let remaining = ids.length
  try {
    // Text the interrupted run had released but the client never received goes out first.
    if (resume?.pending) yield { index: 0, text: resume.pending, tokens: 0, tokenIds: [] }
    while (remaining > 0) {
      if (inbox.length === 0) await new Promise<void>((resolve) => (notify = resolve))
      notify = null
      for (const { index, event } of inbox.splice(0)) {
        if (done[index]) continue
        const chunk: TextChunk = { index, text: '', tokens: 0, tokenIds: [] }
        if (event.prompt) chunk.promptLogprobs = event.prompt
        if (event.token !== undefined) {
          chunk.tokens = 1
          chunk.tokenIds.push(event.token)
          const piece = stops[index].push(decoders[index].push(event.token))
          chunk.text = piece.text
          if (event.logprob !== undefined)
            chunk.logprobs = [{ token: event.token, logprob: event.logprob, top: event.top }]
          if (piece.stopped) {
            chunk.finishReason = 'stop'
            engine.abort(ids[index])
          }
        }
        if (event.finish && !chunk.finishReason) {
          if (event.finish === 'abort') throw new GenerationError('aborted', 'request aborted')
          if (event.finish === 'timeout')
            throw new GenerationError('timeout', 'the request did not finish within its deadline')
          if (event.finish === 'error')
            throw new GenerationError('error', `generation failed: ${event.message ?? 'unknown error'}`)
          const tail = stops[index].push(decoders[index].flush())
          chunk.text += tail.text + (tail.stopped ? '' : stops[index].flush())
          chunk.finishReason = tail.stopped ? 'stop' : event.finish
        }
        if (chunk.finishReason) {
          done[index] = true
          remaining--
        }
        if (chunk.text || chunk.tokens || chunk.finishReason || chunk.promptLogprobs) yield chunk
      }
    }
  } finally {
    signal?.removeEventListener('abort', onAbort)
    // A consumer that stops early (client gone, error) must not leave sequences running.
    ids.forEach((id, index) => {
      if (!done[index]) engine.abort(id)
    })
  }
}
