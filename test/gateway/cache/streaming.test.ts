import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  chatBody,
  controlledStream,
  counted,
  jsonResponse,
  parseSse,
  readUntil,
  request,
  setup,
  sse,
  timedStream,
  withoutIdentity,
} from './support.ts'

const chunk = (text: string) =>
  JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content: text }, finish_reason: null }],
  })
const EVENTS = [chunk('Hel'), chunk('lo'), chunk(' world'), '[DONE]']
const streamBody = (extra: Record<string, unknown> = {}) => chatBody({ stream: true, ...extra })

describe('response cache: streams', { timeout: 10_000 }, () => {
  test('a stream MISS is passed through; the HIT replays the same events as SSE ending with [DONE]', async () => {
    const { cache, store, metrics } = setup()
    // Chunk boundaries that cut events in half, as a network would.
    const raw = sse(EVENTS)
    const forward = counted(() => timedStream([raw.slice(0, 10), raw.slice(10, 70), raw.slice(70)]))
    const miss = await cache.handle(request(streamBody()), forward)
    assert.equal(miss.headers.get('x-cache'), 'MISS')
    assert.equal(await miss.text(), raw)
    assert.equal(store.sets, 1)

    const hit = await cache.handle(request(streamBody()), forward)
    assert.equal(forward.calls, 1)
    assert.equal(hit.headers.get('x-cache'), 'HIT')
    assert.equal(hit.headers.get('content-type'), 'text/event-stream')
    assert.deepEqual([...hit.headers.keys()].sort(), ['content-type', 'x-cache'])
    const replayed = await hit.text()
    // The same events under one id of the HIT's own, with its own creation time.
    assert.equal(withoutIdentity(replayed), withoutIdentity(raw))
    assert.deepEqual(parseSse(withoutIdentity(replayed)), EVENTS.map(withoutIdentity))
    const ids = new Set(
      parseSse(replayed)
        .filter((e) => e.startsWith('{'))
        .map((e) => (JSON.parse(e) as { id: string }).id),
    )
    assert.equal(ids.size, 1)
    assert.match([...ids][0], /^chatcmpl-[0-9a-f]{32}$/)
    assert.ok(replayed.endsWith('data: [DONE]\n\n'))
    assert.deepEqual(metrics.results, ['miss', 'hit'])
  })

  test('a stream entry and a JSON entry for the same request are separate', async () => {
    const { cache } = setup()
    const streamForward = counted(() => timedStream([sse(EVENTS)]))
    const jsonForward = counted(() => jsonResponse({ id: 'x' }))
    await (await cache.handle(request(streamBody()), streamForward)).text()
    const json = await cache.handle(request(chatBody({ stream: false })), jsonForward)
    assert.equal(json.headers.get('x-cache'), 'MISS')
    assert.deepEqual(await json.json(), { id: 'x' })
    assert.equal(
      (await cache.handle(request(streamBody()), streamForward)).headers.get('content-type'),
      'text/event-stream',
    )
    assert.equal((await cache.handle(request(chatBody()), jsonForward)).headers.get('content-type'), 'application/json')
    assert.equal(streamForward.calls + jsonForward.calls, 2)
  })

  test('the passthrough is not buffered: the client reads the first event before the upstream writes the second', async () => {
    const { cache, store } = setup()
    const upstream = controlledStream({ headers: { 'x-request-id': 'req-9' } })
    const response = await cache.handle(request(streamBody()), async () => upstream.response())
    assert.equal(response.headers.get('x-request-id'), 'req-9')
    const reader = response.body!.getReader()
    upstream.push(`data: ${EVENTS[0]}\n\n`)
    assert.equal(await readUntil(reader, '\n\n'), `data: ${EVENTS[0]}\n\n`)
    upstream.push(`data: ${EVENTS[1]}\n\ndata: ${EVENTS[2]}\n\n`)
    await readUntil(reader, EVENTS[2])
    upstream.push('data: [DONE]\n\n')
    upstream.close()
    await readUntil(reader, '[DONE]')
    assert.equal((await reader.read()).done, true)
    assert.equal(store.sets, 1)
  })

  test('a stream with an error event is passed on but not stored', async () => {
    const { cache, store } = setup()
    const events = [EVENTS[0], JSON.stringify({ error: { message: 'generation failed', type: 'server_error' } })]
    const forward = counted(() => timedStream([sse(events)]))
    for (let i = 0; i < 2; i++) {
      const response = await cache.handle(request(streamBody()), forward)
      assert.equal(response.headers.get('x-cache'), 'MISS')
      assert.equal(await response.text(), sse(events))
    }
    assert.equal(forward.calls, 2)
    assert.equal(store.sets, 0)
  })

  test('an error event followed by [DONE] is still not stored', async () => {
    const { cache, store } = setup()
    const forward = counted(() => timedStream([sse([EVENTS[0], '{"error":{"message":"x"}}', '[DONE]'])]))
    await (await cache.handle(request(streamBody()), forward)).text()
    assert.equal(store.sets, 0)
  })

  test('a stream that ends without [DONE] is not stored', async () => {
    const { cache, store } = setup()
    const forward = counted(() => timedStream([sse(EVENTS.slice(0, 2))]))
    await (await cache.handle(request(streamBody()), forward)).text()
    assert.equal((await cache.handle(request(streamBody()), forward)).headers.get('x-cache'), 'MISS')
    assert.equal(forward.calls, 2)
    assert.equal(store.sets, 0)
  })

  test('a stream whose upstream breaks errors the client and is not stored', async () => {
    const { cache, store } = setup()
    const upstream = controlledStream()
    const response = await cache.handle(request(streamBody()), async () => upstream.response())
    const reader = response.body!.getReader()
    upstream.push(`data: ${EVENTS[0]}\n\n`)
    await readUntil(reader, '\n\n')
    upstream.fail(new Error('socket hang up'))
    await assert.rejects(reader.read(), /socket hang up/)
    assert.equal(store.sets, 0)
  })

  test('a non-200 stream response is not stored', async () => {
    const { cache, store } = setup()
    const forward = counted(
      () =>
        new Response(sse(['{"error":{"message":"busy"}}']), {
          status: 503,
          headers: { 'content-type': 'text/event-stream' },
        }),
    )
    for (let i = 0; i < 2; i++) {
      const response = await cache.handle(request(streamBody()), forward)
      assert.equal(response.status, 503)
      await response.text()
    }
    assert.equal(forward.calls, 2)
    assert.equal(store.sets, 0)
  })

  test('a stream larger than maxEntryBytes is passed on whole but not stored', async () => {
    const { cache, store } = setup({ maxEntryBytes: 200 })
    const events = [...Array.from({ length: 20 }, (_, i) => chunk(`token ${i}`)), '[DONE]']
    const forward = counted(() => timedStream(events.map((e) => sse([e]))))
    for (let i = 0; i < 2; i++)
      assert.equal(await (await cache.handle(request(streamBody()), forward)).text(), sse(events))
    assert.equal(forward.calls, 2)
    assert.equal(store.sets, 0)
  })

  test('the client cancelling cancels the upstream, and the partial stream is not stored', async () => {
    const { cache, store } = setup()
    const upstream = controlledStream()
    const forward = counted(() => upstream.response())
    const response = await cache.handle(request(streamBody()), forward)
    const reader = response.body!.getReader()
    upstream.push(`data: ${EVENTS[0]}\n\n`)
    await readUntil(reader, '\n\n')
    await reader.cancel(new Error('client went away'))
    assert.match(String(await upstream.cancelled.promise), /client went away/)
    assert.equal(store.sets, 0)
    // Nothing is left in flight: the next identical request forwards.
    const next = counted(() => timedStream([sse(EVENTS)]))
    const again = await cache.handle(request(streamBody()), next)
    assert.equal(again.headers.get('x-cache'), 'MISS')
    assert.equal(await again.text(), sse(EVENTS))
    assert.equal(next.calls, 1)
  })

  test('no-store streams pass through without being stored; no-cache streams are stored', async () => {
    const { cache, store } = setup()
    const forward = counted(() => timedStream([sse(EVENTS)]))
    assert.equal(
      await (await cache.handle(request(streamBody(), { cacheControl: 'no-store' }), forward)).text(),
      sse(EVENTS),
    )
    assert.equal(store.sets, 0)
    await (await cache.handle(request(streamBody(), { cacheControl: 'no-cache' }), forward)).text()
    assert.equal(store.sets, 1)
    assert.equal((await cache.handle(request(streamBody()), forward)).headers.get('x-cache'), 'HIT')
    assert.equal(forward.calls, 2)
  })

  test('CRLF upstream events are stored and replayed as LF events', async () => {
    const { cache } = setup()
    const forward = counted(() => timedStream([EVENTS.map((e) => `data: ${e}\r\n\r\n`).join('')]))
    await (await cache.handle(request(streamBody()), forward)).text()
    assert.equal(
      withoutIdentity(await (await cache.handle(request(streamBody()), forward)).text()),
      withoutIdentity(sse(EVENTS)),
    )
  })
})
