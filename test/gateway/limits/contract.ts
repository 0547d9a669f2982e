/** RateLimitStore behaviour every implementation must have; run against memory and Redis. */
import assert from 'node:assert/strict'
import { it } from 'node:test'
import type { RateLimitStore } from '../../../gateway/types.ts'

let serial = 0
export const uniqueKey = (name: string) => `${name}:${process.pid}:${++serial}`

/**
 * `instances` returns one or more stores sharing the same counters (several gateway instances
 * on one Redis, or the single memory store): concurrent work is spread over all of them.
 */
export function rateLimitContract(instances: () => RateLimitStore[]) {
  const one = () => instances()[0]

  it('counts requests in a window and refuses past the limit, with retry-after and reset', async () => {
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
    if (!refused.allowed) assert.ok(refused.retryAfterSeconds >= 1 && refused.retryAfterSeconds <= 60, String(refused.retryAfterSeconds))
    // Other keys, and the same key under another window, have their own counters.
    assert.equal((await store.hitRequest(uniqueKey('req'), 3, 60)).allowed, true)
  })

  it('allows requests again once the window has passed', async () => {
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

  it('never grants more than the budget to 50 concurrent reservations, and refusals reserve nothing', async () => {
    const stores = instances()
    for (let round = 0; round < 3; round++) {
      const key = uniqueKey('tok-race')
      const budget = 1000
      const sizes = Array.from({ length: 50 }, (_, i) => 20 + ((i * 37 + round * 11) % 61)) // 20..80, ~2,500 in all
      const decisions = await Promise.all(sizes.map((tokens, i) => stores[i % stores.length].reserveTokens(key, tokens, budget)))
      const granted = sizes.filter((_, i) => decisions[i].allowed).reduce((a, b) => a + b, 0)
      assert.ok(granted <= budget, `granted ${granted} of ${budget}`)
      assert.ok(granted > 0)
      assert.ok(decisions.some((d) => !d.allowed), 'the budget should run out')
      for (const d of decisions) if (!d.allowed) assert.ok(d.retryAfterSeconds >= 1)
      // Whatever was refused was given back: the counter holds exactly the granted tokens.
      const state = await stores[0].peekTokens(key, budget)
      assert.equal(state.remaining, budget - granted)
    }
  })

  it('reserves and refunds tokens', async () => {
    const store = one()
    const key = uniqueKey('tok')
    const first = await store.reserveTokens(key, 600, 1000)
    assert.equal(first.allowed, true)
    assert.equal(first.state.remaining, 400)
    const refused = await store.reserveTokens(key, 500, 1000)
    assert.equal(refused.allowed, false)
    assert.equal(refused.state.remaining, 400, 'a refused reservation reserves nothing')
    await store.refundTokens(key, 250, 1000)
    assert.equal((await store.peekTokens(key, 1000)).remaining, 650)
    assert.equal((await store.reserveTokens(key, 500, 1000)).allowed, true)
    assert.equal((await store.peekTokens(key, 1000)).remaining, 150)
  })

  it('a refund never raises the budget above the limit, even into an empty window', async () => {
    const store = one()
    const key = uniqueKey('tok-refund')
    await store.refundTokens(key, 500, 1000)
    assert.equal((await store.peekTokens(key, 1000)).remaining, 1000)
    assert.equal((await store.reserveTokens(key, 1000, 1000)).allowed, true)
    assert.equal((await store.reserveTokens(key, 1, 1000)).allowed, false)
    await store.refundTokens(key, 5000, 1000)
    assert.equal((await store.peekTokens(key, 1000)).remaining, 1000)
    assert.equal((await store.reserveTokens(key, 1000, 1000)).allowed, true)
    assert.equal((await store.reserveTokens(key, 1, 1000)).allowed, false)
  })

  it('refuses a reservation bigger than the whole budget without counting it', async () => {
    const store = one()
    const key = uniqueKey('tok-huge')
    const refused = await store.reserveTokens(key, 1001, 1000)
    assert.equal(refused.allowed, false)
    if (!refused.allowed) assert.ok(refused.retryAfterSeconds >= 1)
    assert.deepEqual(await store.peekTokens(key, 1000), { limit: 1000, remaining: 1000, resetSeconds: 0 })
    assert.equal((await store.reserveTokens(key, 1000, 1000)).allowed, true)
  })

  it('peeks without consuming', async () => {
    const store = one()
    const key = uniqueKey('tok-peek')
    await store.reserveTokens(key, 100, 1000)
    const a = await store.peekTokens(key, 1000)
    const b = await store.peekTokens(key, 1000)
    assert.equal(a.remaining, 900)
    assert.equal(b.remaining, 900)
    assert.ok(a.resetSeconds > 0 && a.resetSeconds <= 60)
  })

  it('grants at most max concurrency slots to 50 concurrent acquires; release frees exactly one', async () => {
    const stores = instances()
    const key = uniqueKey('conc')
    const grants = await Promise.all(Array.from({ length: 50 }, (_, i) => stores[i % stores.length].acquireSlot(key, 5)))
    const held = grants.filter((g) => g.allowed)
    assert.equal(held.length, 5)
    assert.equal((await stores[0].acquireSlot(key, 5)).allowed, false)

    const first = held[0] as Extract<(typeof held)[number], { allowed: true }>
    await first.release()
    await first.release() // a second release must not free another caller's slot
    const again = await stores[0].acquireSlot(key, 5)
    assert.equal(again.allowed, true)
    assert.equal((await stores[0].acquireSlot(key, 5)).allowed, false)

    for (const grant of [...held.slice(1), again]) if (grant.allowed) await grant.release()
    const after = await Promise.all(Array.from({ length: 5 }, () => stores[0].acquireSlot(key, 5)))
    assert.ok(after.every((g) => g.allowed))
    for (const grant of after) if (grant.allowed) await grant.release()
  })
}
