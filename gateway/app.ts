import { Hono } from 'hono'
import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { createAdminRoutes, requireAdmin } from './auth/admin.ts'
import { createKeyLookup } from './auth/api-keys.ts'
import { createJwtVerifier } from './auth/jwt.ts'
import { authenticate, requireModelAccess } from './auth/middleware.ts'
import { createResponseCache } from './cache/response-cache.ts'
import type { GatewayConfig } from './config/schema.ts'
import { ipRateLimit, keyRateLimits } from './limits/middleware.ts'
import { accessLog } from './observability/access-log.ts'
import { requestId } from './observability/request-id.ts'
import { bodyLimit } from './pipeline/body-limit.ts'
import { clientIp } from './pipeline/client-ip.ts'
import { errorResponse } from './pipeline/errors.ts'
import { type ApiRoute, parseApiRequest } from './pipeline/parse-request.ts'
import { forwardToBackend } from './proxy/forward.ts'
import type { UpstreamFetch } from './proxy/upstream.ts'
import type { ApiKeyRecord, CacheStore, GatewayMetrics, KeyStore, Logger, RateLimitStore } from './types.ts'

/** Everything runtime-specific, made by the entry file (Node or Workers). */
export interface GatewayDeps {
  config: GatewayConfig
  logger: Logger
  metrics: GatewayMetrics
  /** Keys created through the admin API (Redis or memory). */
  keyStore: KeyStore
  rateLimits: RateLimitStore
  cacheStore: CacheStore
  upstream: UpstreamFetch
  /** The connecting peer's address, from the runtime. */
  peerAddress: (c: Context) => string | undefined
  /** Hex SHA-256 for API keys; default Web Crypto. */
  hashKey?: (key: string) => string | Promise<string>
}

/**
 * Builds the gateway, in pipeline order: request id → access log and metrics → per-IP guard on failed authentication →
 * authentication → request parsing → model access → per-key limits → cache → proxy.
 */
export function createGatewayApp(deps: GatewayDeps): Hono {
  const { config, logger, metrics } = deps
  const app = new Hono()
  const trusted = new Set(config.limits.trustedProxies)
  const ip = (c: Context) => clientIp(deps.peerAddress(c), c.req.header('x-forwarded-for'), trusted)
  const configKeys: ApiKeyRecord[] = config.auth.apiKeys.map((k) => ({ ...k, createdAt: 'config', source: 'config' }))
  const lookup = createKeyLookup({ configKeys, store: deps.keyStore })
  const jwt = config.auth.jwt ? createJwtVerifier({ ...config.auth.jwt, keys: config.auth.jwt.keys as never, defaultLimits: config.limits.defaults }) : undefined
  const cache = config.cache.enabled ? createResponseCache({ store: deps.cacheStore, ttlSeconds: config.cache.ttlSeconds, maxEntryBytes: config.cache.maxEntryBytes, metrics, logger }) : null
  const adminToken = config.env.ADMIN_TOKEN

  app.use('*', requestId(), accessLog({ logger, metrics }))

  app.get('/health', (c) => c.json({ status: 'ok' }))
  app.get('/ready', (c) => c.json({ status: 'ready' }))
  app.get('/metrics', requireAdmin(adminToken), async (c) => {
    const rendered = await metrics.render()
    if (!rendered) return errorResponse(404, 'Metrics are not exposed by this runtime', 'not_found')
    return c.body(rendered.body, 200, { 'content-type': rendered.contentType })
  })
  app.route('/admin', createAdminRoutes({ adminToken, store: deps.keyStore, logger }))

  const api = [
    ipRateLimit({ store: deps.rateLimits, limit: config.limits.perIp.requestsPerWindow, windowSeconds: config.limits.perIp.requestWindowSeconds, metrics, ip }),
    authenticate({ lookup, jwt, defaultLimits: config.limits.defaults, logger, hashKey: deps.hashKey }),
  ] as const
  const body = bodyLimit({ maxBytes: config.server.maxBodyBytes })
  const limits = keyRateLimits({ store: deps.rateLimits, defaults: config.limits.defaults, metrics, logger })

  const generationRoute = (route: ApiRoute, path: string) => {
    app.post(path, ...api, body, parseApiRequest(route, { maxPromptChars: config.server.maxPromptChars, defaultMaxTokens: config.limits.defaultMaxTokens }), modelAccess, limits, async (c) => {
      const request = c.get('apiRequest')
      const lifecycle = c.get('lifecycle')
      const forward = () =>
        forwardToBackend(c, {
          upstream: deps.upstream,
          baseUrl: config.backend.url,
          path,
          method: 'POST',
          body: JSON.stringify(request.json),
          keepUsageEvent: request.clientIncludeUsage,
          timeoutMs: config.server.requestTimeoutMs,
        })
      if (!cache) return forward()
      const response = await cache.handle({ route: path, tenant: c.get('principal').tenant, body: request.json, variant: request.clientIncludeUsage ? 'usage' : '', cacheControl: c.req.header('cache-control') }, forward)
      lifecycle.record.cache = (response.headers.get('x-cache') as 'HIT' | 'MISS' | 'BYPASS' | null) ?? undefined
      return response
    })
  }
  generationRoute('completions', '/v1/completions')
  generationRoute('chat', '/v1/chat/completions')
  generationRoute('generate', '/generate')

  app.get('/v1/models', ...api, async (c) => {
    const response = await forwardToBackend(c, { upstream: deps.upstream, baseUrl: config.backend.url, path: '/v1/models', method: 'GET', timeoutMs: config.server.requestTimeoutMs })
    const allowed = c.get('principal').models
    if (!allowed || response.status !== 200) return response
    // A key limited to some models sees only those.
    const list = (await response.json()) as { object: string; data: { id: string }[] }
    return c.json({ ...list, data: list.data.filter((m) => allowed.includes(m.id)) })
  })

  app.notFound((c) => errorResponse(404, `No route for ${c.req.method} ${new URL(c.req.url).pathname}`, 'not_found'))
  app.onError((error, c) => {
    const lifecycle = c.get('lifecycle')
    if (error instanceof HTTPException) return error.getResponse()
    logger.error({ requestId: lifecycle?.record.requestId, error: String((error as Error)?.message ?? error) }, 'unhandled error')
    return errorResponse(500, 'Internal server error', 'internal_error')
  })
  return app
}

/** 403 when the key may not use the requested model. */
const modelAccess = async (c: Context, next: () => Promise<void>) => {
  requireModelAccess(c.get('principal'), c.get('apiRequest').model)
  c.get('lifecycle').record.model = c.get('apiRequest').model
  await next()
}
