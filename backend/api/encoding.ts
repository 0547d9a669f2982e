import { ApiError } from '../../openai/errors.ts'
import { EncoderError } from '../encoder/encoder-engine.ts'
import { InputTooLongError, type ServedEncoder } from '../encoder/served.ts'
import type { ApiContext } from './generation.ts'

/** What the encoder routes need from the node around them. */
export interface EncoderApiContext extends ApiContext {
  encoders: Map<string, ServedEncoder>
  /** Most inputs waiting for the encoder at once, over all requests; beyond it 503. */
  maxEncoderQueue: number
}

/** Token ids of each input (texts tokenized with special tokens; id lists checked against the vocabulary). */
export function tokenizeInputs(
  encoder: ServedEncoder,
  inputs: (string | number[])[],
  truncateTo: number | null | undefined,
  param: string,
): number[][] {
  const { maxLength, vocabSize } = encoder.folder
  if (truncateTo != null && truncateTo > maxLength)
    throw new ApiError(
      400,
      `truncate_prompt_tokens (${truncateTo}) is larger than this model's maximum input length ${maxLength}`,
      { param: 'truncate_prompt_tokens', code: 'invalid_value' },
    )
  try {
    return inputs.map((input) => {
      if (typeof input === 'string') return encoder.tokenizer.encode(input, maxLength, truncateTo)
      if (input.some((id) => id >= vocabSize))
        throw new ApiError(400, `Token ids must be below the vocabulary size ${vocabSize}`, {
          param,
          code: 'invalid_value',
        })
      if (truncateTo != null) return input.slice(0, truncateTo === -1 ? maxLength : truncateTo)
      if (input.length > maxLength) throw new InputTooLongError(input.length, maxLength)
      return input
    })
  } catch (error) {
    if (error instanceof InputTooLongError)
      throw new ApiError(400, error.message, { param, code: 'context_length_exceeded' })
    throw error
  }
}

/** Runs every row through the encoder's dynamic batcher; 503 when its queue is full or the node drains. */
export async function encodeRows(
  api: EncoderApiContext,
  encoder: ServedEncoder,
  rows: number[][],
): Promise<Float32Array[]> {
  const retry = { 'Retry-After': String(api.retryAfterSeconds) }
  if (api.isDraining()) {
    api.metrics.rejections.inc({ model: encoder.id, reason: 'draining' })
    throw new ApiError(503, 'The server is shutting down; retry on another node', {
      type: 'server_error',
      code: 'draining',
      headers: retry,
    })
  }
  if (rows.length > api.maxEncoderQueue)
    throw new ApiError(
      400,
      `This request has ${rows.length} inputs; the server queues at most ${api.maxEncoderQueue} at once`,
      { param: 'input', code: 'too_many_inputs' },
    )
  if (encoder.engine.activeCount + rows.length > api.maxEncoderQueue) {
    api.metrics.rejections.inc({ model: encoder.id, reason: 'queue_full' })
    throw new ApiError(503, 'the server is at capacity; retry shortly', {
      type: 'server_error',
      code: 'queue_full',
      headers: retry,
    })
  }
  for (const row of rows) api.metrics.promptTokens.inc({ model: encoder.id }, row.length)
  try {
    return await Promise.all(rows.map((row) => encoder.engine.encode(row)))
  } catch (error) {
    if (error instanceof EncoderError)
      throw new ApiError(500, error.message, { type: 'server_error', code: 'encoder_failed' })
    throw error
  }
}

/** Every served model's name with the tasks it serves (GET /models, /predict's errors). */
export function servedTasks(api: EncoderApiContext): { name: string; tasks: string[] }[] {
  const decoders = [...api.models.keys()].map((name) => ({ name, tasks: ['text-generation'] }))
  const encoders = [...api.encoders.values()].map((e) => ({
    name: e.id,
    tasks:
      e.folder.task === 'text-classification' ? ['text-classification', 'sentiment-analysis'] : ['feature-extraction'],
  }))
  return [...encoders, ...decoders]
}
