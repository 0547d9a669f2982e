import { defineScript } from '../stores/redis-script.ts'

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
export const ADMIT = defineScript(`
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
export const UNDO = defineScript(`
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
export const SETTLE = defineScript(`
local n = tonumber(ARGV[1])
if n > 0 then redis.call('ZREM', KEYS[1], unpack(ARGV, 2, n + 1)) end
local window = redis.call('HGET', KEYS[2], 'r')
for i = n + 2, #ARGV, 2 do
  if ARGV[i] == window then
    if redis.call('HINCRBY', KEYS[2], 'u', -tonumber(ARGV[i + 1])) < 0 then redis.call('HSET', KEYS[2], 'u', 0) end
  end
end
return 1`)
