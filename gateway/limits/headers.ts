import type { LimitState } from '../types.ts'

/**
 * A reset time the way OpenAI writes it (Go duration style): `20ms` below a second, otherwise
 * hours, minutes and seconds with the larger units only when non-zero: `1s`, `1.5s`, `6m0s`, `1h0m0s`.
 */
export function formatResetDuration(seconds: number): string {
  const ms = Number.isFinite(seconds) ? Math.max(0, Math.round(seconds * 1000)) : 0
  if (ms === 0) return '0s'
  if (ms < 1000) return `${ms}ms`
  const hours = Math.floor(ms / 3_600_000)
  const minutes = Math.floor((ms % 3_600_000) / 60_000)
  // Up to millisecond precision, without trailing zeros: 1.5s, 2.25s, 3s.
  const secs = `${Number(((ms % 60_000) / 1000).toFixed(3))}s`
  if (hours > 0) return `${hours}h${minutes}m${secs}`
  if (minutes > 0) return `${minutes}m${secs}`
  return secs
}

/**
 * OpenAI's rate-limit headers for the limits that applied to a request:
 * `x-ratelimit-{limit,remaining,reset}-requests` and `x-ratelimit-{limit,remaining,reset}-tokens`.
 * A limit that did not apply (undefined state) adds no headers.
 */
export function rateLimitHeaders(states: { requests?: LimitState; tokens?: LimitState }): Record<string, string> {
  const headers: Record<string, string> = {}
  const add = (kind: 'requests' | 'tokens', state: LimitState | undefined) => {
    if (!state) return
    headers[`x-ratelimit-limit-${kind}`] = String(Math.floor(state.limit))
    headers[`x-ratelimit-remaining-${kind}`] = String(Math.max(0, Math.floor(state.remaining)))
    headers[`x-ratelimit-reset-${kind}`] = formatResetDuration(state.resetSeconds)
  }
  add('requests', states.requests)
  add('tokens', states.tokens)
  return headers
}
