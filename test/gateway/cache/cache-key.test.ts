import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { readBounded } from '../../../gateway/cache/bounded-body.ts'
import { cacheKey, canonicalJson, isDeterministic } from '../../../gateway/cache/cache-key.ts'
import {
  createEventParser,
  decodeEntry,
  encodeEntry,
  isErrorEvent,
  replayEvents,
} from '../../../gateway/cache/event-stream.ts'
import { cacheDirectives } from '../../../gateway/cache/response-cache.ts'

const key = (body: Record<string, unknown>, extra: { route?: string; tenant?: string; variant?: string } = {}) =>
  cacheKey({ route: extra.route ?? '/v1/completions', tenant: extra.tenant ?? 'acme', body, variant: extra.variant })

describe('cacheKey', () => {
  test('is sy:cache: + 64 hex chars', async () => {
    assert.match(await key({ prompt: 'hi', temperature: 0 }), /^sy:cache:[0-9a-f]{64}$/)
  })

  test('key order does not matter, at any depth', async () => {
    const a = await key({
      model: 'm',
      prompt: 'hi',
      temperature: 0,
      logit_bias: { '1': 2, '3': 4 },
      messages: [{ role: 'user', content: 'x' }],
    })
    const b = await key({
      messages: [{ content: 'x', role: 'user' }],
      logit_bias: { '3': 4, '1': 2 },
      temperature: 0,
      prompt: 'hi',
      model: 'm',
    })
    assert.equal(a, b)
  })

  test('array order does matter', async () => {
    assert.notEqual(
      await key({ prompt: ['a', 'b'], temperature: 0 }),
      await key({ prompt: ['b', 'a'], temperature: 0 }),
    )
  })

  test('user and stream_options are ignored', async () => {
    const base = await key({ prompt: 'hi', temperature: 0, stream: true })
    assert.equal(await key({ prompt: 'hi', temperature: 0, stream: true, user: 'alice' }), base)
    assert.equal(
      await key({ prompt: 'hi', temperature: 0, stream: true, stream_options: { include_usage: true } }),
      base,
    )
  })

  test('the stream flag separates entries; stream: false is the same as no stream field', async () => {
    const json = await key({ prompt: 'hi', temperature: 0 })
    assert.notEqual(await key({ prompt: 'hi', temperature: 0, stream: true }), json)
    assert.equal(await key({ prompt: 'hi', temperature: 0, stream: false }), json)
  })

  test('route, tenant, variant and any output-changing field separate entries', async () => {
    const base = await key({ prompt: 'hi', temperature: 0 })
    const others = [
      await key({ prompt: 'hi', temperature: 0 }, { route: '/generate' }),
      await key({ prompt: 'hi', temperature: 0 }, { tenant: 'other' }),
      await key({ prompt: 'hi', temperature: 0 }, { variant: 'usage' }),
      await key({ prompt: 'hi', temperature: 0, max_tokens: 5 }),
      await key({ prompt: 'hi', seed: 1 }),
      await key({ prompt: 'hi!', temperature: 0 }),
    ]
    for (const other of others) assert.notEqual(other, base)
    assert.equal(new Set(others).size, others.length)
  })

  test('canonicalJson sorts keys and drops undefined like JSON.stringify', () => {
    assert.equal(
      canonicalJson({ b: 1, a: [{ d: 2, c: undefined }, null], e: 'x' }),
      '{"a":[{"d":2},null],"b":1,"e":"x"}',
    )
  })
})

describe('isDeterministic', () => {
  test('temperature 0 or a numeric seed', () => {
    assert.equal(isDeterministic({ prompt: 'x', temperature: 0 }), true)
    assert.equal(isDeterministic({ prompt: 'x', seed: 42 }), true)
    assert.equal(isDeterministic({ prompt: 'x', seed: 0, temperature: 1.3 }), true)
  })

  test('sampling without a seed is not', () => {
    assert.equal(isDeterministic({ prompt: 'x' }), false)
    assert.equal(isDeterministic({ prompt: 'x', temperature: 0.7 }), false)
    assert.equal(isDeterministic({ prompt: 'x', temperature: '0' }), false)
    assert.equal(isDeterministic({ prompt: 'x', seed: null, temperature: 1 }), false)
    assert.equal(isDeterministic({ prompt: 'x', seed: '7' }), false)
  })

  test('several choices need a seed', () => {
    assert.equal(isDeterministic({ prompt: 'x', temperature: 0, n: 2 }), false)
    assert.equal(isDeterministic({ prompt: 'x', temperature: 0, best_of: 3 }), false)
    assert.equal(isDeterministic({ prompt: 'x', temperature: 0, n: 1 }), true)
    assert.equal(isDeterministic({ prompt: 'x', temperature: 0, n: null }), true)
    assert.equal(isDeterministic({ prompt: 'x', n: 4, seed: 9 }), true)
  })

  test('/generate uses the same fields', () => {
    assert.equal(isDeterministic({ prompt: 'x', temperature: 0, max_length: 20 }), true)
    assert.equal(isDeterministic({ prompt: 'x', seed: 5, temperature: 1 }), true)
    assert.equal(isDeterministic({ prompt: 'x', temperature: 0, num_return_sequences: 2 }), false)
    assert.equal(isDeterministic({ prompt: 'x', seed: 5, num_return_sequences: 2 }), true)
  })
})

describe('cacheDirectives', () => {
  test('reads no-cache and no-store among other directives', () => {
    assert.deepEqual(cacheDirectives(undefined), { noCache: false, noStore: false })
    assert.deepEqual(cacheDirectives('No-Cache'), { noCache: true, noStore: false })
    assert.deepEqual(cacheDirectives('max-age=0, no-store'), { noCache: false, noStore: true })
    assert.deepEqual(cacheDirectives('no-cache, no-store'), { noCache: true, noStore: true })
    assert.deepEqual(cacheDirectives('no-cache="set-cookie"'), { noCache: true, noStore: false })
    assert.deepEqual(cacheDirectives('x-no-cache'), { noCache: false, noStore: false })
  })
})

describe('SSE parsing and entries', () => {
  const parseAll = (chunks: string[]) => {
    const events: string[] = []
    const parse = createEventParser((d) => events.push(d))
    const encoder = new TextEncoder()
    for (const c of chunks) parse(encoder.encode(c))
    return events
  }

  test('events split across chunks, CRLF (even split between chunks), multi-line data, comments and other fields', () => {
    assert.deepEqual(
      parseAll([
        'data: {"a":',
        '1}\n',
        '\ndata: two\r',
        '\n\r\n: comment\n\nevent: x\nid: 3\ndata:three\ndata: 3b\n\ndata: [DONE]\n\n',
      ]),
      ['{"a":1}', 'two', 'three\n3b', '[DONE]'],
    )
  })

  test('a multi-byte character split between chunks survives', () => {
    const bytes = new TextEncoder().encode('data: é€\n\n')
    const events: string[] = []
    const parse = createEventParser((d) => events.push(d))
    parse(bytes.slice(0, 7))
    parse(bytes.slice(7))
    assert.deepEqual(events, ['é€'])
  })

  test('an unterminated last event is dropped', () => {
    assert.deepEqual(parseAll(['data: a\n\ndata: [DONE]\n']), ['a'])
  })

  test('error events are JSON objects with an error field', () => {
    assert.equal(isErrorEvent('{"error":{"message":"x"}}'), true)
    assert.equal(isErrorEvent('{ "id": 1, "error": null }'), true)
    assert.equal(isErrorEvent('{"choices":[{"text":"the \\"error\\" word"}]}'), false)
    assert.equal(isErrorEvent('"error"'), false)
    assert.equal(isErrorEvent('[DONE]'), false)
  })

  test('entries round-trip; a stream entry without [DONE] or an unknown format is refused', () => {
    const json = { kind: 'json' as const, body: '{"a":"b\\n"}' }
    const stream = { kind: 'sse' as const, events: ['{"x":1}', 'two\nlines', '[DONE]'] }
    assert.deepEqual(decodeEntry(encodeEntry(json)), json)
    assert.deepEqual(decodeEntry(encodeEntry(stream)), stream)
    assert.equal(decodeEntry(encodeEntry({ kind: 'sse', events: ['{"x":1}'] })), null)
    assert.equal(decodeEntry('{"kind":"json","body":"{}"}'), null)
  })

  test('replay is one data: event per stored event', async () => {
    const text = await new Response(replayEvents(['{"x":1}', '[DONE]'])).text()
    assert.equal(text, 'data: {"x":1}\n\ndata: [DONE]\n\n')
  })
})

describe('readBounded', () => {
  const body = (chunks: string[]) => new Response(new Blob(chunks)).body!

  test('a body within the limit is read whole', async () => {
    const read = await readBounded(body(['abc', 'def']), 6)
    assert.equal(read.complete, true)
    assert.equal(read.complete && new TextDecoder().decode(read.bytes), 'abcdef')
  })

  test('a larger body is given back as a stream of all its bytes', async () => {
    const text = 'x'.repeat(100_000)
    const read = await readBounded(body([text]), 10)
    assert.equal(read.complete, false)
    assert.equal(!read.complete && (await new Response(read.body).text()), text)
  })
})
