import type { MiddlewareHandler } from 'hono'
import type { z } from 'zod'
import { readJsonBody } from '../../openai/body.ts'
import {
  embeddingRequestSchema,
  PREDICT_DEFAULT_NEW_TOKENS,
  predictRequestSchema,
} from '../../openai/encoder-requests.ts'
import { ApiError } from '../../openai/errors.ts'
import {
  COMPLETIONS_DEFAULT_MAX_TOKENS,
  chatRequestSchema,
  completionRequestSchema,
  generateRequestSchema,
} from '../../openai/requests.ts'
import { gatewayError } from './errors.ts'

export type ApiRoute = 'completions' | 'chat' | 'generate' | 'embeddings' | 'predict'

/** A validated API request, as the later stages need it. */
export interface ApiRequest {
  route: ApiRoute
  /** The client's JSON object (unknown fields kept), to forward after small edits. */
  json: Record<string, unknown>
  model: string | undefined
  /** The body field naming the model (/predict calls it model_name). */
  modelField: 'model' | 'model_name'
  stream: boolean
  /** The client asked for the usage chunk itself (the gateway always asks the backend for it). */
  clientIncludeUsage: boolean
  /** Upper bound of the prompt's tokens (a token is at least one UTF-8 byte), for reservations. */
  promptTokenBound: number
  /** Most completion tokens the request can produce (all choices). */
  maxCompletionTokens: number
  /** Choices in the answer (n × prompts); a broken stream can be continued only with one. */
  choices: number
  /** The client asked for token ids itself (else the gateway drops the ones it asks for). */
  clientTokenIds: boolean
}

declare module 'hono' {
  interface ContextVariableMap {
    apiRequest: ApiRequest
  }
}

const schemas: Record<ApiRoute, z.ZodType> = {
  completions: completionRequestSchema,
  chat: chatRequestSchema,
  generate: generateRequestSchema,
  embeddings: embeddingRequestSchema,
  predict: predictRequestSchema,
}
/** Routes that only read their input (no completion, no max_tokens): embeddings and /predict. */
const isEncoderRoute = (route: ApiRoute) => route === 'embeddings' || route === 'predict'
const encoder = new TextEncoder()
/** Tokens a chat template may add around each message (role markers and separators). */
const TEMPLATE_TOKENS_PER_MESSAGE = 16

/**
 * Parses and validates the body with the schemas and body reader the backend uses too
 * (openai/: one definition for both sides), bounds the prompt, and works out the most tokens
 * the request can use, so every request's token reservation is bounded.
 */
export function parseApiRequest(
  route: ApiRoute,
  options: {
    maxPromptChars: number
    maxGrammarChars: number
    defaultMaxTokens: number
    contextLength?: (model: string | undefined) => number | undefined
  },
): MiddlewareHandler {
  return async (c, next) => {
    let read: Awaited<ReturnType<typeof readJsonBody>>
    try {
      read = await readJsonBody(c.req, schemas[route])
    } catch (error) {
      // The gateway answers with its own HTTPException; the status, message, code and param are the backend's.
      if (error instanceof ApiError)
        throw gatewayError(error.status as 400 | 415, error.message, error.code ?? 'invalid_value', {
          param: error.param,
        })
      throw error
    }
    const body = read.data as ValidatedBody
    const json = read.json
    const object = json as Record<string, unknown>
    // Continuations are the gateway's own business (mid-stream failover).
    if ('resume' in object)
      throw gatewayError(400, 'resume is not accepted from clients', 'unsupported_parameter', { param: 'resume' })
    const { chars, bytes, tokenIds, messages } = measurePrompt(route, body)
    if (chars > options.maxPromptChars)
      throw gatewayError(400, `The prompt is longer than ${options.maxPromptChars} characters`, 'prompt_too_large', {
        param: promptParam[route],
      })
    const format = measureOutputFormat(body)
    if (format.chars > options.maxGrammarChars) {
      throw gatewayError(
        400,
        `The output format (${format.fields.join(', ')}) is ${format.chars} characters long; at most ${options.maxGrammarChars} are accepted`,
        'grammar_too_large',
        { param: format.fields[0] },
      )
    }

    const choices =
      route === 'generate'
        ? body.num_return_sequences
        : isEncoderRoute(route)
          ? 1
          : (body.n ?? 1) * (Array.isArray(body.prompt) && typeof body.prompt[0] !== 'number' ? body.prompt.length : 1)
    let maxTokens: number
    if (route === 'generate') maxTokens = body.max_length
    // Tokens per minute count an encoder request's input only; /predict may generate (text-generation).
    else if (route === 'embeddings') maxTokens = 0
    else if (route === 'predict')
      maxTokens = body.task === 'text-generation' ? (body.max_new_tokens ?? PREDICT_DEFAULT_NEW_TOKENS) : 0
    else {
      // Completions keep the API's own default (16, as on the backend). Chat's default is the rest of
      // the context window, so the body goes on without one (the backend fills it, as OpenAI and
      // vLLM do) and the reservation is the model's window as the nodes report it, or
      // defaultMaxTokens while no node has.
      maxTokens =
        body.max_completion_tokens ??
        body.max_tokens ??
        (route === 'completions'
          ? COMPLETIONS_DEFAULT_MAX_TOKENS
          : (options.contextLength?.(body.model) ?? options.defaultMaxTokens))
    }
    const stream = (route === 'completions' || route === 'chat') && body.stream === true
    const clientIncludeUsage = body.stream_options?.include_usage === true
    if (stream) object.stream_options = { include_usage: true }
    c.set('apiRequest', {
      route,
      json: object,
      model: route === 'predict' ? (body.model_name ?? undefined) : body.model,
      modelField: route === 'predict' ? 'model_name' : 'model',
      stream,
      clientIncludeUsage,
      // Tools are rendered into the prompt by the chat template; a schema's text bounds what it adds.
      promptTokenBound: (tokenIds || bytes) + format.bytes + TEMPLATE_TOKENS_PER_MESSAGE * (messages + 1),
      maxCompletionTokens: maxTokens * choices,
      choices,
      clientTokenIds: body.return_token_ids === true,
    })
    await next()
  }
}

const promptParam: Record<ApiRoute, string> = {
  completions: 'prompt',
  chat: 'messages',
  generate: 'prompt',
  embeddings: 'input',
  predict: 'text',
}

/** Fields that carry an output format or tools (see backend/api/structured and tools). */
/** A body its route's schema accepted: each route reads the fields that schema guarantees. */
// biome-ignore lint/suspicious/noExplicitAny: the union of the routes' request types, read per route
type ValidatedBody = Record<string, any>

const OUTPUT_FORMAT_FIELDS = [
  'tools',
  'response_format',
  'guided_json',
  'guided_regex',
  'guided_choice',
  'guided_grammar',
] as const

/** The JSON text of the request's tools and output format: its size bound and its share of the prompt. */
function measureOutputFormat(body: ValidatedBody) {
  const fields = OUTPUT_FORMAT_FIELDS.filter((field) => body[field] != null)
  const text = fields.map((field) => JSON.stringify(body[field])).join('')
  return { fields, chars: text.length, bytes: encoder.encode(text).length }
}

function measurePrompt(route: ApiRoute, body: ValidatedBody) {
  const texts: string[] = []
  let tokenIds = 0
  let messages = 0
  if (route === 'chat') {
    for (const m of body.messages) {
      messages++
      if (typeof m.content === 'string') texts.push(m.content)
      else for (const part of m.content ?? []) texts.push(part.text)
      for (const call of m.tool_calls ?? []) texts.push(call.function.name, call.function.arguments)
    }
  } else if (route === 'predict') texts.push(body.text)
  else if (typeof body[promptParam[route]] === 'string') texts.push(body[promptParam[route]])
  else {
    for (const p of body[promptParam[route]] as unknown[]) {
      if (typeof p === 'string') texts.push(p)
      else if (typeof p === 'number') tokenIds++
      else tokenIds += (p as number[]).length
    }
  }
  let chars = 0
  let bytes = 0
  for (const t of texts) {
    chars += t.length
    bytes += encoder.encode(t).length
  }
  return { chars, bytes, tokenIds, messages }
}
