import { Cluster, Redis } from 'ioredis'
import type { GatewayMetrics, Logger } from '../../types.ts'

/** A connection to a single node, a Sentinel-managed master, or a Cluster. */
export type RedisClient = Redis | Cluster
/** Alias kept for modules written against the earlier name. */
export type RedisConnection = RedisClient

/** True while the client can send commands (a command sent otherwise fails at once). */
export function isReady(redis: RedisClient): boolean {
  return redis.status === 'ready'
}

/**
 * Resolves true once the client is ready, false after `timeoutMs` (Redis down: the gateway
 * starts on its in-memory fallbacks). Without this wait a freshly started gateway would refuse
 * its first store commands, which fail at once while the connection is still being made.
 */
export function waitForReady(redis: RedisClient, timeoutMs: number): Promise<boolean> {
  if (isReady(redis)) return Promise.resolve(true)
  return new Promise((resolve) => {
    const done = (ready: boolean) => {
      clearTimeout(timer)
      redis.off('ready', onReady)
      resolve(ready)
    }
    const onReady = () => done(true)
    const timer = setTimeout(() => done(false), timeoutMs)
    redis.on('ready', onReady)
  })
}

/** How long the client waits for a reply before failing a command (ms); undefined: for ever. */
export function commandTimeoutOf(redis: RedisClient): number | undefined {
  return redis instanceof Cluster ? redis.options.redisOptions?.commandTimeout : redis.options.commandTimeout
}

export interface RedisHostPort {
  host: string
  port: number
}

export interface RedisConnectionOptions {
  /** Single node, e.g. `redis://127.0.0.1:6379` (the default when nothing else is given). */
  url?: string
  /** Sentinel mode: the sentinels to ask, and the master group name (`sentinelName`). */
  sentinels?: RedisHostPort[]
  sentinelName?: string
  /** Cluster mode: any reachable subset of the cluster's nodes. */
  clusterNodes?: RedisHostPort[]
  /** A command without a reply after this long fails (ms). Default 300. */
  commandTimeoutMs?: number
  /** Reconnect delay cap (ms); reconnecting never stops. Default 2000. */
  maxBackoffMs?: number
  /** TCP connect timeout (ms). Default 2000. */
  connectTimeoutMs?: number
}

/** What the stores report to: only the store-health parts of the gateway metrics. */
export interface StoreHooks {
  logger: Logger
  metrics: Pick<GatewayMetrics, 'storeError' | 'storeUp'>
}

/**
 * Creates an ioredis client that fails fast while Redis is down (no offline queue, one retry,
 * short command timeout) so callers can fall back to memory instead of stalling requests, and
 * keeps reconnecting forever with capped backoff so the shared store comes back on its own.
 */
export function createRedis(options: RedisConnectionOptions, hooks: StoreHooks): RedisClient {
  const commandTimeout = options.commandTimeoutMs ?? 300
  const maxBackoffMs = options.maxBackoffMs ?? 2000
  const backoff = (attempt: number) => Math.min(50 * 2 ** Math.min(attempt, 10), maxBackoffMs)
  const failFast = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout,
    connectTimeout: options.connectTimeoutMs ?? 2000,
    // Off: the limits batch their own calls (node/limits/redis-admission.ts), and ioredis's
    // per-tick pipeline objects cost more than they saved.
    enableAutoPipelining: false,
  }

  let client: RedisClient
  if (options.clusterNodes?.length) {
    client = new Cluster(options.clusterNodes, {
      enableOfflineQueue: false,
      clusterRetryStrategy: backoff,
      // Without this a restarted node stays disconnected until a MOVED error refreshes the topology.
      clusterNodeRetryStrategy: backoff,
      redisOptions: {
        maxRetriesPerRequest: failFast.maxRetriesPerRequest,
        commandTimeout,
        connectTimeout: failFast.connectTimeout,
      },
    })
  } else if (options.sentinels?.length) {
    if (!options.sentinelName) throw new Error('createRedis: sentinelName is required with sentinels')
    client = new Redis({
      ...failFast,
      sentinels: options.sentinels,
      name: options.sentinelName,
      retryStrategy: backoff,
      sentinelRetryStrategy: backoff,
      sentinelCommandTimeout: Math.max(commandTimeout, 500),
    })
  } else {
    client = new Redis(options.url ?? 'redis://127.0.0.1:6379', { ...failFast, retryStrategy: backoff })
  }
  watchHealth(client, hooks)
  return client
}

/** Logs an outage once when it starts and once when it ends, however many errors come between. */
function watchHealth(client: RedisClient, { logger, metrics }: StoreHooks): void {
  let state: 'connecting' | 'up' | 'down' = 'connecting'
  const markDown = (reason: string) => {
    if (state === 'down') return
    state = 'down'
    metrics.storeUp(false)
    logger.warn({ store: 'redis', reason }, 'redis unavailable; using in-memory fallbacks until it is back')
  }
  // Every failed reconnect emits 'error'; the handler must exist or Node treats it as unhandled.
  client.on('error', (err: Error) => {
    metrics.storeError('redis', 'connection')
    markDown(err.message)
  })
  // Emitted only for unexpected closes (not quit/disconnect), possibly before any 'error'.
  client.on('reconnecting', () => {
    if (state === 'up') markDown('connection lost')
  })
  client.on('ready', () => {
    if (state === 'down') logger.info({ store: 'redis' }, 'redis available again')
    else if (state === 'connecting') logger.info({ store: 'redis' }, 'redis connected')
    state = 'up'
    metrics.storeUp(true)
  })
}
