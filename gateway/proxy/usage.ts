import type { Usage } from '../pipeline/lifecycle.ts'

/** Usage from a parsed non-streaming answer: OpenAI's `usage` or /generate's token counts. */
export function usageOf(body: unknown): Usage | undefined {
  if (typeof body !== 'object' || body === null) return undefined
  const answer = body as { usage?: { prompt_tokens?: number; completion_tokens?: number } | null; input_tokens?: number; output_tokens?: number }
  if (answer.usage) return { promptTokens: answer.usage.prompt_tokens ?? 0, completionTokens: answer.usage.completion_tokens ?? 0 }
  if (typeof answer.input_tokens === 'number') return { promptTokens: answer.input_tokens, completionTokens: answer.output_tokens ?? 0 }
  return undefined
}
