import { randomBytes } from 'node:crypto'
import { type AdmissionOutcome, stateOf, TOKEN_WINDOW_MS, toAdmission } from '../../limits/counters.ts'
import type { Admission, AdmissionRequest } from '../../types.ts'
import type { RedisClient } from '../stores/redis-client.ts'
import { commandTimeoutOf, isReady } from '../stores/redis-client.ts'
import { createRedisClock } from '../stores/redis-clock.ts'
import { preloadScripts } from '../stores/redis-script.ts'
import { ADMIT, SETTLE, UNDO } from './redis-admission-scripts.ts'

/** Most admissions (or slot releases) of one caller in one script call. */
const MAX_BATCH = 256
/** Settles held back while Redis is unreachable, sent when it is back (bounded; past it a slot waits for its expiry). */
const MAX_UNSENT_SETTLES = 10_000

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
export function createRedisAdmission(
  redis: RedisClient,
  options: RedisAdmissionOptions,
): (key: string, want: AdmissionRequest) => Promise<Admission> {
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
      for (const done of batch.done) done()
      return
    }
    const args: (string | number)[] = [batch.slotIds.length, ...batch.slotIds]
    for (const [window, refund] of batch.refunds) args.push(window, refund)
    // Never fails a request. A settle that timed out still runs when Redis answers again; one
    // lost with its connection leaves its slot to expire on its own.
    SETTLE.run(redis, batch.keys, args)
      .catch(() => onFallback('settle'))
      .finally(() => {
        for (const done of batch.done) done()
      })
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
      const args: (string | number)[] = [
        want.requests?.limit ?? 0,
        requestMs,
        want.maxConcurrent ?? -1,
        slotTtlMs,
        want.tokens?.perMinute ?? 0,
        TOKEN_WINDOW_MS,
        await clock.deadline(),
      ]
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
      const [refused, requestsUsed, requestsMsLeft, tokensUsed, tokensMsLeft, tokenWindow] = reply.slice(
        3 + i * 6,
        9 + i * 6,
      )
      const { cost, slotId } = pending
      const requests = want.requests && stateOf(want.requests.limit, requestsUsed, requestsMsLeft)
      const tokens = want.tokens && stateOf(want.tokens.perMinute, tokensUsed, tokensMsLeft)
      let outcome: AdmissionOutcome
      if (refused === 0)
        outcome = { allowed: true, requests, tokens, tokenWindow: cost > 0 && want.tokens ? tokenWindow : undefined }
      else {
        const msLeft =
          refused === 1
            ? requestsMsLeft
            : refused === 2
              ? firstSlotMsLeft
              : cost > want.tokens!.perMinute || tokensMsLeft <= 0
                ? TOKEN_WINDOW_MS
                : tokensMsLeft
        outcome = {
          allowed: false,
          refusedBy: REFUSED_BY[refused]!,
          retryAfterSeconds: Math.max(1, Math.ceil(msLeft / 1000)),
          requests,
          tokens,
        }
      }
      pending.resolve(
        toAdmission(outcome, want, (refund, window) => {
          if (slotId === '' && (refund <= 0 || window === undefined)) return Promise.resolve()
          let settle = settling.get(key)
          if (!settle)
            settling.set(key, (settle = { keys: [keys[1], keys[2]], slotIds: [], refunds: new Map(), done: [] }))
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
