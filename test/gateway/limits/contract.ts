/** RateLimitStore behaviour every implementation must have; run against memory and Redis. */
import assert from 'node:assert/strict'
import { it } from 'node:test'
import type { Admission, RateLimitStore } from '../../../gateway/types.ts'

let serial = 0

/** The token budget's state without reserving anything (a zero-cost admission). */
export async function peekTokens(store: RateLimitStore, key: string, perMinute: number) {
  const answer = await store.admit(key, { tokens: { cost: 0, perMinute } })
  assert.equal(answer.allowed, true)
  return answer.tokens!
}

/** The grant, after checking the admission is one. */
export function granted(answer: Admission) {
  assert.equal(answer.allowed, true, JSON.stringify(answer))
  return answer as Extract<Admission, { allowed: true }>
}
export const uniqueKey = (name: string) => `${name}:${process.pid}:${++serial}`

/**
 * `instances` returns one or more stores sharing the same counters (several gateway instances
 * on one Redis, or the single memory store): concurrent work is spread over all of them.
 */
/** `slotTtlSeconds`: how long the stores hold a slot nobody releases (10 minutes; 15 s on Workers, a renewed lease). */
export function rateLimitContract(
  instances: () => RateLimitStore[],
  { slotTtlSeconds = 600 }: { slotTtlSeconds?: number } = {},
) {
  const one = () => instances()[0]

  it('hitRequest (the per-IP guard) counts requests in a window and refuses past the limit, with retry-after and reset', async () => {
    const store = one()
    const key = uniqueKey('req')
    const remaining: number[] = []
    for (let i = 0; i < 3; i++) {
      const decision = await store.hitRequest(key, 3, 60)
      assert.equal(decision.allowed, true)
      assert.equal(decision.state.limit, 3)
      remaining.push(decision.state.remaining)
    }
    assert.deepEqual(remaining, [2, 1, 0])
    const refused = await store.hitRequest(key, 3, 60)
    assert.equal(refused.allowed, false)
    assert.equal(refused.state.remaining, 0)
    assert.ok(refused.state.resetSeconds > 0 && refused.state.resetSeconds <= 60)
    if (!refused.allowed)
      assert.ok(refused.retryAfterSeconds >= 1 && refused.retryAfterSeconds <= 60, String(refused.retryAfterSeconds))
    // Other keys, and the same key under another window, have their own counters.
    assert.equal((await store.hitRequest(uniqueKey('req'), 3, 60)).allowed, true)
  })

  it('hitRequest allows requests again once the window has passed', async () => {
    const store = one()
    const key = uniqueKey('req-window')
    assert.equal((await store.hitRequest(key, 1, 1)).allowed, true)
    assert.equal((await store.hitRequest(key, 1, 1)).allowed, false)
    const deadline = Date.now() + 5000
    while (!(await store.hitRequest(key, 1, 1)).allowed) {
      assert.ok(Date.now() < deadline, 'window never reset')
      await new Promise((r) => setTimeout(r, 100))
    }
  })

  it('admits requests in a window and refuses past the limit with retry-after, counting nothing refused', async () => {
    const store = one()
    const key = uniqueKey('adm-req')
    const remaining: number[] = []
    for (let i = 0; i < 3; i++)
      remaining.push(granted(await store.admit(key, { requests: { limit: 3, windowSeconds: 60 } })).requests!.remaining)
    assert.deepEqual(remaining, [2, 1, 0])
    const refused = await store.admit(key, { requests: { limit: 3, windowSeconds: 60 } })
    assert.equal(refused.allowed, false)
    if (refused.allowed) return
    assert.equal(refused.refusedBy, 'requests')
    assert.ok(refused.retryAfterSeconds >= 1 && refused.retryAfterSeconds <= 60, String(refused.retryAfterSeconds))
    assert.equal(refused.requests!.remaining, 0)
    assert.ok(refused.requests!.resetSeconds > 0 && refused.requests!.resetSeconds <= 60)
    // Another caller, and the same caller under another window, have their own counters.
    assert.equal((await store.admit(uniqueKey('adm-req'), { requests: { limit: 3, windowSeconds: 60 } })).allowed, true)
    assert.equal((await store.admit(key, { requests: { limit: 3, windowSeconds: 30 } })).allowed, true)
  })

  it('admits again once the request window has passed', async () => {
    const store = one()
    const key = uniqueKey('adm-window')
    assert.equal((await store.admit(key, { requests: { limit: 1, windowSeconds: 1 } })).allowed, true)
    assert.equal((await store.admit(key, { requests: { limit: 1, windowSeconds: 1 } })).allowed, false)
    const deadline = Date.now() + 5000
    while (!(await store.admit(key, { requests: { limit: 1, windowSeconds: 1 } })).allowed) {
      assert.ok(Date.now() < deadline, 'window never reset')
      await new Promise((r) => setTimeout(r, 100))
    }
  })

  it('never grants more than the budget to 50 concurrent reservations, and refusals reserve nothing', async () => {
    const stores = instances()
    for (let round = 0; round < 3; round++) {
      const key = uniqueKey('tok-race')
      const budget = 1000
      const sizes = Array.from({ length: 50 }, (_, i) => 20 + ((i * 37 + round * 11) % 61)) // 20..80, ~2,500 in all
      const answers = await Promise.all(
        sizes.map((cost, i) => stores[i % stores.length].admit(key, { tokens: { cost, perMinute: budget } })),
      )
      const total = sizes.filter((_, i) => answers[i].allowed).reduce((a, b) => a + b, 0)
      assert.ok(total <= budget, `granted ${total} of ${budget}`)
      assert.ok(total > 0)
      assert.ok(
        answers.some((d) => !d.allowed),
        'the budget should run out',
      )
      for (const d of answers) if (!d.allowed) assert.ok(d.refusedBy === 'tokens' && d.retryAfterSeconds >= 1)
      // Whatever was refused was never counted: the counter holds exactly the granted tokens.
      assert.equal((await peekTokens(stores[0], key, budget)).remaining, budget - total)
    }
  })

  it('refunds what a grant did not use when it settles, once', async () => {
    const store = one()
    const key = uniqueKey('tok')
    const first = granted(await store.admit(key, { tokens: { cost: 600, perMinute: 1000 } }))
    assert.equal(first.tokens!.remaining, 400)
    const refused = await store.admit(key, { tokens: { cost: 500, perMinute: 1000 } })
    assert.equal(refused.allowed, false)
    assert.equal(refused.tokens!.remaining, 400, 'a refused reservation reserves nothing')
    await first.settle(350)
    await first.settle(0) // a second settle changes nothing
    assert.equal((await peekTokens(store, key, 1000)).remaining, 650)
    const second = granted(await store.admit(key, { tokens: { cost: 500, perMinute: 1000 } }))
    assert.equal(second.tokens!.remaining, 150)
    // Using more than was reserved refunds nothing and takes nothing more.
    await second.settle(900)
    assert.equal((await peekTokens(store, key, 1000)).remaining, 150)
  })

  it('refuses a reservation bigger than the whole budget without counting it', async () => {
    const store = one()
    const key = uniqueKey('tok-huge')
    const refused = await store.admit(key, { tokens: { cost: 1001, perMinute: 1000 } })
    assert.equal(refused.allowed, false)
    if (!refused.allowed) assert.ok(refused.refusedBy === 'tokens' && refused.retryAfterSeconds >= 1)
    assert.deepEqual(await peekTokens(store, key, 1000), { limit: 1000, remaining: 1000, resetSeconds: 0 })
    assert.equal((await store.admit(key, { tokens: { cost: 1000, perMinute: 1000 } })).allowed, true)
  })

  it('takes all limits or none: a refusal by one leaves the others uncounted', async () => {
    const store = one()
    const key = uniqueKey('all-or-none')
    const want = (cost: number) => ({
      requests: { limit: 2, windowSeconds: 60 },
      maxConcurrent: 1,
      tokens: { cost, perMinute: 100 },
    })
    const refused = await store.admit(key, want(101))
    assert.equal(refused.allowed, false)
    if (!refused.allowed) assert.equal(refused.refusedBy, 'tokens')
    const grant = granted(await store.admit(key, want(60)))
    assert.equal(grant.requests!.remaining, 1, 'the refused request was not counted')
    assert.equal(grant.tokens!.remaining, 40)
    // The slot is held: refused by concurrency, and that refusal takes no request or tokens.
    const busy = await store.admit(key, want(10))
    assert.equal(busy.allowed, false)
    if (!busy.allowed) assert.equal(busy.refusedBy, 'concurrency')
    await grant.settle(60)
    const last = granted(await store.admit(key, want(40)))
    assert.equal(last.requests!.remaining, 0)
    assert.equal(last.tokens!.remaining, 0)
    await last.settle(40)
  })

  it('grants at most max concurrency slots to 50 concurrent admissions; a settle frees exactly one', async () => {
    const stores = instances()
    const key = uniqueKey('conc')
    const answers = await Promise.all(
      Array.from({ length: 50 }, (_, i) => stores[i % stores.length].admit(key, { maxConcurrent: 5 })),
    )
    const held = answers.filter((g) => g.allowed) as Extract<Admission, { allowed: true }>[]
    assert.equal(held.length, 5)
    // Retry-After is when a slot surely frees: the first held slot's expiry, not a made-up second.
    for (const refused of answers.filter((g) => !g.allowed))
      if (!refused.allowed)
        assert.ok(
          refused.refusedBy === 'concurrency' &&
            refused.retryAfterSeconds > slotTtlSeconds * 0.8 &&
            refused.retryAfterSeconds <= slotTtlSeconds,
          JSON.stringify(refused),
        )
    assert.equal((await stores[0].admit(key, { maxConcurrent: 5 })).allowed, false)

    await held[0].settle(0)
    await held[0].settle(0) // a second settle must not free another caller's slot
    const again = granted(await stores[0].admit(key, { maxConcurrent: 5 }))
    assert.equal((await stores[0].admit(key, { maxConcurrent: 5 })).allowed, false)

    for (const grant of [...held.slice(1), again]) await grant.settle(0)
    const after = await Promise.all(Array.from({ length: 5 }, () => stores[0].admit(key, { maxConcurrent: 5 })))
    assert.ok(after.every((g) => g.allowed))
    for (const grant of after) if (grant.allowed) await grant.settle(0)
  })
}
