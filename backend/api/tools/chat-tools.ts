import { randomUUID } from 'node:crypto'
import { ApiError } from '../../../openai/errors.ts'
import type { ChatRequest } from '../../../openai/requests.ts'
import type { ChatChoice } from '../../../openai/responses.ts'
import type { ServedModel } from '../../engine/text-generation.ts'
import { type ChatMessage, ChatTemplateError } from '../../model/tokenizer.ts'
import { checkSize, type OutputGrammar, outputGrammarOf, prepareGrammar } from '../structured/output-format.ts'
import { type ParsedToolCall, type ToolCallFormat, toolFormatOf, toolGrammar } from './tool-formats.ts'

/** What a chat request needs before generation: its prompt, its grammar, its tool-call format. */
export interface ChatPlan {
  prompt: number[]
  grammar?: OutputGrammar
  /** Set when the answer is parsed for tool calls. */
  toolFormat?: ToolCallFormat
}

/**
 * Renders the chat (tools included) and settles the output constraint: `response_format` /
 * `guided_*`, or the tool-call grammar of `tool_choice`. The grammar is compiled before
 * returning, so an invalid one is a 400 before any generation.
 */
export async function planChat(
  model: ServedModel,
  body: ChatRequest,
  maxGrammarChars: number,
  resumeIds?: number[],
): Promise<ChatPlan> {
  const format = outputGrammarOf(body, maxGrammarChars)
  const tools = body.tools ?? []
  const choice = body.tool_choice ?? (tools.length > 0 ? 'auto' : 'none')
  if (choice !== 'none' && tools.length === 0)
    throw new ApiError(400, 'tool_choice needs tools', { param: 'tool_choice', code: 'invalid_value' })
  if (typeof choice === 'object' && !tools.some((t) => t.function.name === choice.function.name)) {
    throw new ApiError(400, `tool_choice names the function '${choice.function.name}', which is not in tools`, {
      param: 'tool_choice',
      code: 'invalid_value',
    })
  }
  const toolFormat = tools.length > 0 ? toolFormatOf(model.tokenizer.templateSource) : undefined
  if (tools.length > 0 && !toolFormat && choice !== 'none') {
    throw new ApiError(400, `The model '${model.id}' does not support tools: its chat template does not render them`, {
      param: 'tools',
      code: 'tools_unsupported',
    })
  }
  if (choice !== 'none' && format) {
    throw new ApiError(
      400,
      `${format.param.split('.')[0]} cannot be combined with tools unless tool_choice is "none"`,
      { param: format.param.split('.')[0], code: 'invalid_value' },
    )
  }
  const renderedTools = toolFormat ? tools.map((t) => ({ type: 'function', function: t.function })) : undefined
  const prompt = encodeChat(model, body.messages.map(chatMessage), renderedTools)
  let grammar = format
  if (toolFormat && choice !== 'none') {
    const functions = tools.map((t) => ({ name: t.function.name, parameters: t.function.parameters }))
    const named = typeof choice === 'object' ? { name: choice.function.name } : choice
    grammar = { param: 'tools', spec: toolGrammar(toolFormat, functions, named, body.parallel_tool_calls ?? true) }
    checkSize(grammar, maxGrammarChars)
  }
  if (grammar) await prepareGrammar(model, grammar, resumeIds)
  return { prompt, grammar, toolFormat: choice === 'none' ? undefined : toolFormat }
}

/** The chat prompt; a template's `raise_exception` (or failure on these messages) is the client's 400. */
function encodeChat(model: ServedModel, messages: ChatMessage[], tools: unknown[] | undefined): number[] {
  try {
    return model.tokenizer.encodeChat(messages, { tools })
  } catch (error) {
    if (error instanceof ChatTemplateError)
      throw new ApiError(400, error.message, { param: 'messages', code: 'chat_template_error' })
    throw error
  }
}

/** A request message as the chat template takes it (tool-call arguments as objects, as templates expect). */
function chatMessage(m: ChatRequest['messages'][number]): ChatMessage {
  const content = typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join('')
  const message: ChatMessage = { role: m.role, content }
  if (m.name) message.name = m.name
  if (m.tool_call_id) message.tool_call_id = m.tool_call_id
  if (m.tool_calls?.length) {
    message.tool_calls = m.tool_calls.map((call) => ({
      id: call.id,
      type: 'function',
      function: { name: call.function.name, arguments: argumentsObject(call.function.arguments) },
    }))
  }
  return message
}

function argumentsObject(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new ApiError(400, 'tool_calls[].function.arguments must be a JSON text', {
      param: 'messages',
      code: 'invalid_value',
    })
  }
}

/** OpenAI's `tool_calls` entries for parsed calls. */
export const toolCallsOf = (calls: ParsedToolCall[]) =>
  calls.map((call) => ({
    id: `call_${randomUUID().replace(/-/g, '').slice(0, 24)}`,
    type: 'function' as const,
    function: call,
  }))

/** A finished choice's message and finish reason: its tool calls parsed out when tools apply. */
export function toolMessage(
  format: ToolCallFormat | undefined,
  choice: { text: string; finishReason: 'stop' | 'length' },
): Pick<ChatChoice, 'message' | 'finish_reason'> {
  const parsed = format?.parse(choice.text)
  if (!parsed || parsed.calls.length === 0)
    return { message: { role: 'assistant', content: choice.text }, finish_reason: choice.finishReason }
  const finishReason = choice.finishReason === 'stop' ? 'tool_calls' : choice.finishReason
  return {
    message: { role: 'assistant', content: parsed.content, tool_calls: toolCallsOf(parsed.calls) },
    finish_reason: finishReason,
  }
}
