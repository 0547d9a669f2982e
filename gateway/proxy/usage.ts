import type { Usage as WireUsage } from '../../openai/responses.ts'
import type { Usage } from '../pipeline/lifecycle.ts'

/** A backend's `usage` object as received: any count may be missing. */
export type ReceivedUsage = Partial<WireUsage>

/** The gateway's usage record from OpenAI's `usage` object (a missing count is 0). */
export function usageFrom(usage: ReceivedUsage): Usage {
  return { promptTokens: usage.prompt_tokens ?? 0, completionTokens: usage.completion_tokens ?? 0 }
}

/** Usage from a parsed non-streaming answer: OpenAI's `usage` or /generate's token counts. */
export function usageOf(body: unknown): Usage | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const answer = body as { usage?: ReceivedUsage | null; input_tokens?: number; output_tokens?: number }
  if (answer.usage) return usageFrom(answer.usage)
  if (typeof answer.input_tokens === 'number')
    return { promptTokens: answer.input_tokens, completionTokens: answer.output_tokens ?? 0 }
  return undefined
}
