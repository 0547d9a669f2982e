import type { MiddlewareHandler } from 'hono'
import { cors as honoCors } from 'hono/cors'

/** Response headers a browser client may read (request id, limits, routing, cache). */
const EXPOSED_HEADERS = [
  'x-request-id',
  'retry-after',
  'x-ratelimit-limit-requests',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-reset-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-tokens',
  'x-cache',
  'x-switchyard-region',
  'x-switchyard-backend',
  'x-switchyard-attempts',
  'x-switchyard-model-version',
]

/**
 * CORS for browser clients, off unless origins are configured. Preflights (OPTIONS) are answered
 * here, before authentication, since a browser sends them without credentials. Requested headers
 * are allowed as asked (the OpenAI SDK sends its own x-stainless-* headers); only the listed
 * origins (or `*`) get Access-Control-Allow-Origin. No cookies are used, so credentials are never allowed.
 */
export function cors(options: { allowedOrigins: readonly string[]; maxAgeSeconds: number }): MiddlewareHandler | null {
  if (options.allowedOrigins.length === 0) return null
  const any = options.allowedOrigins.includes('*')
  const origins = new Set(options.allowedOrigins)
  return honoCors({
    origin: any ? '*' : (origin) => (origins.has(origin) ? origin : null),
    allowMethods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
    exposeHeaders: EXPOSED_HEADERS,
    maxAge: options.maxAgeSeconds,
  })
}
