import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { cacheKey } from '../../../gateway/cache/cache-key.ts'
import type { CacheStore } from '../../../gateway/types.ts'
import { chatBody, counted, jsonResponse, MemoryCacheStore, request, setup } from './support.ts'

const completion = {
  id: 'cmpl-1',
  object: 'chat.completion',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hi there' }, finish_reason: 'stop' }],
}
const upstreamHeaders = { 'x-request-id': 'req-1', 'x-ratelimit-remaining-requests': '9' }

describe('response cache: JSON', { timeout: 10_000 }, () => {
  test('MISS forwards and keeps upstream headers; the repeat is a HIT with only content-type and x-cache', async () => {
    const { cache, metrics } = setup()
    const forward = counted(() => jsonResponse(completion, { headers: upstreamHeaders }))
    const miss = await cache.handle(request(chatBody()), forward)
    assert.equal(miss.status, 200)
    assert.equal(miss.headers.get('x-cache'), 'MISS')
    assert.equal(miss.headers.get('x-request-id'), 'req-1')
    assert.equal(miss.headers.get('x-ratelimit-remaining-requests'), '9')
    assert.deepEqual(await miss.json(), completion)

    const hit = await cache.handle(request(chatBody()), forward)
    assert.equal(hit.status, 200)
    assert.equal(forward.calls, 1)
    assert.deepEqual([...hit.headers.keys()].sort(), ['content-type', 'x-cache'])
    assert.equal(hit.headers.get('x-cache'), 'HIT')
    assert.match(hit.headers.get('content-type')!, /^application\/json/)
    // The same content under its own id (OpenAI gives every answer one).
    const replayed = (await hit.json()) as typeof completion
    assert.deepEqual({ ...replayed, id: completion.id }, completion)
    assert.match(replayed.id, /^cmpl-[0-9a-f]{32}$/)
    assert.deepEqual(metrics.results, ['miss', 'hit'])
  })

  test('the body comes back byte for byte', async () => {
    const { cache } = setup()
    const text = '{"b":1,  "a":"é\\u00e9 \u2028"}\n'
    const forward = counted(() => jsonResponse(text))
    assert.equal(await (await cache.handle(request(chatBody()), forward)).text(), text)
    assert.equal(await (await cache.handle(request(chatBody()), forward)).text(), text)
    assert.equal(forward.calls, 1)
  })

  test('key order and user do not matter for a hit; tenant does', async () => {
    const { cache } = setup()
    const forward = counted(() => jsonResponse(completion))
    await (
      await cache.handle(
        request({ model: 'tiny', temperature: 0, messages: [{ role: 'user', content: 'hello' }] }),
        forward,
      )
    ).text()
    const hit = await cache.handle(
      request({ messages: [{ content: 'hello', role: 'user' }], temperature: 0, user: 'bob', model: 'tiny' }),
      forward,
    )
    assert.equal(hit.headers.get('x-cache'), 'HIT')
    const otherTenant = await cache.handle(
      request({ model: 'tiny', temperature: 0, messages: [{ role: 'user', content: 'hello' }] }, { tenant: 'other' }),
      forward,
    )
    assert.equal(otherTenant.headers.get('x-cache'), 'MISS')
    assert.equal(forward.calls, 2)
  })

  test('a non-deterministic request is forwarded every time with x-cache BYPASS and upstream headers', async () => {
    const { cache, store, metrics } = setup()
    const forward = counted(() => jsonResponse(completion, { headers: upstreamHeaders }))
    for (const body of [chatBody({ temperature: 0.8 }), chatBody({ temperature: 0.8 }), chatBody({ n: 2 })]) {
      const response = await cache.handle(request(body), forward)
      assert.equal(response.headers.get('x-cache'), 'BYPASS')
      assert.equal(response.headers.get('x-request-id'), 'req-1')
      await response.text()
    }
    assert.equal(forward.calls, 3)
    assert.equal(store.gets + store.sets, 0)
    assert.deepEqual(metrics.results, ['bypass', 'bypass', 'bypass'])
  })

  test('a seeded sampling request is cached', async () => {
    const { cache } = setup()
    const forward = counted(() => jsonResponse(completion))
    await (await cache.handle(request(chatBody({ temperature: 0.9, seed: 7 })), forward)).text()
    assert.equal(
      (await cache.handle(request(chatBody({ temperature: 0.9, seed: 7 })), forward)).headers.get('x-cache'),
      'HIT',
    )
    assert.equal(
      (await cache.handle(request(chatBody({ temperature: 0.9, seed: 8 })), forward)).headers.get('x-cache'),
      'MISS',
    )
  })

  test('only a 200 is stored', async () => {
    const { cache, store } = setup()
    for (const status of [400, 429, 500, 503]) {
      const forward = counted(() =>
        jsonResponse({ error: { message: 'no' } }, { status, headers: { 'retry-after': '1' } }),
      )
      for (let i = 0; i < 2; i++) {
        const response = await cache.handle(request(chatBody({ max_tokens: status })), forward)
        assert.equal(response.status, status)
        assert.equal(response.headers.get('x-cache'), 'MISS')
        assert.equal(response.headers.get('retry-after'), '1')
        await response.text()
      }
      assert.equal(forward.calls, 2)
    }
    assert.equal(store.sets, 0)
  })

  test('a 200 that is not JSON or SSE is passed on, not stored', async () => {
    const { cache, store } = setup()
    const forward = counted(() => new Response('plain', { headers: { 'content-type': 'text/plain' } }))
    assert.equal(await (await cache.handle(request(chatBody()), forward)).text(), 'plain')
    assert.equal((await cache.handle(request(chatBody()), forward)).headers.get('x-cache'), 'MISS')
    assert.equal(store.sets, 0)
  })

  test('Cache-Control: no-cache skips the lookup but stores the fresh result', async () => {
    const { cache, store } = setup()
    let version = 0
    const forward = counted(() => jsonResponse({ version: ++version }))
    await (await cache.handle(request(chatBody()), forward)).text()
    const fresh = await cache.handle(request(chatBody(), { cacheControl: 'no-cache' }), forward)
    assert.equal(fresh.headers.get('x-cache'), 'MISS')
    assert.deepEqual(await fresh.json(), { version: 2 })
    const hit = await cache.handle(request(chatBody()), forward)
    assert.equal(hit.headers.get('x-cache'), 'HIT')
    assert.deepEqual(await hit.json(), { version: 2 })
    assert.equal(store.sets, 2)
  })

  test('Cache-Control: no-store still answers from the cache but does not store', async () => {
    const { cache, store } = setup()
    const forward = counted(() => jsonResponse(completion))
    const miss = await cache.handle(request(chatBody(), { cacheControl: 'no-store' }), forward)
    assert.equal(miss.headers.get('x-cache'), 'MISS')
    await miss.text()
    assert.equal(store.sets, 0)
    assert.equal((await cache.handle(request(chatBody()), forward)).headers.get('x-cache'), 'MISS')
    assert.equal(
      (await cache.handle(request(chatBody(), { cacheControl: 'no-store' }), forward)).headers.get('x-cache'),
      'HIT',
    )
    assert.equal(forward.calls, 2)
  })

  test('no-cache with no-store is a plain forward (BYPASS)', async () => {
    const { cache, store, metrics } = setup()
    const forward = counted(() => jsonResponse(completion))
    await (await cache.handle(request(chatBody()), forward)).text()
    const response = await cache.handle(request(chatBody(), { cacheControl: 'no-cache, no-store' }), forward)
    assert.equal(response.headers.get('x-cache'), 'BYPASS')
    assert.equal(forward.calls, 2)
    assert.equal(store.sets, 1)
    assert.deepEqual(metrics.results, ['miss', 'bypass'])
  })

  test('an entry expires after its TTL', async () => {
    const { cache, store } = setup({ ttlSeconds: 30 })
    const forward = counted(() => jsonResponse(completion))
    await (await cache.handle(request(chatBody()), forward)).text()
    store.now += 29_999
    assert.equal((await cache.handle(request(chatBody()), forward)).headers.get('x-cache'), 'HIT')
    store.now += 1
    assert.equal((await cache.handle(request(chatBody()), forward)).headers.get('x-cache'), 'MISS')
    assert.equal(forward.calls, 2)
  })

  test('a body larger than maxEntryBytes is passed on whole but not stored', async () => {
    const { cache, store } = setup({ maxEntryBytes: 1000 })
    const big = JSON.stringify({ text: 'x'.repeat(5000) })
    const forward = counted(() => jsonResponse(big, { headers: upstreamHeaders }))
    for (let i = 0; i < 2; i++) {
      const response = await cache.handle(request(chatBody()), forward)
      assert.equal(response.headers.get('x-cache'), 'MISS')
      assert.equal(response.headers.get('x-request-id'), 'req-1')
      assert.equal(await response.text(), big)
    }
    assert.equal(forward.calls, 2)
    assert.equal(store.sets, 0)
    // Just under the limit is stored.
    const small = counted(() => jsonResponse({ text: 'y'.repeat(900) }))
    await (await cache.handle(request(chatBody({ max_tokens: 1 })), small)).text()
    assert.equal(store.sets, 1)
  })

  test('a forward that throws rejects the request and leaves nothing in flight', async () => {
    const { cache } = setup()
    await assert.rejects(
      cache.handle(request(chatBody()), async () => Promise.reject(new Error('backend down'))),
      /backend down/,
    )
    const forward = counted(() => jsonResponse(completion))
    assert.equal((await cache.handle(request(chatBody()), forward)).headers.get('x-cache'), 'MISS')
    assert.equal(forward.calls, 1)
  })
})

describe('response cache: store trouble', { timeout: 10_000 }, () => {
  test('a store that throws (get and set) never fails a request', async () => {
    const throwing: CacheStore = {
      get: async () => Promise.reject(new Error('redis down')),
      set: () => {
        throw new Error('redis down (sync)')
      },
    }
    const { cache, logger } = setup({ store: throwing })
    const forward = counted(() => jsonResponse(completion))
    for (let i = 0; i < 2; i++) {
      const response = await cache.handle(request(chatBody()), forward)
      assert.equal(response.status, 200)
      assert.equal(response.headers.get('x-cache'), 'MISS')
      assert.deepEqual(await response.json(), completion)
    }
    assert.equal(forward.calls, 2)
    await new Promise((resolve) => setImmediate(resolve))
    assert.ok(logger.warnings.some((w) => w.fields.operation === 'cache_get'))
    assert.ok(logger.warnings.some((w) => w.fields.operation === 'cache_set'))
    assert.ok(
      logger.warnings.every((w) => !JSON.stringify(w).includes('hello')),
      'no prompt text in logs',
    )
  })

  test('a store that always returns null just misses', async () => {
    const { cache } = setup({ store: { get: async () => null, set: async () => {} } })
    const forward = counted(() => jsonResponse(completion))
    for (let i = 0; i < 3; i++)
      assert.equal((await cache.handle(request(chatBody()), forward)).headers.get('x-cache'), 'MISS')
    assert.equal(forward.calls, 3)
  })

  test('an unreadable stored value is ignored and overwritten', async () => {
    const store = new MemoryCacheStore()
    const { cache } = setup({ store })
    const key = await cacheKey({ route: '/v1/chat/completions', tenant: 'acme', body: chatBody() })
    await store.set(key, 'garbage', 60)
    const forward = counted(() => jsonResponse(completion))
    assert.equal((await cache.handle(request(chatBody()), forward)).headers.get('x-cache'), 'MISS')
    assert.equal((await cache.handle(request(chatBody()), forward)).headers.get('x-cache'), 'HIT')
    assert.equal(forward.calls, 1)
  })

  test('a store write that never finishes does not hold the response', async () => {
    const { cache } = setup({ store: { get: async () => null, set: () => new Promise(() => {}) } })
    const response = await cache.handle(
      request(chatBody()),
      counted(() => jsonResponse(completion)),
    )
    assert.deepEqual(await response.json(), completion)
  })

  test('waitUntil receives the background store write', async () => {
    const { cache, store } = setup()
    const pending: Promise<unknown>[] = []
    await (
      await cache.handle(
        { ...request(chatBody()), waitUntil: (p) => void pending.push(p) },
        counted(() => jsonResponse(completion)),
      )
    ).text()
    assert.equal(pending.length, 1)
    await Promise.all(pending)
    assert.equal(store.entries.size, 1)
  })
})
