import { randomBytes } from 'node:crypto'
import type { RedisClient } from '../stores/redis-client.ts'
import { isReady } from '../stores/redis-client.ts'
import { defineScript } from '../stores/redis-script.ts'
import type { Admission, AdmissionRequest } from '../types.ts'
import { type AdmissionOutcome, stateOf, TOKEN_WINDOW_MS, toAdmission } from './counters.ts'

// The rules of LimitCounters.admit (limits/counters.ts) as one script, so a request costs one
// round trip to be admitted and one to settle, and the three limits are taken all or nothing.
// Windows are hashes {u: used, r: reset time in ms on the Redis clock, so gateway clocks cannot
// disagree}; slots a sorted set of slot id → expiry.
// KEYS: request window, slots, token window. ARGV: request limit (0: none), request window ms,
// max concurrent (-1: none), slot id, slot lifetime ms, token cost, tokens per window (0: none),
// token window ms. Returns {refused (0 granted, 1 requests, 2 concurrency, 3 tokens),
// requests used, ms to request reset, tokens used, ms to token reset, token window id}.
const ADMIT = defineScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reqLimit, reqMs = tonumber(ARGV[1]), tonumber(ARGV[2])
local maxConc, slotTtl = tonumber(ARGV[3]), tonumber(ARGV[5])
local cost, tokLimit, tokMs = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local function live(key)
  local w = redis.call('HMGET', key, 'u', 'r')
  local r = tonumber(w[2])
  if r == nil or r <= now then return 0, nil end
  return tonumber(w[1]), r
end
local reqUsed, reqReset, tokUsed, tokReset = 0, nil, 0, nil
if reqLimit > 0 then reqUsed, reqReset = live(KEYS[1]) end
if tokLimit > 0 then tokUsed, tokReset = live(KEYS[3]) end
local refused = 0
if reqLimit > 0 and reqUsed + 1 > reqLimit then refused = 1 end
if refused == 0 and maxConc >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  if redis.call('ZCARD', KEYS[2]) >= maxConc then refused = 2 end
end
if refused == 0 and tokLimit > 0 and (cost > tokLimit or (cost > 0 and tokUsed + cost > tokLimit)) then refused = 3 end
local function count(key, used, reset, points, ms)
  if reset == nil then
    reset = now + ms
    redis.call('HSET', key, 'u', points, 'r', reset)
    redis.call('PEXPIREAT', key, reset)
    return points, reset
  end
  return redis.call('HINCRBY', key, 'u', points), reset
end
if refused == 0 then
  if reqLimit > 0 then reqUsed, reqReset = count(KEYS[1], reqUsed, reqReset, 1, reqMs) end
  if maxConc >= 0 then
    redis.call('ZADD', KEYS[2], now + slotTtl, ARGV[4])
    redis.call('PEXPIRE', KEYS[2], slotTtl)
  end
  if tokLimit > 0 and cost > 0 then tokUsed, tokReset = count(KEYS[3], tokUsed, tokReset, cost, tokMs) end
end
return {refused, reqUsed, reqReset and (reqReset - now) or 0, tokUsed, tokReset and (tokReset - now) or 0, tokReset or 0}`)

// KEYS: slots, token window. ARGV: slot id ('' for none), tokens to refund, the token window
// they were reserved in (a refund never lands in a later window, and never goes below zero).
const SETTLE = defineScript(`
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[1], ARGV[1]) end
local refund = tonumber(ARGV[2])
if refund > 0 and redis.call('HGET', KEYS[2], 'r') == ARGV[3] then
  if redis.call('HINCRBY', KEYS[2], 'u', -refund) < 0 then redis.call('HSET', KEYS[2], 'u', 0) end
end
return 1`)

const REFUSED_BY = [undefined, 'requests', 'concurrency', 'tokens'] as const

export interface RedisAdmissionOptions {
  /** Namespace for every Redis key, e.g. `sy:`. */
  prefix: string
  /** A concurrency slot not released within this long is reclaimed (a gateway that crashed mid-request). */
  slotTtlMs: number
  /** Answers while Redis is unreachable (counters in this process). */
  fallback: (key: string, want: AdmissionRequest) => Promise<Admission>
  /** Called for each operation that fell back or failed. */
  onFallback: (operation: string) => void
}

/**
 * Per-key admission in Redis: one script call to admit, one to settle. A caller's keys share a
 * hash tag ({key}) so both scripts work on Redis Cluster.
 */
export function createRedisAdmission(redis: RedisClient, options: RedisAdmissionOptions): (key: string, want: AdmissionRequest) => Promise<Admission> {
  const { prefix, slotTtlMs, fallback, onFallback } = options
  // Slot ids only need to be unique among this caller's slots: instance id + counter.
  const instance = randomBytes(6).toString('base64url')
  let slots = 0
  return async (key, want) => {
    if (!isReady(redis)) {
      onFallback('admit')
      return fallback(key, want)
    }
    const requestMs = want.requests ? Math.max(1, Math.ceil(want.requests.windowSeconds)) * 1000 : 0
    const base = `${prefix}{${key}}`
    const keys = [`${base}:req:${requestMs / 1000}s`, `${base}:slots`, `${base}:tok`]
    const slotId = want.maxConcurrent === undefined ? '' : `${instance}:${++slots}`
    const cost = want.tokens ? Math.ceil(want.tokens.cost) : 0
    let reply: number[]
    try {
      reply = (await ADMIT.run(redis, keys, [want.requests?.limit ?? 0, requestMs, want.maxConcurrent ?? -1, slotId, slotTtlMs, cost, want.tokens?.perMinute ?? 0, TOKEN_WINDOW_MS])) as number[]
    } catch {
      // If the script ran but its reply was lost, its slot expires after slotTtlMs.
      onFallback('admit')
      return fallback(key, want)
    }
    const [refused, requestsUsed, requestsMsLeft, tokensUsed, tokensMsLeft, tokenWindow] = reply
    const requests = want.requests && stateOf(want.requests.limit, requestsUsed, requestsMsLeft)
    const tokens = want.tokens && stateOf(want.tokens.perMinute, tokensUsed, tokensMsLeft)
    let outcome: AdmissionOutcome
    if (refused === 0) outcome = { allowed: true, requests, tokens, tokenWindow: cost > 0 && want.tokens ? tokenWindow : undefined }
    else {
      const msLeft = refused === 1 ? requestsMsLeft : refused === 2 ? 1000 : cost > want.tokens!.perMinute || tokensMsLeft <= 0 ? TOKEN_WINDOW_MS : tokensMsLeft
      outcome = { allowed: false, refusedBy: REFUSED_BY[refused]!, retryAfterSeconds: Math.max(1, Math.ceil(msLeft / 1000)), requests, tokens }
    }
    return toAdmission(outcome, want, async (refund, window) => {
      if (slotId === '' && refund <= 0) return
      // Never fails the request: a slot that cannot be removed now expires on its own.
      await SETTLE.run(redis, [keys[1], keys[2]], [slotId, refund, window ?? 0]).catch(() => onFallback('settle'))
    })
  }
}
