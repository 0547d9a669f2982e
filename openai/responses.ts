/**
 * The answers of the OpenAI routes as they go over the wire: whole responses, stream chunks
 * and usage. The backend builds them; the gateway reads usage and rewrites chunks.
 */

export type FinishReason = 'stop' | 'length' | 'tool_calls'

/** Token counts of a completions, chat or embeddings answer. */
export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

/** Switchyard's extension: the sampled token ids of a choice, with `return_token_ids` (see requests.ts). */
interface TokenIds {
  token_ids?: number[]
}

export interface ToolCall {
  id: string
  type: 'function'
  function: { name: string; arguments: string }
}

/** OpenAI's completions logprobs (text_offset counted over the texts of the tokens). */
export interface CompletionLogprobs {
  tokens: string[]
  token_logprobs: (number | null)[]
  top_logprobs: (Record<string, number> | null)[]
  text_offset: number[]
}

interface ChatTokenLogprob {
  token: string
  logprob: number
  bytes: number[]
}
/** OpenAI's chat logprobs. */
export interface ChatLogprobs {
  content: (ChatTokenLogprob & { top_logprobs: ChatTokenLogprob[] })[]
}

export interface CompletionChoice extends TokenIds {
  index: number
  text: string
  logprobs: CompletionLogprobs | null
  /** null until a stream's choice ends. */
  finish_reason: FinishReason | null
}

/** POST /v1/completions; with stream, each event's chunk has the same shape. */
export interface Completion {
  id: string
  object: 'text_completion'
  created: number
  model: string
  choices: CompletionChoice[]
  /** Streams: only the last chunk (choices empty), with stream_options.include_usage. */
  usage?: Usage
}
export type CompletionChunk = Completion

export interface ChatMessage {
  role: 'assistant'
  /** null when the answer is only tool calls. */
  content: string | null
  tool_calls?: ToolCall[]
}

export interface ChatChoice extends TokenIds {
  index: number
  message: ChatMessage
  logprobs: ChatLogprobs | null
  finish_reason: FinishReason
}

/** POST /v1/chat/completions without stream. */
export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  choices: ChatChoice[]
  usage: Usage
}

/** A stream chunk's delta: the role first, then content, tool calls (with their index), or nothing with the finish reason. */
export interface ChatDelta {
  role?: 'assistant'
  content?: string
  tool_calls?: (ToolCall & { index: number })[]
}

export interface ChatChunkChoice extends TokenIds {
  index: number
  delta: ChatDelta
  logprobs: ChatLogprobs | null
  finish_reason: FinishReason | null
}

/** One event of a chat stream. */
export interface ChatCompletionChunk {
  id: string
  object: 'chat.completion.chunk'
  created: number
  model: string
  choices: ChatChunkChoice[]
  /** Only the last chunk (choices empty), with stream_options.include_usage. */
  usage?: Usage
}

/** A chunk of either stream, as the gateway reads it. */
export type StreamChunk = CompletionChunk | ChatCompletionChunk

/** The event that ends every stream that did not end with an error. */
export const DONE_EVENT = 'data: [DONE]\n\n'
