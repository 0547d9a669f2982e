import { randomUUID } from 'node:crypto'
import { isReady, type RedisClient } from '../stores/redis-client.ts'
import { defineScript } from '../stores/redis-script.ts'
import type { GatewayMetrics } from '../types.ts'

export type SlotGrant = { allowed: true; release: () => Promise<void> } | { allowed: false }

/** Requests in flight per key. rate-limiter-flexible has no such primitive, hence this module. */
export interface ConcurrencySlots {
  acquire(key: string, max: number): Promise<SlotGrant>
}

/** Counts in a Map: for one instance, and the fallback while Redis is down. */
export function createMemorySlots(): ConcurrencySlots {
  const inFlight = new Map<string, number>()
  return {
    async acquire(key, max) {
      const count = inFlight.get(key) ?? 0
      if (count >= max) return { allowed: false }
      inFlight.set(key, count + 1)
      return {
        allowed: true,
        release: once(async () => {
          const left = (inFlight.get(key) ?? 1) - 1
          if (left > 0) inFlight.set(key, left)
          else inFlight.delete(key)
        }),
      }
    },
  }
}

// KEYS: the key's sorted set (member = slot id, score = expiry in ms, on the Redis clock so
// gateway clocks cannot disagree). ARGV: max, slot id, slot lifetime ms. 1 = granted.
const ACQUIRE_SLOT = defineScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`)

export interface RedisSlotsOptions {
  /** Namespace, e.g. `sy:`; slots live under `<prefix>slots:<key>`. */
  prefix: string
  /** A slot not released within this long is reclaimed (a gateway that crashed mid-request). */
  slotTtlMs: number
  /** Answers while Redis is unreachable; slots taken there are released there. */
  fallback: ConcurrencySlots
  metrics: Pick<GatewayMetrics, 'storeError'>
}

/** Slots shared by all instances: one Lua script per acquire (check and add atomically), ZREM to release. */
export function createRedisSlots(redis: RedisClient, options: RedisSlotsOptions): ConcurrencySlots {
  const { prefix, slotTtlMs, fallback, metrics } = options
  return {
    async acquire(key, max) {
      if (max <= 0) return { allowed: false }
      const set = `${prefix}slots:${key}`
      const slotId = randomUUID()
      try {
        if (!isReady(redis)) throw new Error('redis not ready')
        const granted = await ACQUIRE_SLOT.run(redis, [set], [max, slotId, slotTtlMs])
        if (granted !== 1) return { allowed: false }
      } catch {
        // If the script ran but its reply was lost, that Redis slot expires after slotTtlMs.
        metrics.storeError('redis', 'acquire_slot')
        return fallback.acquire(key, max)
      }
      return {
        allowed: true,
        release: once(async () => {
          // Never fails the request: a slot that cannot be removed now expires on its own.
          await redis.zrem(set, slotId).catch(() => metrics.storeError('redis', 'release_slot'))
        }),
      }
    },
  }
}

/** Makes a release idempotent: a second call must not free someone else's slot. */
function once(release: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined
  return () => (done ??= release())
}
