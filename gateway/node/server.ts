import { createHash } from 'node:crypto'
import { lookup } from 'node:dns/promises'
import type { EventEmitter } from 'node:events'
import { readFileSync } from 'node:fs'
import { createSecureServer } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { type ServerType, serve } from '@hono/node-server'
import { getConnInfo } from '@hono/node-server/conninfo'
import { errorMessage } from '../../lib/error-message.ts'
import { listenError } from '../../lib/listen-error.ts'
import { createLogger } from '../../lib/logger.ts'
import { createGatewayApp, type GatewayDeps } from '../app.ts'
import type { GatewayConfig } from '../config/schema.ts'
import { startupWarnings } from '../config/startup-warnings.ts'
import { createMemoryRateLimits } from '../limits/rate-limit-store.ts'
import { createBackendTokenSigner } from '../proxy/backend-token.ts'
import { startDnsDiscovery } from '../routing/discovery.ts'
import { Router } from '../routing/router.ts'
import { MemoryCacheStore, MemoryKeyStore } from '../stores/memory.ts'
import type { Logger } from '../types.ts'
import { loadGatewayConfig } from './config/load.ts'
import { watchConfigFile } from './config/watch.ts'
import { createRedisRateLimits } from './limits/redis-rate-limits.ts'
import { createPromMetrics } from './prom-metrics.ts'
import { trackServerConnections } from './server-drain.ts'
import { loadPrivateJwk } from './signing-key.ts'
import { RedisCacheStore, RedisKeyStore } from './stores/redis.ts'
import { createRedis, waitForReady } from './stores/redis-client.ts'
import { createNodeUpstream } from './upstream.ts'

/**
 * How long a client may take to send its headers and its whole request over HTTP/1.1: a slow
 * client is answered 408 and closed, so it cannot hold a connection and a body buffer for long.
 * Node enforces both when it sweeps its connections, so the sweep runs often enough not to
 * overshoot them by much.
 */
function receiveTimeouts(server: GatewayConfig['server']) {
  return {
    headersTimeout: server.headersTimeoutMs,
    requestTimeout: server.receiveTimeoutMs,
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(server.headersTimeoutMs / 4))),
  }
}

/** Start-up waits this long for Redis (the client's connect timeout) before serving without it. */
const REDIS_STARTUP_WAIT_MS = 2000

export interface RunningGateway {
  port: number
  metricsPort?: number
  close(): Promise<void>
}

/**
 * Wires the Node parts (pino, prom-client, Redis or memory stores, the undici upstream, TLS)
 * around the runtime-neutral app and starts listening.
 */
export async function startNodeGateway(
  config: GatewayConfig,
  options: { logger?: Logger } = {},
): Promise<RunningGateway> {
  const env = config.env
  const logger = options.logger ?? pinoGatewayLogger(config)
  const metrics = createPromMetrics({ keyIdLabels: config.metrics.keyIdLabels })
  for (const warning of startupWarnings(config)) logger.warn({}, warning)

  const stores = await connectStores(config, { logger, metrics })
  const upstream = createNodeUpstream()
  const backendToken = await loadBackendToken(config, logger)
  const backendHeaders = backendToken
    ? async () => ({ authorization: `Bearer ${await backendToken.token()}` })
    : undefined
  const router = new Router(config.routing, { metrics: metrics.routing, logger, upstream, headers: backendHeaders })
  let routing = config.routing
  const discovery = startDnsDiscovery({
    routing: () => routing,
    lookup: async (name) => (await lookup(name, { all: true })).map((a) => a.address),
    onChange: (resolved) => router.setDiscovered(resolved),
    logger,
  })
  await discovery.refresh()
  let draining = false
  const deps: Omit<GatewayDeps, 'config'> = {
    isDraining: () => draining,
    logger,
    metrics,
    keyStore: stores.keyStore,
    rateLimits: stores.rateLimits,
    cacheStore: stores.cacheStore,
    upstream,
    router,
    peerAddress: (c) => getConnInfo(c).remote.address,
    hashKey: (key) => createHash('sha256').update(key).digest('hex'),
    backendToken: backendToken && (() => backendToken.token()),
    afterResponse: (run) => void setImmediate(run),
    watchClient: watchClientByCloseEvent,
  }
  let app = createGatewayApp({ ...deps, config })
  // A reload builds a new app around the same stores and router: requests in flight finish on
  // the old one, the next ones use the new one, and node state (health, breakers) carries over.
  const stopWatching = watchConfigFile(env.GATEWAY_CONFIG, (reason) => {
    let next: GatewayConfig
    try {
      next = loadGatewayConfig()
    } catch (error) {
      logger.error(
        { reason, error: errorMessage(error) },
        'configuration reload rejected; the running configuration stays',
      )
      return
    }
    routing = next.routing
    router.update(next.routing)
    void discovery.refresh()
    app = createGatewayApp({ ...deps, config: next })
    logger.info(
      { reason, regions: next.routing.regions.map((r) => r.name), nodes: router.nodes().length },
      'configuration reloaded',
    )
  })

  /** Stops the background work started above (start-up failed). */
  const stopAll = () => {
    stopWatching()
    discovery.stop()
    router.close()
    stores.redis?.disconnect()
  }
  const tls =
    env.TLS_CERT_FILE && env.TLS_KEY_FILE
      ? { cert: readFileSync(env.TLS_CERT_FILE), key: readFileSync(env.TLS_KEY_FILE) }
      : null
  const server = await listenGateway(config, tls, (request, env) => app.fetch(request, env)).catch((error) => {
    stopAll()
    throw error
  })
  const serverDrain = trackServerConnections(server)
  const port = (server.address() as AddressInfo).port
  const metricsServer = env.METRICS_PORT
    ? await listenMetrics(config, metrics).catch((error) => {
        server.close()
        stopAll()
        throw error
      })
    : undefined
  logger.info(
    {
      host: env.HOST,
      port,
      tls: Boolean(tls),
      region: config.routing.region,
      nodes: router.nodes().map((n) => `${n.region}/${n.id}`),
      redis: Boolean(stores.redis),
      metricsPort: env.METRICS_PORT || undefined,
    },
    'gateway listening',
  )
  return {
    port,
    metricsPort: env.METRICS_PORT || undefined,
    async close() {
      draining = true
      logger.info({}, 'gateway stopping: not ready, finishing requests in flight')
      stopWatching()
      discovery.stop()
      // Requests still in flight may need a retry or a stream continuation: the router (breakers,
      // health checks) stays up until the server has finished them (see server-drain.ts).
      const { cutConnections } = await serverDrain.drain(config.server.drainTimeoutMs)
      if (cutConnections > 0)
        logger.warn(
          { cutConnections, drainTimeoutMs: config.server.drainTimeoutMs },
          'drain timeout reached: connections still busy were closed',
        )
      router.close()
      metricsServer?.close()
      stores.redis?.disconnect()
      logger.info({}, 'gateway stopped')
    },
  }
}

type PromMetrics = ReturnType<typeof createPromMetrics>

/** The gateway's pino logger behind the runtime-neutral Logger interface. */
function pinoGatewayLogger(config: GatewayConfig): Logger {
  const pino = createLogger({
    service: 'switchyard-gateway',
    level: config.env.LOG_LEVEL,
    format: config.env.LOG_FORMAT,
  })
  return {
    info: (fields, message) => pino.info(fields, message),
    warn: (fields, message) => pino.warn(fields, message),
    error: (fields, message) => pino.error(fields, message),
  }
}

/** Redis-backed stores when a Redis is configured (waited for, bounded), else in-memory ones. */
async function connectStores(config: GatewayConfig, hooks: { logger: Logger; metrics: PromMetrics }) {
  const env = config.env
  const { logger, metrics } = hooks
  if (!(env.REDIS_URL || env.REDIS_SENTINELS || env.REDIS_CLUSTER_NODES)) {
    logger.warn({}, 'no REDIS_URL: limits, keys and cache are in memory, for ONE gateway instance only')
    return {
      redis: null,
      keyStore: new MemoryKeyStore(),
      rateLimits: createMemoryRateLimits(),
      cacheStore: new MemoryCacheStore(),
    }
  }
  const redis = createRedis(
    {
      url: env.REDIS_URL,
      sentinels: env.REDIS_SENTINELS,
      sentinelName: env.REDIS_SENTINEL_NAME,
      clusterNodes: env.REDIS_CLUSTER_NODES,
    },
    hooks,
  )
  // Bounded: a Redis that is down at start-up is logged by the client and served around.
  await waitForReady(redis, REDIS_STARTUP_WAIT_MS)
  return {
    redis,
    keyStore: new RedisKeyStore(redis),
    rateLimits: createRedisRateLimits(redis, { logger, metrics }),
    cacheStore: new RedisCacheStore(redis, { metrics }),
  }
}

/** The signer of gateway → backend tokens, from BACKEND_SIGNING_KEY_FILE (warned about when missing). */
async function loadBackendToken(config: GatewayConfig, logger: Logger) {
  const file = config.env.BACKEND_SIGNING_KEY_FILE
  if (file) return createBackendTokenSigner({ privateJwk: await loadPrivateJwk(file) })
  logger.warn(
    {},
    'no BACKEND_SIGNING_KEY_FILE: requests to backends carry no gateway token (backends must then run without GATEWAY_VERIFY_KEYS_FILE)',
  )
  return undefined
}

/** The response's close event (cheap) rather than an AbortSignal listener (costly on Node). */
const watchClientByCloseEvent: GatewayDeps['watchClient'] = (c, onGone) => {
  // HTTP/1 and HTTP/2 (TLS) responses alike.
  const { incoming, outgoing } = c.env as {
    incoming: { socket?: { destroyed: boolean } }
    outgoing: EventEmitter & { writableEnded: boolean }
  }
  if (incoming.socket?.destroyed) onGone()
  const closed = () => {
    if (!outgoing.writableEnded) onGone()
  }
  outgoing.once('close', closed)
  return () => outgoing.off('close', closed)
}

/**
 * Listens on HOST:PORT: HTTPS (HTTP/2 with HTTP/1.1 fallback) when a certificate is configured.
 * A port in use (or not ours to bind) rejects with a ListenError the entry reports in one line.
 */
function listenGateway(
  config: GatewayConfig,
  tls: { cert: Buffer; key: Buffer } | null,
  fetch: (request: Request, env: unknown) => Response | Promise<Response>,
): Promise<ServerType> {
  const env = config.env
  return new Promise((resolve, reject) => {
    const s = serve(
      {
        fetch,
        hostname: env.HOST,
        port: env.PORT,
        ...(tls
          ? { createServer: createSecureServer, serverOptions: { ...tls, allowHTTP1: true } }
          : { serverOptions: { maxHeaderSize: config.server.maxHeaderBytes, ...receiveTimeouts(config.server) } }),
      },
      () => {
        s.off('error', failed)
        resolve(s)
      },
    )
    // The TLS server takes them as properties, for its HTTP/1.1 connections; set before it starts listening.
    if (tls) Object.assign(s, receiveTimeouts(config.server))
    const failed = (error: unknown) => reject(listenError(error, env.PORT, 'PORT'))
    s.once('error', failed)
  })
}

/** The metrics-only listener on METRICS_PORT (no authentication: keep that port private). */
function listenMetrics(config: GatewayConfig, metrics: PromMetrics): Promise<ServerType> {
  const env = config.env
  return new Promise((resolve, reject) => {
    const s = serve(
      {
        hostname: env.HOST,
        port: env.METRICS_PORT,
        fetch: async () => {
          const rendered = await metrics.render()
          return new Response(rendered!.body, { headers: { 'content-type': rendered!.contentType } })
        },
      },
      () => {
        s.off('error', failed)
        resolve(s)
      },
    )
    const failed = (error: unknown) => reject(listenError(error, env.METRICS_PORT!, 'METRICS_PORT'))
    s.once('error', failed)
  })
}
