import type { Context } from 'hono'
import { streamSSE } from 'hono/streaming'
import { errorMessage } from '../../lib/error-message.ts'
import { ApiError, errorEvent } from '../../openai/errors.ts'
import { DONE_EVENT } from '../../openai/responses.ts'
import {
  GenerationError,
  generateText,
  type ServedModel,
  type TextChunk,
  type TextRequest,
} from '../engine/text-generation.ts'
import type { BackendMetrics } from '../metrics.ts'

/** What the API handlers need from the node around them. */
export interface ApiContext {
  models: Map<string, ServedModel>
  metrics: BackendMetrics
  maxQueue: number
  /** Characters of grammar text (JSON schema, regex, EBNF, tools) a request may send. */
  maxGrammarChars: number
  requestTimeoutMs: number
  retryAfterSeconds: number
  /** True once the node is shutting down: no new generations. */
  isDraining: () => boolean
}

export function resolveModel(api: ApiContext, name: string | undefined): ServedModel {
  if (name === undefined) {
    const first = api.models.values().next().value
    if (!first)
      throw new ApiError(404, 'This server serves no text-generation model', {
        param: 'model',
        code: 'model_not_found',
      })
    return first
  }
  const model = api.models.get(name)
  if (!model)
    throw new ApiError(404, `The model '${name}' does not exist on this server`, {
      type: 'invalid_request_error',
      param: 'model',
      code: 'model_not_found',
    })
  return model
}

/**
 * Checks every prompt against the context window and settles max_tokens: an explicit value
 * must fit beside the prompt; without one, `fallback` is clamped to what is left.
 */
export function fitMaxTokens(
  model: ServedModel,
  prompts: number[][],
  requested: number | null | undefined,
  fallback: number,
  promptParam = 'prompt',
): number {
  const context = model.folder.contextLength
  const longest = Math.max(...prompts.map((p) => p.length))
  if (longest >= context) {
    throw new ApiError(
      400,
      `This model's maximum context length is ${context} tokens; the prompt has ${longest} tokens, which leaves no room for a completion.`,
      { param: promptParam, code: 'context_length_exceeded' },
    )
  }
  if (requested != null && longest + requested > context) {
    throw new ApiError(
      400,
      `This model's maximum context length is ${context} tokens. You requested ${longest + requested} tokens (${longest} in the prompt, ${requested} for the completion). Reduce the prompt or max_tokens.`,
      { param: 'max_tokens', code: 'context_length_exceeded' },
    )
  }
  return requested ?? Math.min(fallback, context - longest)
}

/** Starts generation, mapping refusals to HTTP errors (503 + Retry-After when saturated). */
export function startGeneration(
  api: ApiContext,
  model: ServedModel,
  request: TextRequest,
  signal: AbortSignal,
): AsyncGenerator<TextChunk> {
  if (api.isDraining()) {
    api.metrics.rejections.inc({ model: model.id, reason: 'draining' })
    throw new ApiError(503, 'The server is shutting down; retry on another node', {
      type: 'server_error',
      code: 'draining',
      headers: { 'Retry-After': String(api.retryAfterSeconds) },
    })
  }
  try {
    for (const prompt of request.prompts) api.metrics.promptTokens.inc({ model: model.id }, prompt.length)
    return observe(
      api,
      model,
      generateText(model, { ...request, timeoutMs: api.requestTimeoutMs }, api.maxQueue, signal),
    )
  } catch (error) {
    if (error instanceof GenerationError && error.kind === 'too_many_sequences') {
      throw new ApiError(
        400,
        `This request asks for more sequences (prompts × n) than the server queues at once: ${error.message}`,
        { param: 'n', code: 'too_many_sequences' },
      )
    }
    if (error instanceof GenerationError && error.kind === 'queue_full') {
      api.metrics.rejections.inc({ model: model.id, reason: 'queue_full' })
      throw new ApiError(503, error.message, {
        type: 'server_error',
        code: 'queue_full',
        headers: { 'Retry-After': String(api.retryAfterSeconds) },
      })
    }
    throw error
  }
}

/** Time to first token, inter-token latency, token and finish counts, as the chunks pass. */
async function* observe(
  api: ApiContext,
  model: ServedModel,
  chunks: AsyncGenerator<TextChunk>,
): AsyncGenerator<TextChunk> {
  try {
    yield* observeChunks(api, model, chunks, performance.now(), new Map())
  } catch (error) {
    if (error instanceof GenerationError) api.metrics.finished.inc({ model: model.id, reason: error.kind }, 1)
    throw error
  }
}

/** `last` holds each choice's previous token time. */
async function* observeChunks(
  api: ApiContext,
  model: ServedModel,
  chunks: AsyncGenerator<TextChunk>,
  started: number,
  last: Map<number, number>,
): AsyncGenerator<TextChunk> {
  const labels = { model: model.id }
  for await (const chunk of chunks) {
    if (chunk.tokens > 0) {
      const now = performance.now()
      const previous = last.get(chunk.index)
      if (last.size === 0) api.metrics.timeToFirstToken.observe(labels, (now - started) / 1000)
      if (previous !== undefined) api.metrics.interTokenLatency.observe(labels, (now - previous) / 1000)
      last.set(chunk.index, now)
      api.metrics.generatedTokens.inc(labels, chunk.tokens)
    }
    if (chunk.finishReason) api.metrics.finished.inc({ model: model.id, reason: chunk.finishReason })
    yield chunk
  }
}

/** A generation error after admission, as an API error. */
export function generationFailure(error: unknown): ApiError {
  if (error instanceof ApiError) return error
  if (error instanceof GenerationError) {
    if (error.kind === 'timeout') return new ApiError(504, error.message, { type: 'server_error', code: 'timeout' })
    if (error.kind === 'aborted')
      return new ApiError(499 as never, error.message, { type: 'server_error', code: 'aborted' })
  }
  return new ApiError(500, errorMessage(error), { type: 'server_error', code: 'generation_failed' })
}

export interface CollectedChoice {
  text: string
  tokens: number
  tokenIds: number[]
  finishReason: 'stop' | 'length'
  logprobs: NonNullable<TextChunk['logprobs']>
  promptLogprobs: NonNullable<TextChunk['promptLogprobs']>
}

/** Runs a generation to the end (non-streaming responses). */
export async function collectChoices(chunks: AsyncGenerator<TextChunk>, count: number): Promise<CollectedChoice[]> {
  const choices: CollectedChoice[] = Array.from({ length: count }, () => ({
    text: '',
    tokens: 0,
    tokenIds: [],
    finishReason: 'length',
    logprobs: [],
    promptLogprobs: [],
  }))
  try {
    for await (const chunk of chunks) {
      const choice = choices[chunk.index]
      choice.text += chunk.text
      choice.tokens += chunk.tokens
      choice.tokenIds.push(...chunk.tokenIds)
      if (chunk.logprobs) choice.logprobs.push(...chunk.logprobs)
      if (chunk.promptLogprobs) choice.promptLogprobs.push(...chunk.promptLogprobs)
      if (chunk.finishReason) choice.finishReason = chunk.finishReason
    }
  } catch (error) {
    throw generationFailure(error)
  }
  return choices
}

/**
 * Streams a generation as server-sent events: `data: {chunk}` per event, an error event in
 * OpenAI's shape if generation fails, else `data: [DONE]`. The client going away aborts the
 * generation, which frees its batch slot at the next step.
 */
export function streamEvents(
  c: Context,
  abort: AbortController,
  chunks: AsyncGenerator<TextChunk>,
  render: { chunk: (chunk: TextChunk) => unknown[]; end: () => unknown[] },
): Response {
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => abort.abort())
    try {
      for await (const chunk of chunks) {
        for (const event of render.chunk(chunk)) await stream.writeSSE({ data: JSON.stringify(event) })
        if (stream.aborted) return
      }
      for (const event of render.end()) await stream.writeSSE({ data: JSON.stringify(event) })
      await stream.write(DONE_EVENT)
    } catch (error) {
      if (!stream.aborted) await stream.write(errorEvent(generationFailure(error).body))
    } finally {
      await chunks.return(undefined)
    }
  })
}

/** Aborts generation when the handler gives up or the client's connection closes. */
export function mergeSignals(c: Context, abort: AbortController): AbortSignal {
  const clientSignal = c.req.raw.signal
  if (clientSignal) clientSignal.addEventListener('abort', () => abort.abort(), { once: true })
  return abort.signal
}
