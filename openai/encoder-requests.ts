import { z } from 'zod'

/**
 * Request schemas of the encoder routes (/v1/embeddings and /predict), for the backend and the
 * gateway alike. Unknown fields are ignored, as OpenAI's SDKs may send newer ones.
 */

/** OpenAI's limit on inputs per embeddings request. */
export const MAX_EMBEDDING_INPUTS = 2048
const tokenIds = z
  .array(
    z
      .number()
      .int()
      .min(0)
      .max(2 ** 31 - 1),
  )
  .min(1, 'a list of token ids must not be empty')
const text = z.string().min(1, 'an input must not be an empty string')

export const embeddingRequestSchema = z.object({
  model: z.string().min(1).max(256),
  input: z.union([
    text,
    z.array(text).min(1).max(MAX_EMBEDDING_INPUTS),
    tokenIds,
    z.array(tokenIds).min(1).max(MAX_EMBEDDING_INPUTS),
  ]),
  encoding_format: z.enum(['float', 'base64']).nullish(),
  dimensions: z.number().int().min(1).max(1_000_000).nullish(),
  user: z.string().max(512).nullish(),
  /** vLLM's extension: truncate inputs longer than this many tokens (-1: the model's maximum) instead of refusing them. */
  truncate_prompt_tokens: z.union([z.literal(-1), z.number().int().min(1).max(1_000_000)]).nullish(),
})
export type EmbeddingRequest = z.infer<typeof embeddingRequestSchema>

/** /predict's text-generation length when max_new_tokens is not given. */
export const PREDICT_DEFAULT_NEW_TOKENS = 50

export const PREDICT_TASKS = [
  'text-classification',
  'sentiment-analysis',
  'feature-extraction',
  'text-generation',
] as const
export type PredictTask = (typeof PREDICT_TASKS)[number]

/** The seed's task API: {text, model_name, task} (plus top_k, and max_new_tokens for generation). */
export const predictRequestSchema = z.object({
  text: z.string().min(1, 'text must not be empty'),
  task: z.string().min(1).max(64),
  model_name: z.string().min(1).max(256).nullish(),
  top_k: z.number().int().min(1).max(1_000_000).nullish(),
  max_new_tokens: z.number().int().min(1).max(1_000_000).nullish(),
  truncate_prompt_tokens: z.union([z.literal(-1), z.number().int().min(1).max(1_000_000)]).nullish(),
})
export type PredictRequest = z.infer<typeof predictRequestSchema>
