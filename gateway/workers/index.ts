/**
 * The Cloudflare Workers entry: the same gateway app as the Node entry (gateway/node/server.ts),
 * wired to Workers parts. Limits and admin-created keys live in Durable Objects, the response
 * cache in KV, metrics go to Analytics Engine, logs to the console. wrangler.toml binds them.
 *
 * workerd allows no I/O or timers at global scope, and a timer set while serving a request
 * dies when that request ends. So the gateway is built in the first request an isolate serves
 * and kept for the isolate's life, and its router runs without timers: each request brings
 * the breakers up to date and, when a round of health checks is due, runs it in the
 * background of that request (ctx.waitUntil).
 */
import type { Context, Hono } from 'hono'
import { createGatewayApp } from '../app.ts'
import { ConfigError } from '../config/parse.ts'
import { startupWarnings } from '../config/startup-warnings.ts'
import { errorResponse } from '../pipeline/errors.ts'
import { watchRequestSignal } from '../pipeline/watch-client.ts'
import { createBackendTokenSigner } from '../proxy/backend-token.ts'
import { Router } from '../routing/router.ts'
import { MemoryCacheStore } from '../stores/memory.ts'
import { fetchUpstream } from '../upstream/upstream.ts'
import { readWorkerSettings, type WorkerEnv } from './config.ts'
import { keepAlive, withRequestContext } from './keep-alive.ts'
import { DurableObjectKeyStore } from './key-store.ts'
import { KvCacheStore } from './kv-cache.ts'
import { createConsoleLogger } from './logger.ts'
import { createWorkersMetrics } from './metrics.ts'
import { createDurableObjectRateLimits } from './rate-limits.ts'
import type { ExecutionContext, IncomingCf } from './runtime.ts'

export { ApiKeyIndexObject, ApiKeyObject } from './key-objects.ts'
export { RateLimiterObject } from './rate-limit-object.ts'

interface Gateway {
  app: Hono
  router: Router
}

/** This isolate's gateway, or why it could not be built (the config does not change within an isolate). */
let built: Gateway | { error: string } | undefined

function build(env: WorkerEnv): Gateway {
  const { config, signingKey } = readWorkerSettings(env)
  const logger = createConsoleLogger(config.env.LOG_LEVEL)
  const metrics = createWorkersMetrics(env.METRICS)
  // Once per isolate, as the Node entry does once per process.
  for (const warning of startupWarnings(config)) logger.warn({}, warning)
  const signer = signingKey ? createBackendTokenSigner({ privateJwk: signingKey }) : undefined
  if (!signer)
    logger.warn(
      {},
      'no BACKEND_SIGNING_KEY: requests to backends carry no gateway token (backends must then run without GATEWAY_VERIFY_KEYS_FILE)',
    )
  if (!env.RESPONSE_CACHE && config.cache.enabled)
    logger.warn({}, 'no RESPONSE_CACHE binding: the response cache is per isolate, in memory')
  const router = new Router(config.routing, {
    metrics: metrics.routing,
    logger,
    upstream: fetchUpstream,
    headers: signer ? async () => ({ authorization: `Bearer ${await signer.token()}` }) : undefined,
    timers: false,
  })
  const app = createGatewayApp({
    config,
    logger,
    metrics,
    keyStore: new DurableObjectKeyStore(env.API_KEY_INDEX, env.API_KEYS),
    rateLimits: createDurableObjectRateLimits(env.RATE_LIMITER),
    cacheStore: env.RESPONSE_CACHE ? new KvCacheStore(env.RESPONSE_CACHE) : new MemoryCacheStore(),
    upstream: fetchUpstream,
    router,
    // Set by Cloudflare's edge for every request; a client cannot forge it.
    peerAddress: (c) => c.req.header('cf-connecting-ip'),
    edgeLocation: edgeLocation(config.routing.edgeRegions),
    backendToken: signer && (() => signer.token()),
    // workerd aborts request.signal when the client leaves (enable_request_signal) and then
    // drops the response stream without cancelling it: the request is ended from the abort,
    // inside its own context so what it settles is kept alive with ctx.waitUntil.
    watchClient: (c, onGone) => watchRequestSignal(c, () => withRequestContext(c.executionCtx, onGone)),
    background: (work) => void keepAlive(work),
    // A coalesced follower would read the first request's upstream, which workerd tears down
    // with that request.
    coalesceIdenticalRequests: false,
  })
  return { app, router }
}

/** The data center if edgeRegions names it (e.g. `FRA`), else the client's country (e.g. `DE`). */
function edgeLocation(edgeRegions: Record<string, string>) {
  return (c: Context): string | undefined => {
    const cf = (c.req.raw as Request & { cf?: IncomingCf }).cf
    if (cf?.colo && Object.hasOwn(edgeRegions, cf.colo)) return cf.colo
    return cf?.country
  }
}

function gatewayFor(env: WorkerEnv): Gateway | { error: string } {
  try {
    return build(env)
  } catch (error) {
    const message = error instanceof ConfigError ? error.message : String((error as Error)?.stack ?? error)
    createConsoleLogger('info').error(
      { error: message },
      'gateway configuration invalid; every request gets 500 until it is fixed',
    )
    return { error: message }
  }
}

export default {
  async fetch(request: Request, env: WorkerEnv, ctx: ExecutionContext): Promise<Response> {
    const gateway = (built ??= gatewayFor(env))
    // The reason is in the log; clients learn only that the gateway is misconfigured.
    if ('error' in gateway)
      return errorResponse(500, 'The gateway is misconfigured; see its logs', 'gateway_misconfigured')
    return withRequestContext(ctx, () => {
      const checks = gateway.router.maintain()
      if (checks) ctx.waitUntil(checks)
      return gateway.app.fetch(request, env, ctx)
    })
  },
}
