import { Hono } from 'hono'
import type { Context, MiddlewareHandler } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { createAdminRoutes, requireAdmin } from './auth/admin.ts'
import { createKeyLookup } from './auth/api-keys.ts'
import { createJwtVerifier } from './auth/jwt.ts'
import { authenticate, requireModelAccess } from './auth/middleware.ts'
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
import { errorResponse, gatewayError } from './pipeline/errors.ts'
import { type ApiRoute, parseApiRequest } from './pipeline/parse-request.ts'
import { tokenRefusalLog } from './proxy/backend-token-refusal.ts'
import { type ForwardOptions, type ForwardResult, forwardToBackend } from './proxy/forward.ts'
import { modelIdPath, retrieveModel } from './routes/models.ts'
import type { UpstreamFetch } from './upstream/upstream.ts'
import { type WatchClient, watchRequestSignal } from './pipeline/watch-client.ts'
import { resolveModel } from './routing/aliases.ts'
import { contextOfPublicModel, createModelContextLengths, type ListedModel } from './routing/model-context.ts'
import type { Router } from './routing/router.ts'
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
  const operatorConsole = createConsole({ adminToken: config.env.ADMIN_TOKEN, router: deps.router, metrics: deps.metrics, logger, regionHeader: config.routing.regionHeader })
  const metrics = operatorConsole.metrics
  const app = new Hono()
  const trusted = new Set(config.limits.trustedProxies)
  const ip = (c: Context) => clientIp(deps.peerAddress(c), c.req.header('x-forwarded-for'), trusted)
  const configKeys: ApiKeyRecord[] = config.auth.apiKeys.map((k) => ({ ...k, createdAt: 'config', source: 'config' }))
  const lookup = createKeyLookup({ configKeys, store: deps.keyStore, cache: config.auth.keyCache })
  const jwt = config.auth.jwt ? createJwtVerifier({ ...config.auth.jwt, keys: config.auth.jwt.keys as never, defaultLimits: config.limits.defaults }) : undefined
  const cache = config.cache.enabled ? createResponseCache({ store: deps.cacheStore, ttlSeconds: config.cache.ttlSeconds, maxEntryBytes: config.cache.maxEntryBytes, metrics, logger, coalesce: deps.coalesceIdenticalRequests ?? true }) : null
  const adminToken = config.env.ADMIN_TOKEN

  app.use('*', requestId(), accessLog({ logger, metrics, afterResponse: deps.afterResponse, watchClient: deps.watchClient }))
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
  app.route('/admin', createAdminRoutes({ adminToken, store: deps.keyStore, logger, isConfigKey: lookup.isConfigKey, onRevoked: lookup.forget }))
  app.route('/console', operatorConsole.routes)

  const api = [
    ipGuard({ store: deps.rateLimits, limit: config.limits.perIp.requestsPerWindow, windowSeconds: config.limits.perIp.requestWindowSeconds, metrics, ip }),
    authenticate({ lookup, jwt, defaultLimits: config.limits.defaults, logger, hashKey: deps.hashKey }),
  ] as const
  const body = bodyLimit({ maxBytes: config.server.maxBodyBytes })
  const limits = keyRateLimits({ store: deps.rateLimits, defaults: config.limits.defaults, metrics, logger })

  const region = regionPreference(config.routing.regionHeader, deps.router, deps.edgeLocation)
  const backendHeaders = deps.backendToken ? async () => ({ authorization: `Bearer ${await deps.backendToken!()}` }) : undefined
  const deadline = (c: Context) => c.get('lifecycle').record.startedAt + config.server.requestTimeoutMs
  const onTokenRefused = tokenRefusalLog(logger, Boolean(deps.backendToken))

  /** Forwards the request to a backend node; the proxy's result becomes the Response here. */
  const proxy = async (c: Context, options: Omit<ForwardOptions, 'upstream' | 'router' | 'metrics' | 'regions' | 'deadline' | 'backendHeaders' | 'onTokenRefused'>) => {
    const lifecycle = c.get('lifecycle')
    const client = { lifecycle, header: (name: string) => c.req.header(name), watch: (onGone: () => void) => (deps.watchClient ?? watchRequestSignal)(c, onGone) }
    const result: ForwardResult = await forwardToBackend(client, { upstream: deps.upstream, router: deps.router, metrics: metrics.routing, regions: c.get('regionOrder'), deadline: deadline(c), backendHeaders, onTokenRefused, ...options })
    return lifecycle.respond(result.body, result.status, result.headers, { endsItself: result.kind === 'stream' })
  }

  const contexts = createModelContextLengths({ router: deps.router, upstream: deps.upstream, headers: backendHeaders })
  const contextLength = (model: string | undefined) => contextOfPublicModel(contexts, config.routing.aliases, model)

  const generationRoute = (route: ApiRoute, path: string) => {
    const parse = parseApiRequest(route, { maxPromptChars: config.server.maxPromptChars, maxGrammarChars: config.server.maxGrammarChars, defaultMaxTokens: config.limits.defaultMaxTokens, contextLength })
    app.post(path, ...api, body, parse, modelAccess, limits, region, async (c) => {
      const request = c.get('apiRequest')
      const lifecycle = c.get('lifecycle')
      const served = resolveModel(config.routing.aliases, request.model, c.get('principal').id)
      if (served?.alias) request.json[request.modelField] = served.model
      // Streams of one choice can be continued on another node; for that the gateway needs the token ids.
      const resumable = route !== 'generate' && request.stream && request.choices === 1 && config.routing.stream.resume
      if (resumable) request.json.return_token_ids = true
      const forward = async () => {
        const response = await proxy(c, {
          path,
          method: 'POST',
          body: request.json,
          model: served?.model,
          stream: { keepUsageEvent: request.clientIncludeUsage, keepTokenIds: request.clientTokenIds, resumable },
        })
        if (served && lifecycle.record.region) metrics.routing.served({ model: served.alias ?? served.model, version: served.model, region: lifecycle.record.region })
        if (served?.alias) response.headers.set('x-switchyard-model-version', served.model)
        return response
      }
      if (!cache) return forward()
      const variant = `${request.clientIncludeUsage ? 'usage' : ''}${request.clientTokenIds ? ':ids' : ''}`
      // Encoder answers depend only on the input (no sampling): cached whatever the body says about temperature.
      const deterministic = route === 'embeddings' || route === 'predict' ? true : undefined
      const response = await cache.handle({ route: path, tenant: c.get('principal').tenant, body: request.json, variant, deterministic, cacheControl: c.req.header('cache-control') }, forward)
      lifecycle.record.cache = (response.headers.get('x-cache') as 'HIT' | 'MISS' | 'BYPASS' | null) ?? undefined
      return response
    })
  }
  generationRoute('completions', '/v1/completions')
  generationRoute('chat', '/v1/chat/completions')
  generationRoute('generate', '/generate')
  generationRoute('embeddings', '/v1/embeddings')
  generationRoute('predict', '/predict')

  const listFromBackend = (c: Context, path: string) => proxy(c, { path, method: 'GET' })
  // The task API's model list (/predict's models and their tasks); a key limited to some models sees only those.
  app.get('/models', ...api, region, async (c) => {
    const response = await listFromBackend(c, '/models')
    if (response.status !== 200) return response
    const list = (await response.json()) as { models: { name: string }[] }
    const allowed = c.get('principal').models
    return c.json({ ...list, models: allowed ? list.models.filter((m) => allowed.includes(m.name)) : list.models })
  })

  app.get('/v1/models', ...api, region, async (c) => {
    const response = await listFromBackend(c, '/v1/models')
    if (response.status !== 200) return response
    const list = (await response.json()) as { object: string; data: ListedModel[] }
    contexts.learn(list.data)
    // Aliases are models too; a key limited to some models sees only those.
    const aliases = Object.keys(config.routing.aliases).filter((name) => !list.data.some((m) => m.id === name))
    const data = [...list.data, ...aliases.map((id) => ({ id, object: 'model', owned_by: 'switchyard', created: 0 }))]
    const allowed = c.get('principal').models
    return c.json({ ...list, data: allowed ? data.filter((m) => allowed.includes(m.id)) : data }, 200, { 'x-switchyard-region': response.headers.get('x-switchyard-region') ?? '', 'x-switchyard-backend': response.headers.get('x-switchyard-backend') ?? '' })
  })

  // The SDKs' models.retrieve; ids may hold slashes (org/name).
  app.get(
    '/v1/models/:id{.+}',
    modelIdPath,
    ...api,
    region,
    retrieveModel({
      aliases: config.routing.aliases,
      forward: (c, id) => proxy(c, { path: `/v1/models/${encodeURIComponent(id)}`, method: 'GET', model: id }),
    }),
  )

  app.get('/status', requireAdmin(adminToken), (c) => c.json(deps.router.status()))

  app.notFound((c) => errorResponse(404, `No route for ${c.req.method} ${new URL(c.req.url).pathname}`, 'not_found'))
  app.onError((error, c) => {
    const lifecycle = c.get('lifecycle')
    if (error instanceof HTTPException) return error.getResponse()
    logger.error({ requestId: lifecycle?.record.requestId, error: String((error as Error)?.message ?? error) }, 'unhandled error')
    return errorResponse(500, 'Internal server error', 'internal_error')
  })
  return app
}

/** The regions to try for this request, in order: the client's header, the edge location, or the gateway's own region, then its fallbacks. */
function regionPreference(header: string, router: Router, edgeLocation?: (c: Context) => string | undefined): MiddlewareHandler {
  return async (c, next) => {
    const requested = c.req.header(header)
    const preferred = router.preferredRegion(requested, edgeLocation?.(c))
    if (preferred === null) throw gatewayError(400, `Unknown region in ${header}`, 'invalid_region')
    c.set('regionOrder', router.regionOrder(preferred))
    await next()
  }
}

declare module 'hono' {
  interface ContextVariableMap {
    regionOrder: string[]
  }
}

/** 403 when the key may not use the requested model. */
const modelAccess = async (c: Context, next: () => Promise<void>) => {
  requireModelAccess(c.get('principal'), c.get('apiRequest').model)
  c.get('lifecycle').record.model = c.get('apiRequest').model
  await next()
}
