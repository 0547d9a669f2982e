import type { Usage } from '../pipeline/lifecycle.ts'

const encoder = new TextEncoder()

/**
 * Reads an OpenAI event stream as it passes: finds the usage chunk (the gateway always asks the
 * backend for one, to settle token budgets) and drops it when the client did not ask for it.
 * Whole events are forwarded as soon as they are complete; only a partial tail waits.
 */
export function createSseUsageReader(options: { keepUsageEvent: boolean; onUsage: (usage: Usage) => void; onError: () => void }) {
  const decoder = new TextDecoder()
  let pending = ''
  return (chunk: Uint8Array): Uint8Array | null => {
    pending += decoder.decode(chunk, { stream: true })
    const cut = pending.lastIndexOf('\n\n')
    if (cut === -1) return null
    const complete = pending.slice(0, cut + 2)
    pending = pending.slice(cut + 2)
    // Most events carry no usage; only inspect the ones that might.
    if (!complete.includes('"usage"') && !complete.includes('"error"')) return encoder.encode(complete)
    let out = ''
    for (const event of complete.split('\n\n')) {
      if (!event) continue
      const data = event.startsWith('data: ') ? event.slice(6) : ''
      if (data.includes('"error"')) options.onError()
      if (data.includes('"usage"')) {
        try {
          const parsed = JSON.parse(data) as { usage?: { prompt_tokens?: number; completion_tokens?: number } | null; choices?: unknown[] }
          if (parsed.usage) {
            options.onUsage({ promptTokens: parsed.usage.prompt_tokens ?? 0, completionTokens: parsed.usage.completion_tokens ?? 0 })
            if (!options.keepUsageEvent && Array.isArray(parsed.choices) && parsed.choices.length === 0) continue
          }
        } catch {
          // Not JSON: pass it on untouched.
        }
      }
      out += `${event}\n\n`
    }
    return out ? encoder.encode(out) : null
  }
}

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
