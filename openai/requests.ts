import { z } from 'zod'

/**
 * Request schemas of the public API (OpenAI completions and chat, and /generate). The backend
 * and the gateway both validate with these, so both sides agree on `model`, `max_tokens`,
 * `stream`, `temperature` and `seed`. Unknown fields are ignored, as OpenAI's SDKs may send newer ones.
 */

const int = (min: number, max: number) => z.number().int().min(min).max(max)
const stop = z.union([z.string(), z.array(z.string()).max(4)]).nullish()
const seed = z
  .number()
  .int()
  .min(-(2 ** 53) + 1)
  .max(2 ** 53 - 1)
  .nullish()

/**
 * Switchyard's extensions for mid-stream failover (see docs/api.md): `return_token_ids` adds the
 * sampled ids to every choice; `resume` continues an interrupted choice on another node.
 */
const resume = z.object({
  token_ids: z.array(int(0, 2 ** 31 - 1)).max(1_000_000),
  text_offset: int(0, 2 ** 31 - 1),
})
const resumeMessage = 'resume continues a single choice: it needs n = 1 and one prompt'

/** Sampling fields shared by completions and chat, with vLLM's extensions (top_k, min_p, ...). */
const sampling = {
  model: z.string().min(1).max(256),
  max_tokens: int(1, 1_000_000).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().gt(0).max(1).nullish(),
  top_k: z.number().int().min(-1).max(1_000_000).nullish(),
  min_p: z.number().min(0).max(1).nullish(),
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  repetition_penalty: z.number().gt(0).max(10).nullish(),
  n: int(1, 16).nullish(),
  seed,
  stop,
  stream: z.boolean().nullish(),
  stream_options: z.object({ include_usage: z.boolean().nullish() }).nullish(),
  ignore_eos: z.boolean().nullish(),
  user: z.string().max(512).nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish(),
  return_token_ids: z.boolean().nullish(),
  resume: resume.nullish(),
}

/**
 * Structured outputs: vLLM's `guided_*` extensions (completions and chat). Which combinations
 * make sense, and the grammar size bound, are checked in backend/api/structured/output-format.ts.
 */
const jsonSchema = z.union([z.record(z.string(), z.unknown()), z.boolean()])
const guided = {
  guided_json: z.union([z.string(), jsonSchema]).nullish(),
  guided_regex: z.string().min(1).nullish(),
  guided_choice: z.array(z.string().min(1)).min(1).max(4096).nullish(),
  guided_grammar: z.string().min(1).nullish(),
}
const functionName = z.string().regex(/^[a-zA-Z0-9_.-]{1,64}$/, 'function names are 1 to 64 letters, digits, _ . or -')
const responseFormat = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text') }),
  z.object({ type: z.literal('json_object') }),
  z.object({
    type: z.literal('json_schema'),
    json_schema: z.object({
      name: functionName,
      description: z.string().nullish(),
      schema: jsonSchema.nullish(),
      strict: z.boolean().nullish(),
    }),
  }),
])
const tool = z.object({
  type: z.literal('function'),
  function: z.object({
    name: functionName,
    description: z.string().nullish(),
    parameters: z.record(z.string(), z.unknown()).nullish(),
    strict: z.boolean().nullish(),
  }),
})
const toolChoice = z.union([
  z.enum(['none', 'auto', 'required']),
  z.object({ type: z.literal('function'), function: z.object({ name: functionName }) }),
])
const toolCall = z.object({
  id: z.string().max(256),
  type: z.literal('function'),
  function: z.object({ name: functionName, arguments: z.string() }),
})

/** OpenAI's max_tokens for completions that set none (chat's default is the rest of the context window). */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16

const tokenIds = z.array(int(0, 2 ** 31 - 1)).min(1)
/** A string, one list of ids, or a list holding exactly one of either. */
const onePrompt = (prompt: string | string[] | number[] | number[][]) =>
  typeof prompt === 'string' || prompt.length === 1 || typeof prompt[0] === 'number'

export const completionRequestSchema = z
  .object({
    ...sampling,
    ...guided,
    // 0 with echo is the scoring idiom: the prompt back with its logprobs, nothing generated.
    max_tokens: int(0, 1_000_000).nullish(),
    prompt: z.union([z.string(), z.array(z.string()).min(1).max(64), tokenIds, z.array(tokenIds).min(1).max(64)]),
    logprobs: int(0, 5).nullish(),
    echo: z.boolean().nullish(),
    best_of: int(1, 16).nullish(),
    suffix: z.string().nullish(),
  })
  .refine((b) => b.resume == null || ((b.n ?? 1) === 1 && onePrompt(b.prompt)), {
    message: resumeMessage,
    path: ['resume'],
  })
  .refine((b) => b.max_tokens !== 0 || b.echo === true, {
    message: 'max_tokens 0 needs echo: true (it returns the prompt and, with logprobs, its scores)',
    path: ['max_tokens'],
  })
export type CompletionRequest = z.infer<typeof completionRequestSchema>

const textPart = z.object({ type: z.literal('text'), text: z.string() })
const message = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string(), z.array(textPart)]).nullish(),
  name: z.string().max(256).nullish(),
  tool_calls: z.array(toolCall).max(128).nullish(),
  tool_call_id: z.string().max(256).nullish(),
})

export const chatRequestSchema = z
  .object({
    ...sampling,
    ...guided,
    messages: z.array(message).min(1).max(1024),
    max_completion_tokens: int(1, 1_000_000).nullish(),
    logprobs: z.boolean().nullish(),
    top_logprobs: int(0, 20).nullish(),
    tools: z.array(tool).max(128).nullish(),
    tool_choice: toolChoice.nullish(),
    parallel_tool_calls: z.boolean().nullish(),
    response_format: responseFormat.nullish(),
  })
  .refine((b) => b.resume == null || (b.n ?? 1) === 1, { message: resumeMessage, path: ['resume'] })
export type ChatRequest = z.infer<typeof chatRequestSchema>
export type GuidedFields = { [K in keyof typeof guided]?: z.infer<(typeof guided)[K]> }
export type ToolDefinition = z.infer<typeof tool>

/** The simple generation API (see docs/api.md for semantics and ranges). */
export const generateRequestSchema = z.object({
  prompt: z.string(),
  model: z.string().min(1).max(256).optional(),
  max_length: int(1, 1_000_000).default(50),
  temperature: z.number().min(0).max(2).default(1),
  top_k: int(0, 1_000_000).default(50),
  top_p: z.number().gt(0).max(1).default(1),
  num_return_sequences: int(1, 16).default(1),
  seed,
  stop,
  return_full_text: z.boolean().default(false),
})
export type GenerateRequest = z.infer<typeof generateRequestSchema>
