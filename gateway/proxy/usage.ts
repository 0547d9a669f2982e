import type { Usage } from '../pipeline/lifecycle.ts'

/** Usage from a non-streaming body: OpenAI's `usage` or /generate's token counts. */
export function usageFromJson(text: string): Usage | undefined {
  try {
    const body = JSON.parse(text) as { usage?: { prompt_tokens?: number; completion_tokens?: number }; input_tokens?: number; output_tokens?: number }
    if (body.usage) return { promptTokens: body.usage.prompt_tokens ?? 0, completionTokens: body.usage.completion_tokens ?? 0 }
    if (typeof body.input_tokens === 'number') return { promptTokens: body.input_tokens, completionTokens: body.output_tokens ?? 0 }
  } catch {
    // Not JSON (an upstream error page): no usage.
  }
  return undefined
}
