/** Fields that do not change what the model returns. */
const IGNORED_FIELDS = new Set(['user', 'stream_options'])

/** Only requests whose output is fixed can be cached: greedy (temperature 0) or seeded. */
export function isDeterministic(body: Record<string, unknown>): boolean {
  return body.temperature === 0 || typeof body.seed === 'number'
}

/** JSON with object keys sorted at every depth, so key order never changes the cache key. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined)
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonical(v)}`).join(',')}}`
  }
  return JSON.stringify(value)
}

/** SHA-256 of route, tenant, variant and the normalized body (Web Crypto: runs on Workers too). */
export async function cacheKey(parts: { route: string; tenant: string; variant: string; body: Record<string, unknown> }): Promise<string> {
  const body = Object.fromEntries(Object.entries(parts.body).filter(([k]) => !IGNORED_FIELDS.has(k)))
  const text = canonical({ route: parts.route, tenant: parts.tenant, variant: parts.variant, body })
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))
  return `sy:cache:${[...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('')}`
}
