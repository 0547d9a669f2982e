import type { Usage } from '../pipeline/lifecycle.ts'

const USAGE = '"usage":'

/**
 * Usage from a non-streaming body: OpenAI's `usage` or /generate's token counts. The OpenAI
 * case reads only the `usage` object at the end of the body instead of parsing the whole
 * answer; `"usage":` cannot occur unescaped inside a JSON string, so the match is the key.
 */
export function usageFromJson(text: string): Usage | undefined {
  const at = text.lastIndexOf(USAGE)
  if (at !== -1) {
    const tail = text.slice(at + USAGE.length)
    const prompt = /"prompt_tokens":\s*(\d+)/.exec(tail)
    const completion = /"completion_tokens":\s*(\d+)/.exec(tail)
    if (prompt || completion) return { promptTokens: Number(prompt?.[1] ?? 0), completionTokens: Number(completion?.[1] ?? 0) }
  }
  try {
    const body = JSON.parse(text) as { usage?: { prompt_tokens?: number; completion_tokens?: number }; input_tokens?: number; output_tokens?: number }
    if (body.usage) return { promptTokens: body.usage.prompt_tokens ?? 0, completionTokens: body.usage.completion_tokens ?? 0 }
    if (typeof body.input_tokens === 'number') return { promptTokens: body.input_tokens, completionTokens: body.output_tokens ?? 0 }
  } catch {
    // Not JSON (an upstream error page): no usage.
  }
  return undefined
}
