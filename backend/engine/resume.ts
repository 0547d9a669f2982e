import { IncrementalDecoder } from '../model/tokenizer.ts'
import { StopMatcher } from '../sampling/stop-matcher.ts'
import type { ServedModel } from './text-generation.ts'

/** Where an interrupted choice stopped: the ids it had sampled and how much text was delivered. */
export interface ResumePoint {
  tokenIds: number[]
  /** UTF-16 code units of the completion text the client already has. */
  textOffset: number
}

/** A resume point that cannot belong to this request; `param` names the offending field. */
export class ResumeError extends Error {
  readonly param: string
  readonly code: string
  constructor(message: string, param: string, code = 'invalid_value') {
    super(message)
    this.param = param
    this.code = code
  }
}

/**
 * A choice's text state after replaying the tokens it had already generated, exactly as the
 * original run left it. Handed to generateText once (the decoder and matcher are live state).
 */
export interface ResumedChoice {
  decoder: IncrementalDecoder
  stops: StopMatcher
  /** Ids to give the scheduler as already generated. */
  generatedIds: number[]
  /** Completion tokens the original run had counted (its usage up to the cut). */
  tokens: number
  /** Text those tokens released that the client has not received yet. */
  pending: string
  /** Set when the tokens already ended the choice (EOS, a stop sequence, max_tokens, context). */
  finished?: 'stop' | 'length'
}

export interface ResumeRequest {
  prompt: number[]
  maxTokens: number
  stop: string[]
  ignoreEos?: boolean
}

/**
 * Checks a resume point against the request and replays its tokens through the incremental
 * decoder and stop matcher, so the text that follows is what the uninterrupted run emitted.
 */
export function replayResume(model: ServedModel, request: ResumeRequest, point: ResumePoint): ResumedChoice {
  const { tokenIds, textOffset } = point
  const vocab = model.engine.info.shape.vocabSize
  const context = model.folder.contextLength
  if (tokenIds.some((id) => !Number.isInteger(id) || id < 0 || id >= vocab)) {
    throw new ResumeError(
      `resume.token_ids must be integers from 0 to ${vocab - 1} (the vocabulary)`,
      'resume.token_ids',
    )
  }
  // Exactly at a limit is a run cut between its last token and its finish (chat sends those
  // in two events): it gets the finished choice below. Past a limit, the ids are not this run's.
  if (request.prompt.length + tokenIds.length > context) {
    throw new ResumeError(
      `This model's maximum context length is ${context} tokens; the prompt (${request.prompt.length} tokens) and resume.token_ids (${tokenIds.length}) exceed it.`,
      'resume.token_ids',
      'context_length_exceeded',
    )
  }
  if (tokenIds.length > request.maxTokens) {
    throw new ResumeError(
      `resume.token_ids has ${tokenIds.length} tokens, more than max_tokens (${request.maxTokens})`,
      'resume.token_ids',
    )
  }
  const eos = new Set(request.ignoreEos ? [] : model.folder.eosTokenIds)
  const decoder = new IncrementalDecoder(model.tokenizer, request.prompt)
  const stops = new StopMatcher(request.stop)
  let text = ''
  let finished: ResumedChoice['finished']
  let count = 0
  // Like the end of a choice in streamChoices: held text is released unless it completes a stop.
  const finish = (reason: 'stop' | 'length') => {
    const tail = stops.push(decoder.flush())
    text += tail.text + (tail.stopped ? '' : stops.flush())
    finished = tail.stopped ? 'stop' : reason
  }
  // Mirrors streamChoices and the scheduler: EOS is not a completion token; a stop sequence
  // ends the choice at the token that completed it; so do max_tokens and the context.
  for (const id of tokenIds) {
    if (eos.has(id)) {
      finish('stop')
      break
    }
    count++
    const piece = stops.push(decoder.push(id))
    text += piece.text
    if (piece.stopped) {
      finished = 'stop'
      break
    }
    if (count >= request.maxTokens || request.prompt.length + count >= context) {
      finish('length')
      break
    }
  }
  if (!Number.isInteger(textOffset) || textOffset < 0 || textOffset > text.length) {
    throw new ResumeError(
      `resume.text_offset must be an integer from 0 to ${text.length}, the length of the text resume.token_ids produced`,
      'resume.text_offset',
    )
  }
  return {
    decoder,
    stops,
    generatedIds: tokenIds.slice(0, count),
    tokens: count,
    pending: text.slice(textOffset),
    finished,
  }
}
