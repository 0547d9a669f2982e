import { randomBytes } from 'node:crypto'
import type { RedisClient } from '../stores/redis-client.ts'
import { commandTimeoutOf, isReady } from '../stores/redis-client.ts'
import { defineScript, preloadScripts } from '../stores/redis-script.ts'
import type { Admission, AdmissionRequest } from '../types.ts'
import { type AdmissionOutcome, stateOf, TOKEN_WINDOW_MS, toAdmission } from './counters.ts'

// The rules of LimitCounters.admit (limits/counters.ts) as one script, so admissions cost one
// round trip and the three limits are taken all or nothing. The admissions of one caller asked
// for in the same turn of the event loop go as one call, applied in order (under load this
// divides the Redis commands, and Redis's own CPU, by the batch size).
// Windows are hashes {u: used, r: reset time in ms on the Redis clock, so gateway clocks cannot
// disagree}; slots a sorted set of slot id → expiry.
// A call carries a deadline on the Redis clock: past it the script changes nothing and says so.
// A call the client gave up on (command timeout, e.g. Redis stopped for a while) still runs
// when Redis resumes; without the deadline it would take slots and tokens nobody releases.
// KEYS: request window, slots, token window. ARGV: request limit (0: none), request window ms,
// max concurrent (-1: none), slot lifetime ms, tokens per window (0: none), token window ms,
// deadline (ms on the Redis clock, 0: none), then per admission its slot id and token cost.
// Returns {Redis time in ms, 1 if past the deadline (nothing done) else 0, ms until the first
// slot expires (0: no slot held)}, then per admission {refused (0 granted, 1 requests,
// 2 concurrency, 3 tokens), requests used, ms to request reset, tokens used, ms to token reset,
// token window id}.
const ADMIT = defineScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reqLimit, reqMs, maxConc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local slotTtl, tokLimit, tokMs = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local deadline = tonumber(ARGV[7])
if deadline > 0 and now > deadline then return {now, 1, 0} end
local function live(key)
  local w = redis.call('HMGET', key, 'u', 'r')
  local r = tonumber(w[2])
  if r == nil or r <= now then return 0, nil end
  return tonumber(w[1]), r
end
local reqUsed, reqReset, tokUsed, tokReset = 0, nil, 0, nil
if reqLimit > 0 then reqUsed, reqReset = live(KEYS[1]) end
if tokLimit > 0 then tokUsed, tokReset = live(KEYS[3]) end
local reqNew, tokNew = reqReset == nil, tokReset == nil
local reqCounted, tokCounted, full = false, false, false
local held = 0
if maxConc >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  held = redis.call('ZCARD', KEYS[2])
end
local slots, out = {}, {now, 0, 0}
for i = 8, #ARGV, 2 do
  local cost = tonumber(ARGV[i + 1])
  local refused = 0
  if reqLimit > 0 and reqUsed + 1 > reqLimit then refused = 1
  elseif maxConc >= 0 and held >= maxConc then refused, full = 2, true
  elseif tokLimit > 0 and (cost > tokLimit or (cost > 0 and tokUsed + cost > tokLimit)) then refused = 3 end
  if refused == 0 then
    if reqLimit > 0 then
      reqUsed, reqCounted = reqUsed + 1, true
      if reqReset == nil then reqReset = now + reqMs end
    end
    if maxConc >= 0 then
      held = held + 1
      slots[#slots + 1] = now + slotTtl
      slots[#slots + 1] = ARGV[i]
    end
    if tokLimit > 0 and cost > 0 then
      tokUsed, tokCounted = tokUsed + cost, true
      if tokReset == nil then tokReset = now + tokMs end
    end
  end
  out[#out + 1] = refused
  out[#out + 1] = reqUsed
  out[#out + 1] = reqReset and (reqReset - now) or 0
  out[#out + 1] = tokUsed
  out[#out + 1] = tokReset and (tokReset - now) or 0
  out[#out + 1] = tokReset or 0
end
if reqCounted then
  redis.call('HSET', KEYS[1], 'u', reqUsed, 'r', reqReset)
  if reqNew then redis.call('PEXPIREAT', KEYS[1], reqReset) end
end
if #slots > 0 then
  redis.call('ZADD', KEYS[2], unpack(slots))
  redis.call('PEXPIRE', KEYS[2], slotTtl)
end
if full then
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if first[2] then out[3] = tonumber(first[2]) - now end
end
if tokCounted then
  redis.call('HSET', KEYS[3], 'u', tokUsed, 'r', tokReset)
  if tokNew then redis.call('PEXPIREAT', KEYS[3], tokReset) end
end
return out`)

// Undoes the grants of an admission call the client gave up on (timed out), sent right after it
// on the same connection so Redis runs it after that call, whenever that runs. A call that ran
// in time can still time out on the client (its event loop was late to read the reply), and
// the deadline cannot catch that. A held slot is the proof of a grant: it is removed, and that
// admission's tokens and request are given back, unless their window started after the grant.
// KEYS: request window, slots, token window. ARGV: slot lifetime ms, request window ms, token
// window ms, then per admission its slot id and token cost. Returns the number undone.
const UNDO = defineScript(`
local slotTtl, reqMs, tokMs = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local function giveBack(key, points, windowMs, grantedAt)
  local r = tonumber(redis.call('HGET', key, 'r'))
  if r == nil or r - windowMs > grantedAt then return end
  if redis.call('HINCRBY', key, 'u', -points) < 0 then redis.call('HSET', key, 'u', 0) end
end
local undone = 0
for i = 4, #ARGV, 2 do
  local score = redis.call('ZSCORE', KEYS[2], ARGV[i])
  if score then
    redis.call('ZREM', KEYS[2], ARGV[i])
    undone = undone + 1
    local grantedAt = tonumber(score) - slotTtl
    if reqMs > 0 then giveBack(KEYS[1], 1, reqMs, grantedAt) end
    local cost = tonumber(ARGV[i + 1])
    if cost > 0 then giveBack(KEYS[3], cost, tokMs, grantedAt) end
  end
end
return undone`)

// KEYS: slots, token window. ARGV: number of slot ids, the slot ids, then pairs of token window
// and tokens to refund: a refund lands only in the window it was reserved in, never below zero.
const SETTLE = defineScript(`
local n = tonumber(ARGV[1])
if n > 0 then redis.call('ZREM', KEYS[1], unpack(ARGV, 2, n + 1)) end
local window = redis.call('HGET', KEYS[2], 'r')
for i = n + 2, #ARGV, 2 do
  if ARGV[i] == window then
    if redis.call('HINCRBY', KEYS[2], 'u', -tonumber(ARGV[i + 1])) < 0 then redis.call('HSET', KEYS[2], 'u', 0) end
  end
end
return 1`)

/** Most admissions (or slot releases) of one caller in one script call. */
const MAX_BATCH = 256
/** Settles held back while Redis is unreachable, sent when it is back (bounded; past it a slot waits for its expiry). */
const MAX_UNSENT_SETTLES = 10_000

/**
 * The Redis clock as seen from this process: an offset to the local monotonic clock, taken
 * from replies that came back within half of `windowMs` (so its error is under a quarter of it), and
 * taken again after each reconnect (a failover may bring another server's clock). `deadline`
 * answers the Redis time past which a call sent now must change nothing: half the client's
 * command timeout ahead, so an offset error up to that margin still cannot let a call the
 * client gave up on take effect.
 */
function createRedisClock(redis: RedisClient, windowMs: number | undefined) {
  let offset: number | undefined
  let syncing: Promise<void> | undefined
  redis.on('ready', () => (offset = undefined))
  const observe = (redisNow: number, sentAt: number) => {
    const receivedAt = performance.now()
    if (windowMs !== undefined && receivedAt - sentAt <= windowMs / 2) offset = redisNow - (sentAt + receivedAt) / 2
  }
  const sync = async () => {
    const sentAt = performance.now()
    const [seconds, micros] = await redis.time()
    observe(Number(seconds) * 1000 + Math.floor(Number(micros) / 1000), sentAt)
  }
  return {
    observe,
    /** 0 (no deadline) only when the client never gives up on a command. */
    async deadline(): Promise<number> {
      if (windowMs === undefined) return 0
      if (offset === undefined) await (syncing ??= sync().finally(() => (syncing = undefined)))
      if (offset === undefined) throw new Error('redis clock unknown')
      return Math.floor(performance.now() + offset + windowMs / 2)
    },
  }
}

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
 * Per-key admission in Redis. A caller's first admission goes out at once; admissions that
 * come while it is in flight wait and then go together as one script call (no added latency
 * when idle, batches under load). Settles are gathered per turn of the event loop, and a
 * caller's pending settles always go before its next admission, so a request that ended has
 * freed its slot before the next one asks. A caller's keys share a hash tag ({key}) so the
 * scripts work on Redis Cluster.
 */
export function createRedisAdmission(redis: RedisClient, options: RedisAdmissionOptions): (key: string, want: AdmissionRequest) => Promise<Admission> {
  const { prefix, slotTtlMs, fallback, onFallback } = options
  // Slot ids only need to be unique among this caller's slots: instance id + counter.
  const instance = randomBytes(6).toString('base64url')
  let slots = 0
  const timeoutMs = commandTimeoutOf(redis)
  const clock = createRedisClock(redis, timeoutMs)
  preloadScripts(redis, [ADMIT, SETTLE, UNDO], () => onFallback('script_load'))

  interface Pending {
    key: string
    want: AdmissionRequest
    slotId: string
    cost: number
    resolve: (admission: Admission) => void
  }
  interface Settle {
    keys: [string, string]
    slotIds: string[]
    refunds: Map<number, number>
    done: (() => void)[]
  }
  /** Admissions waiting for their caller's call in flight, by caller and limits. */
  const waiting = new Map<string, Pending[]>()
  const inFlight = new Set<string>()
  const settling = new Map<string, Settle>()
  let settleScheduled = false
  // Settles that could not be sent (never written, so sending them later cannot apply one twice).
  let unsent: Settle[] = []
  redis.on('ready', () => {
    const batches = unsent
    unsent = []
    for (const batch of batches) runSettle(batch)
  })

  const runSettle = (batch: Settle) => {
    if (!isReady(redis)) {
      onFallback('settle')
      if (unsent.length < MAX_UNSENT_SETTLES) unsent.push(batch)
      return batch.done.forEach((done) => done())
    }
    const args: (string | number)[] = [batch.slotIds.length, ...batch.slotIds]
    for (const [window, refund] of batch.refunds) args.push(window, refund)
    // Never fails a request. A settle that timed out still runs when Redis answers again; one
    // lost with its connection leaves its slot to expire on its own.
    SETTLE.run(redis, batch.keys, args)
      .catch(() => onFallback('settle'))
      .finally(() => batch.done.forEach((done) => done()))
  }
  const sendSettle = (key: string) => {
    const batch = settling.get(key)
    if (!batch) return
    settling.delete(key)
    runSettle(batch)
  }
  const sendSettles = () => {
    settleScheduled = false
    for (const key of [...settling.keys()]) sendSettle(key)
  }

  const send = (batchKey: string, batch: Pending[]) => {
    inFlight.add(batchKey)
    sendSettle(batch[0].key)
    const chunks: Promise<void>[] = []
    for (let i = 0; i < batch.length; i += MAX_BATCH) chunks.push(admitBatch(batch.slice(i, i + MAX_BATCH)))
    void Promise.all(chunks).then(() => {
      const next = waiting.get(batchKey)
      if (!next) return void inFlight.delete(batchKey)
      waiting.delete(batchKey)
      send(batchKey, next)
    })
  }

  /** Gives back what an admission call the client gave up on may have taken (see UNDO). */
  const undo = (keys: string[], requestMs: number, batch: Pending[]) => {
    if (!isReady(redis)) return onFallback('undo')
    const args: (string | number)[] = [slotTtlMs, requestMs, TOKEN_WINDOW_MS]
    for (const pending of batch) args.push(pending.slotId, pending.cost)
    // A timed-out undo is in the socket behind the admission and still runs after it.
    UNDO.run(redis, keys, args).catch(() => onFallback('undo'))
  }

  /** Runs one script call for the batch and resolves each admission; never rejects. */
  const admitBatch = async (batch: Pending[]) => {
    const { key, want } = batch[0]
    const requestMs = want.requests ? Math.max(1, Math.ceil(want.requests.windowSeconds)) * 1000 : 0
    const base = `${prefix}{${key}}`
    const keys = [`${base}:req:${requestMs / 1000}s`, `${base}:slots`, `${base}:tok`]
    let reply: number[] | undefined
    let sent = false
    try {
      if (!isReady(redis)) throw new Error('redis not ready')
      const args: (string | number)[] = [want.requests?.limit ?? 0, requestMs, want.maxConcurrent ?? -1, slotTtlMs, want.tokens?.perMinute ?? 0, TOKEN_WINDOW_MS, await clock.deadline()]
      for (const pending of batch) args.push(pending.slotId, pending.cost)
      const sentAt = performance.now()
      sent = true
      reply = (await ADMIT.run(redis, keys, args)) as number[]
      clock.observe(reply[0], sentAt)
    } catch {
      // Not sent, or given up on: if it runs later it is past its deadline and changes nothing,
      // and if it ran in time after all, the undo behind it gives its slots back.
      if (sent && want.maxConcurrent !== undefined) undo(keys, requestMs, batch)
    }
    if (!reply || reply[1] === 1) {
      for (const pending of batch) {
        onFallback(reply ? 'admit_late' : 'admit')
        pending.resolve(await fallback(pending.key, pending.want))
      }
      return
    }
    const firstSlotMsLeft = reply[2]
    batch.forEach((pending, i) => {
      const [refused, requestsUsed, requestsMsLeft, tokensUsed, tokensMsLeft, tokenWindow] = reply.slice(3 + i * 6, 9 + i * 6)
      const { cost, slotId } = pending
      const requests = want.requests && stateOf(want.requests.limit, requestsUsed, requestsMsLeft)
      const tokens = want.tokens && stateOf(want.tokens.perMinute, tokensUsed, tokensMsLeft)
      let outcome: AdmissionOutcome
      if (refused === 0) outcome = { allowed: true, requests, tokens, tokenWindow: cost > 0 && want.tokens ? tokenWindow : undefined }
      else {
        const msLeft = refused === 1 ? requestsMsLeft : refused === 2 ? firstSlotMsLeft : cost > want.tokens!.perMinute || tokensMsLeft <= 0 ? TOKEN_WINDOW_MS : tokensMsLeft
        outcome = { allowed: false, refusedBy: REFUSED_BY[refused]!, retryAfterSeconds: Math.max(1, Math.ceil(msLeft / 1000)), requests, tokens }
      }
      pending.resolve(
        toAdmission(outcome, want, (refund, window) => {
          if (slotId === '' && (refund <= 0 || window === undefined)) return Promise.resolve()
          let settle = settling.get(key)
          if (!settle) settling.set(key, (settle = { keys: [keys[1], keys[2]], slotIds: [], refunds: new Map(), done: [] }))
          if (slotId !== '') settle.slotIds.push(slotId)
          if (refund > 0 && window !== undefined) settle.refunds.set(window, (settle.refunds.get(window) ?? 0) + refund)
          const done = new Promise<void>((resolve) => settle.done.push(resolve))
          if (settle.slotIds.length >= MAX_BATCH) sendSettle(key)
          else if (!settleScheduled) {
            settleScheduled = true
            // After this turn's I/O callbacks, so the requests that ended together go together.
            setImmediate(sendSettles)
          }
          return done
        }),
      )
    })
  }

  return (key, want) => {
    if (!isReady(redis)) {
      onFallback('admit')
      return fallback(key, want)
    }
    const slotId = want.maxConcurrent === undefined ? '' : `${instance}:${++slots}`
    const cost = want.tokens ? Math.ceil(want.tokens.cost) : 0
    // One queue per caller and limits (a caller's limits rarely differ between its requests).
    const batchKey = `${key}\u0000${want.requests?.limit}:${want.requests?.windowSeconds}:${want.maxConcurrent}:${want.tokens?.perMinute}`
    return new Promise<Admission>((resolve) => {
      const pending = { key, want, slotId, cost, resolve }
      if (!inFlight.has(batchKey)) return send(batchKey, [pending])
      const queue = waiting.get(batchKey)
      if (queue) queue.push(pending)
      else waiting.set(batchKey, [pending])
    })
  }
}
