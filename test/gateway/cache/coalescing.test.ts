import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import {
  chatBody,
  controlledStream,
  counted,
  deferred,
  jsonResponse,
  parseSse,
  readRest,
  readUntil,
  request,
  setup,
  sse,
  timedStream,
  until,
  withoutIdentity,
} from './support.ts'

const chunk = (text: string) =>
  JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta: { content: text }, finish_reason: null }],
  })
const EVENTS = [chunk('One'), chunk(' two'), chunk(' three'), chunk(' four'), '[DONE]']
const streamBody = () => chatBody({ stream: true })
const N = 20

describe('response cache: coalescing identical misses', { timeout: 10_000 }, () => {
  test(`${N} concurrent JSON misses: one forward, ${N} identical bodies`, async () => {
    const { cache, metrics, store } = setup()
    const release = deferred()
    const forward = counted(async () => {
      await release.promise
      return jsonResponse(
        { id: 'cmpl-1', choices: [{ text: 'shared' }] },
        { headers: { 'x-request-id': 'req-leader' } },
      )
    })
    const pending = Array.from({ length: N }, () => cache.handle(request(chatBody()), forward))
    // Every request gets past its lookup before the upstream answers.
    await until(() => store.gets === N)
    release.resolve()
    const responses = await Promise.all(pending)
    const bodies = await Promise.all(responses.map((r) => r.text()))
    assert.equal(forward.calls, 1)
    // One content, each answer under its own id.
    assert.equal(new Set(bodies.map(withoutIdentity)).size, 1)
    assert.equal(new Set(bodies).size, N)
    assert.deepEqual({ ...JSON.parse(bodies[0]), id: 'cmpl-1' }, { id: 'cmpl-1', choices: [{ text: 'shared' }] })
    assert.equal(responses.filter((r) => r.headers.get('x-cache') === 'MISS').length, 1)
    const followers = responses.filter((r) => r.headers.get('x-cache') === 'HIT')
    assert.equal(followers.length, N - 1)
    assert.ok(
      followers.every((r) => r.headers.get('x-cache-coalesced') === '1' && r.headers.get('x-request-id') === null),
    )
    assert.equal(metrics.count('miss'), 1)
    assert.equal(metrics.count('coalesced'), N - 1)
    assert.equal(store.sets, 1)
  })

  test(`${N} concurrent stream misses: one forward, ${N} identical event streams`, async () => {
    const { cache, metrics, store } = setup()
    const release = deferred()
    const forward = counted(async () => {
      await release.promise
      return timedStream(EVENTS.map((e) => sse([e])))
    })
    const pending = Array.from({ length: N }, () => cache.handle(request(streamBody()), forward))
    await until(() => store.gets === N)
    release.resolve()
    const responses = await Promise.all(pending)
    const bodies = await Promise.all(responses.map((r) => r.text()))
    assert.equal(forward.calls, 1)
    assert.deepEqual(new Set(bodies.map(withoutIdentity)), new Set([withoutIdentity(sse(EVENTS))]))
    assert.equal(new Set(bodies).size, N)
    assert.ok(responses.every((r) => r.headers.get('content-type') === 'text/event-stream'))
    assert.equal(responses.filter((r) => r.headers.get('x-cache-coalesced') === '1').length, N - 1)
    assert.equal(metrics.count('coalesced'), N - 1)
    assert.equal(store.sets, 1)
  })

  test('coalesce: false (Workers): identical concurrent misses each forward, and the response is still stored', async () => {
    const { cache, metrics, store } = setup({ coalesce: false })
    const release = deferred()
    const forward = counted(async () => {
      await release.promise
      return timedStream(EVENTS.map((e) => sse([e])))
    })
    const pending = Array.from({ length: 3 }, () => cache.handle(request(streamBody()), forward))
    await until(() => store.gets === 3)
    release.resolve()
    const responses = await Promise.all(pending)
    const bodies = await Promise.all(responses.map((r) => r.text()))
    assert.equal(forward.calls, 3)
    assert.deepEqual(new Set(bodies), new Set([sse(EVENTS)]))
    assert.equal(metrics.count('coalesced'), 0)
    assert.ok(store.sets >= 1, 'stored')
    const hit = await cache.handle(request(streamBody()), forward)
    assert.equal(hit.headers.get('x-cache'), 'HIT')
    assert.equal(withoutIdentity(await hit.text()), withoutIdentity(sse(EVENTS)))
    assert.equal(forward.calls, 3)
  })

  test('followers get the leader’s events as they arrive, not after the end', async () => {
    const { cache } = setup()
    const upstream = controlledStream()
    const forward = counted(() => upstream.response())
    const leader = await cache.handle(request(streamBody()), forward)
    const leaderReader = leader.body!.getReader()
    upstream.push(sse([EVENTS[0]]))
    await readUntil(leaderReader, '\n\n')

    const follower = await cache.handle(request(streamBody()), forward)
    assert.equal(follower.headers.get('x-cache-coalesced'), '1')
    const followerReader = follower.body!.getReader()
    // What was already sent, then the next event while the upstream is still open.
    assert.deepEqual(parseSse(withoutIdentity(await readUntil(followerReader, '\n\n'))), [withoutIdentity(EVENTS[0])])
    upstream.push(sse([EVENTS[1]]))
    assert.deepEqual(parseSse(withoutIdentity(await readUntil(followerReader, '\n\n'))), [withoutIdentity(EVENTS[1])])
    upstream.push(sse(EVENTS.slice(2)))
    upstream.close()
    assert.equal(withoutIdentity(await readRest(followerReader)), withoutIdentity(sse(EVENTS.slice(2))))
    await readUntil(leaderReader, '[DONE]')
    assert.equal(forward.calls, 1)
  })

  test('followers of a leader that gets a non-200 forward themselves (and share that retry)', async () => {
    const { cache, store } = setup()
    const release = deferred()
    let call = 0
    const forward = counted(async () => {
      call++
      if (call === 1) {
        await release.promise
        return jsonResponse({ error: { message: 'overloaded' } }, { status: 503 })
      }
      return jsonResponse({ ok: call })
    })
    const pending = Array.from({ length: N }, () => cache.handle(request(chatBody()), forward))
    await until(() => store.gets === N)
    release.resolve()
    const responses = await Promise.all(pending)
    assert.equal(responses.filter((r) => r.status === 503).length, 1)
    const ok = responses.filter((r) => r.status === 200)
    assert.equal(ok.length, N - 1)
    assert.deepEqual(new Set(await Promise.all(ok.map((r) => r.text()))), new Set([JSON.stringify({ ok: 2 })]))
    assert.equal(forward.calls, 2)
  })

  test('followers of a leader whose stream starts with an error event forward themselves', async () => {
    const { cache, store } = setup()
    const release = deferred()
    let call = 0
    const forward = counted(async () => {
      await release.promise
      return ++call === 1 ? timedStream([sse(['{"error":{"message":"engine failed"}}'])]) : timedStream([sse(EVENTS)])
    })
    const pending = Array.from({ length: 5 }, () => cache.handle(request(streamBody()), forward))
    await until(() => store.gets === 5)
    release.resolve()
    const responses = await Promise.all(pending)
    const bodies = await Promise.all(responses.map((r) => r.text()))
    assert.equal(bodies.filter((b) => b.includes('engine failed')).length, 1)
    assert.equal(bodies.filter((b) => withoutIdentity(b) === withoutIdentity(sse(EVENTS))).length, 4)
    assert.equal(forward.calls, 2)
  })

  test('a leader whose forward throws: followers forward themselves', async () => {
    const { cache, metrics, store } = setup()
    const release = deferred()
    let call = 0
    const forward = counted(async () => {
      if (++call === 1) {
        await release.promise
        throw new Error('connect ECONNREFUSED')
      }
      return jsonResponse({ ok: true })
    })
    const leader = cache.handle(request(chatBody()), forward)
    await until(() => metrics.results.length === 1)
    const follower = cache.handle(request(chatBody()), forward)
    await until(() => store.gets === 2)
    release.resolve()
    await assert.rejects(leader, /ECONNREFUSED/)
    assert.deepEqual(await (await follower).json(), { ok: true })
    assert.equal(forward.calls, 2)
  })

  test('a follower that joined mid-stream gets a closing error event if the upstream then breaks', async () => {
    const { cache, store } = setup()
    const upstream = controlledStream()
    const leader = await cache.handle(request(streamBody()), async () => upstream.response())
    const leaderReader = leader.body!.getReader()
    upstream.push(sse([EVENTS[0]]))
    await readUntil(leaderReader, '\n\n')
    const follower = await cache.handle(request(streamBody()), async () => assert.fail('the follower should join'))
    const followerText = follower.text()
    upstream.fail(new Error('reset'))
    await assert.rejects(leaderReader.read(), /reset/)
    const events = parseSse(await followerText)
    assert.equal(withoutIdentity(events[0]), withoutIdentity(EVENTS[0]))
    assert.match(events.at(-1)!, /"error"/)
    assert.equal(store.sets, 0)
  })

  test('the leader’s client leaving does not cut off followers; the stream still completes and is stored', async () => {
    const { cache, store } = setup()
    const upstream = controlledStream()
    const leader = await cache.handle(request(streamBody()), async () => upstream.response())
    const leaderReader = leader.body!.getReader()
    upstream.push(sse([EVENTS[0]]))
    await readUntil(leaderReader, '\n\n')
    const follower = await cache.handle(request(streamBody()), async () => assert.fail('the follower should join'))
    const followerText = follower.text()
    await leaderReader.cancel()
    upstream.push(sse(EVENTS.slice(1)))
    upstream.close()
    assert.equal(withoutIdentity(await followerText), withoutIdentity(sse(EVENTS)))
    assert.equal(upstream.cancelled.settled(), false)
    assert.equal(store.sets, 1)
  })

  test('the upstream is cancelled once the leader’s client and every follower have left', async () => {
    const { cache } = setup()
    const upstream = controlledStream()
    const leader = await cache.handle(request(streamBody()), async () => upstream.response())
    const leaderReader = leader.body!.getReader()
    upstream.push(sse([EVENTS[0]]))
    await readUntil(leaderReader, '\n\n')
    const follower = await cache.handle(request(streamBody()), async () => assert.fail('the follower should join'))
    const followerReader = follower.body!.getReader()
    await readUntil(followerReader, '\n\n')
    await followerReader.cancel()
    assert.equal(upstream.cancelled.settled(), false)
    await leaderReader.cancel()
    await upstream.cancelled.promise
  })

  test('no-cache requests do not join a request in flight; no-store requests do not lead one', async () => {
    const { cache, metrics } = setup()
    const release = deferred()
    const forward = counted(async () => {
      await release.promise
      return jsonResponse({ ok: true })
    })
    const noStoreLeader = cache.handle(request(chatBody(), { cacheControl: 'no-store' }), forward)
    await until(() => metrics.results.length === 1)
    const normal = cache.handle(request(chatBody()), forward)
    await until(() => metrics.results.length === 2)
    const noCache = cache.handle(request(chatBody(), { cacheControl: 'no-cache' }), forward)
    await until(() => metrics.results.length === 3)
    release.resolve()
    const responses = await Promise.all([noStoreLeader, normal, noCache])
    assert.deepEqual(
      responses.map((r) => r.headers.get('x-cache')),
      ['MISS', 'MISS', 'MISS'],
    )
    assert.equal(forward.calls, 3)
    assert.deepEqual(metrics.results, ['miss', 'miss', 'miss'])
  })
})
