import type { Context } from 'hono'
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { errorMessage } from '../lib/error-message.ts'
import { createAdminRoutes, requireAdmin } from './auth/admin.ts'
import { createKeyLookup } from './auth/api-keys.ts'
import { createJwtVerifier } from './auth/jwt.ts'
import { authenticate } from './auth/middleware.ts'
import { createResponseCache } from './cache/response-cache.ts'
import type { GatewayConfig } from './config/schema.ts'
import { createConsole } from './console/routes.ts'
import { ipGuard } from './limits/ip-guard.ts'
import { keyRateLimits } from './limits/middleware.ts'
import { accessLog } from './observability/access-log.ts'
import { requestId } from './observability/request-id.ts'
import { bodyLimit } from './pipeline/body-limit.ts'
import { clientIp } from './pipeline/client-ip.ts'
import { cors } from './pipeline/cors.ts'
import { errorResponse, noRouteResponse } from './pipeline/errors.ts'
import { parseApiRequest } from './pipeline/parse-request.ts'
import type { WatchClient } from './pipeline/watch-client.ts'
import { tokenRefusalLog } from './proxy/backend-token-refusal.ts'
import { createForward } from './routes/forward.ts'
import { GENERATION_ROUTES, generationHandler, modelAccess } from './routes/generation.ts'
import { listModels, listTaskModels, modelIdPath, retrieveModel } from './routes/models.ts'
import { contextOfPublicModel, createModelContextLengths } from './routing/model-context.ts'
import { regionPreference } from './routing/region-preference.ts'
import type { Router } from './routing/router.ts'
import type { ApiKeyRecord, CacheStore, GatewayMetrics, KeyStore, Logger, RateLimitStore } from './types.ts'
import type { UpstreamFetch } from './upstream/upstream.ts'

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
  /** Regions, nodes and their live state; outlives config reloads. */
  router: Router
  /** Where the request entered the network (Workers: request.cf), for edgeRegions. */
  edgeLocation?: (c: Context) => string | undefined
  /** True once the entry has started shutting down (then /ready answers 503). */
  isDraining?: () => boolean
  /** A short-lived token the backends verify (gateway → backend authentication). */
  backendToken?: () => Promise<string> | string
  /** Runs work after the response is written (Node: setImmediate); default at once. */
  afterResponse?: (run: () => void) => void
  /**
   * Keeps background work started by a request (the context-window lookup) alive after its
   * response: on Workers, ctx.waitUntil, without which workerd cancels the work's I/O and
   * timers when the request ends. Default: nothing (Node keeps it running anyway).
   */
  background?: (work: Promise<unknown>) => void
  /**
   * Calls back if the client disconnects before its answer is complete, so the backend's work
   * is cancelled; returns how to stop watching. Default: the request's AbortSignal.
   */
  watchClient?: WatchClient
  /**
   * Identical concurrent cache misses share one backend call (default true). False where a
   * request's I/O dies with it (Workers: the others would read an upstream torn down when the
   * first client leaves).
   */
  coalesceIdenticalRequests?: boolean
}

/**
 * Builds the gateway, in pipeline order: request id → access log and metrics → per-IP guard on failed authentication →
 * authentication → request parsing → model access → per-key limits → cache → proxy.
 */
export function createGatewayApp(deps: GatewayDeps): Hono {
  const { config, logger } = deps
  // The operator console charts what the pipeline records, so the app records through it.
  const operatorConsole = createConsole({
    adminToken: config.env.ADMIN_TOKEN,
    router: deps.router,
    metrics: deps.metrics,
    logger,
    regionHeader: config.routing.regionHeader,
  })
  const metrics = operatorConsole.metrics
  const app = new Hono()
  const trusted = new Set(config.limits.trustedProxies)
  const ip = (c: Context) => clientIp(deps.peerAddress(c), c.req.header('x-forwarded-for'), trusted)
  const configKeys: ApiKeyRecord[] = config.auth.apiKeys.map((k) => ({ ...k, createdAt: 'config', source: 'config' }))
  const lookup = createKeyLookup({ configKeys, store: deps.keyStore, cache: config.auth.keyCache })
  const jwt = config.auth.jwt
    ? createJwtVerifier({
        ...config.auth.jwt,
        keys: config.auth.jwt.keys as never,
        defaultLimits: config.limits.defaults,
      })
    : undefined
  const cache = config.cache.enabled
    ? createResponseCache({
        store: deps.cacheStore,
        ttlSeconds: config.cache.ttlSeconds,
        maxEntryBytes: config.cache.maxEntryBytes,
        metrics,
        logger,
        coalesce: deps.coalesceIdenticalRequests ?? true,
      })
    : null
  const adminToken = config.env.ADMIN_TOKEN

  app.use(
    '*',
    requestId(),
    accessLog({ logger, metrics, afterResponse: deps.afterResponse, watchClient: deps.watchClient }),
  )
  // Before every route: a browser's preflight carries no credentials.
  const corsHeaders = cors(config.server.cors)
  if (corsHeaders) app.use('*', corsHeaders)

  app.get('/health', (c) => c.json({ status: 'ok' }))
  // 503 while the entry drains, so load balancers stop sending before the listener closes.
  app.get('/ready', (c) => (deps.isDraining?.() ? c.json({ status: 'draining' }, 503) : c.json({ status: 'ready' })))
  app.get('/metrics', requireAdmin(adminToken), async (c) => {
    const rendered = await metrics.render()
    if (!rendered) return errorResponse(404, 'Metrics are not exposed by this runtime', 'not_found')
    return c.body(rendered.body, 200, { 'content-type': rendered.contentType })
  })
  app.route(
    '/admin',
    createAdminRoutes({
      adminToken,
      store: deps.keyStore,
      logger,
      isConfigKey: lookup.isConfigKey,
      onRevoked: lookup.forget,
    }),
  )
  app.route('/console', operatorConsole.routes)

  const api = [
    ipGuard({
      store: deps.rateLimits,
      limit: config.limits.perIp.requestsPerWindow,
      windowSeconds: config.limits.perIp.requestWindowSeconds,
      metrics,
      ip,
    }),
    authenticate({ lookup, jwt, defaultLimits: config.limits.defaults, logger, hashKey: deps.hashKey }),
  ] as const
  const body = bodyLimit({ maxBytes: config.server.maxBodyBytes })
  const limits = keyRateLimits({ store: deps.rateLimits, defaults: config.limits.defaults, metrics, logger })

  const region = regionPreference(config.routing.regionHeader, deps.router, deps.edgeLocation)
  const backendHeaders = deps.backendToken
    ? async () => ({ authorization: `Bearer ${await deps.backendToken!()}` })
    : undefined
  const forward = createForward({
    upstream: deps.upstream,
    router: deps.router,
    metrics: metrics.routing,
    requestTimeoutMs: config.server.requestTimeoutMs,
    backendHeaders,
    onTokenRefused: tokenRefusalLog(logger, Boolean(deps.backendToken)),
    watchClient: deps.watchClient,
  })

  const contexts = createModelContextLengths({
    router: deps.router,
    upstream: deps.upstream,
    headers: backendHeaders,
    background: deps.background,
  })
  const parseLimits = {
    maxPromptChars: config.server.maxPromptChars,
    maxGrammarChars: config.server.maxGrammarChars,
    defaultMaxTokens: config.limits.defaultMaxTokens,
    contextLength: (model: string | undefined) => contextOfPublicModel(contexts, config.routing.aliases, model),
  }
  const generation = generationHandler({ routing: config.routing, cache, metrics: metrics.routing, forward })
  for (const [route, path] of GENERATION_ROUTES)
    app.post(
      path,
      ...api,
      body,
      parseApiRequest(route, parseLimits),
      modelAccess,
      limits,
      region,
      generation(route, path),
    )

  app.get('/models', ...api, region, listTaskModels({ forward }))
  app.get('/v1/models', ...api, region, listModels({ aliases: config.routing.aliases, contexts, forward }))
  // The SDKs' models.retrieve; ids may hold slashes (org/name).
  app.get(
    '/v1/models/:id{.+}',
    modelIdPath,
    ...api,
    region,
    retrieveModel({
      aliases: config.routing.aliases,
      forward: (c, id) => forward(c, { path: `/v1/models/${encodeURIComponent(id)}`, method: 'GET', model: id }),
    }),
  )

  app.get('/status', requireAdmin(adminToken), (c) => c.json(deps.router.status()))

  app.notFound((c) => noRouteResponse(c.req.raw))
  app.onError((error, c) => {
    const lifecycle = c.get('lifecycle')
    if (error instanceof HTTPException) return error.getResponse()
    logger.error({ requestId: lifecycle?.record.requestId, error: errorMessage(error) }, 'unhandled error')
    return errorResponse(500, 'Internal server error', 'internal_error')
  })
  return app
}
