import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { MemoryCacheStore, MemoryKeyStore } from '../../../gateway/stores/memory.ts'
import { keyStoreContract } from './key-store-contract.ts'

describe('MemoryKeyStore', () => {
  keyStoreContract(() => new MemoryKeyStore())
})

describe('MemoryCacheStore', () => {
  const clock = () => {
    let now = 1_000_000
    return { now: () => now, advance: (ms: number) => (now += ms) }
  }

  it('returns what was set until the TTL passes, then null', async () => {
    const time = clock()
    const cache = new MemoryCacheStore({ now: time.now })
    await cache.set('a', 'value', 2)
    assert.equal(await cache.get('a'), 'value')
    time.advance(1999)
    assert.equal(await cache.get('a'), 'value')
    time.advance(1)
    assert.equal(await cache.get('a'), null)
    assert.equal(cache.size, 0)
    assert.equal(await cache.get('never set'), null)
  })

  it('evicts the least recently used entry beyond maxEntries', async () => {
    const cache = new MemoryCacheStore({ maxEntries: 3 })
    await cache.set('a', '1', 60)
    await cache.set('b', '2', 60)
    await cache.set('c', '3', 60)
    await cache.get('a') // now b is the least recently used
    await cache.set('d', '4', 60)
    assert.equal(cache.size, 3)
    assert.equal(await cache.get('b'), null)
    assert.deepEqual([await cache.get('a'), await cache.get('c'), await cache.get('d')], ['1', '3', '4'])
  })

  it('bounds the total size of values, and skips a value bigger than the whole budget', async () => {
    const cache = new MemoryCacheStore({ maxChars: 10 })
    await cache.set('a', '12345', 60)
    await cache.set('b', '12345', 60)
    await cache.set('c', '123', 60)
    assert.equal(await cache.get('a'), null)
    assert.equal(await cache.get('b'), '12345')
    await cache.set('huge', 'x'.repeat(11), 60)
    assert.equal(await cache.get('huge'), null)
    assert.equal(await cache.get('c'), '123')
  })

  it('overwrites a key, and does not store with a TTL of zero', async () => {
    const cache = new MemoryCacheStore()
    await cache.set('a', 'old', 60)
    await cache.set('a', 'new', 60)
    assert.equal(await cache.get('a'), 'new')
    await cache.set('z', 'v', 0)
    assert.equal(await cache.get('z'), null)
    assert.equal(cache.size, 1)
  })
})
