import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { LimitCounters } from '../../../gateway/limits/counters.ts'

describe('LimitCounters slot leases', () => {
  test('renew extends a held slot; an expired or unknown one is not brought back', () => {
    const counters = new LimitCounters()
    assert.equal(counters.admit({ maxConcurrent: 1 }, 'a', 100, 0).allowed, true)
    assert.equal(counters.renew('a', 100, 90), true)
    // Past the first lease (100) but inside the renewed one (190): still held.
    const busy = counters.admit({ maxConcurrent: 1 }, 'b', 100, 150)
    assert.ok(!busy.allowed && busy.refusedBy === 'concurrency')
    assert.equal(
      counters.admit({ maxConcurrent: 1 }, 'b', 100, 200).allowed,
      true,
      'free once the renewed lease passed',
    )
    assert.equal(counters.renew('a', 100, 210), false, 'an expired slot stays gone')
    assert.equal(counters.renew('never', 100, 210), false)
    assert.ok(!counters.admit({ maxConcurrent: 1 }, 'c', 100, 220).allowed, 'b holds the only slot')
  })
})
