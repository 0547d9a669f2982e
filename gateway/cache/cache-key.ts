/** Every response-cache key starts with this, so the store's keys can be told apart. */
export const CACHE_KEY_PREFIX = 'sy:cache:'

/**
 * Bumped whenever what is stored under a key changes shape, so old entries simply stop being
 * found (and expire) instead of being misread.
 */
const KEY_FORMAT = 'v1'

/** Body fields that do not change the model's output. `stream` is keyed on its own. */
const IGNORED_FIELDS = new Set(['user', 'stream_options', 'stream'])

/**
 * Fields whose key order changes the output: a JSON schema's `properties` order is the order a
 * constrained answer writes them in. They are keyed as sent, not canonicalised.
 */
const ORDERED_FIELDS = new Set(['response_format', 'guided_json', 'tools'])

/** Fields that ask for several choices (OpenAI `n`/`best_of`, /generate `num_return_sequences`). */
const CHOICE_FIELDS = ['n', 'best_of', 'num_return_sequences'] as const

/**
 * Only requests whose output is fixed can be cached: greedy (`temperature === 0`) or seeded
 * (`seed` is a number). The same fields apply to /generate. Several choices without a seed
 * are not treated as deterministic.
 */
export function isDeterministic(body: Record<string, unknown>): boolean {
  const seeded = typeof body.seed === 'number' && Number.isFinite(body.seed)
  if (seeded) return true
  const choices = Math.max(
    1,
    ...CHOICE_FIELDS.map((field) => (typeof body[field] === 'number' ? (body[field] as number) : 1)),
  )
  return choices <= 1 && body.temperature === 0
}

/** JSON with object keys sorted at every depth, so key order never changes the cache key. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value))
    return `[${value.map((item) => (item === undefined ? 'null' : canonicalJson(item))).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined)
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

export interface CacheKeyParts {
  route: string
  tenant: string
  body: Record<string, unknown>
  /** Anything outside the body that changes the response's bytes (e.g. whether the usage chunk is shown). */
  variant?: string
}

/**
 * The text that is hashed: route, tenant, whether the response streams (a stream entry and a
 * JSON entry are separate), the variant, and the body without the fields that do not matter.
 */
export function normalizedRequest(parts: CacheKeyParts): string {
  const body = Object.fromEntries(
    Object.entries(parts.body)
      .filter(([k]) => !IGNORED_FIELDS.has(k))
      .map(([k, v]) => [k, ORDERED_FIELDS.has(k) ? JSON.stringify(v) : v]),
  )
  return canonicalJson({
    format: KEY_FORMAT,
    route: parts.route,
    tenant: parts.tenant,
    stream: parts.body.stream === true,
    variant: parts.variant ?? '',
    body,
  })
}

/** `sy:cache:` + hex SHA-256 of the normalized request (Web Crypto: runs on Workers too). */
export async function cacheKey(parts: CacheKeyParts): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(normalizedRequest(parts)))
  let hex = ''
  for (const byte of new Uint8Array(digest)) hex += byte.toString(16).padStart(2, '0')
  return CACHE_KEY_PREFIX + hex
}
