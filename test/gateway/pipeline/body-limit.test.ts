import assert from 'node:assert/strict'
import { after, describe, test } from 'node:test'
import {
  apiKeyEntry,
  completionBody,
  createInProcessGateway,
  fakeNodes,
  jsonAnswer,
} from '../../helpers/in-process-gateway.ts'

// The request body limit, through the whole app in process: declared lengths are checked
// before the body is read, chunked bodies as they stream in; nothing over the limit reaches a
// node, and the connection is closed (the unread rest would poison a kept-alive connection).
const KEY = 'sy-body-limit-test-key-0123456789ab'
const MAX = 1024
const fake = fakeNodes(() => jsonAnswer(200, completionBody()))
const gateway = createInProcessGateway({
  config: { auth: { apiKeys: [apiKeyEntry('k', KEY)] }, cache: { enabled: false }, server: { maxBodyBytes: MAX } },
  upstream: fake.upstream,
})
after(() => gateway.close())

const headers = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }
const bodyOf = (bytes: number) => {
  const shell = JSON.stringify({ model: 'm', prompt: '' })
  return JSON.stringify({ model: 'm', prompt: 'x'.repeat(bytes - shell.length) })
}
/** A body with its Content-Length declared, as an HTTP client sends it. */
const declared = (text: string) => [text, { 'content-length': String(Buffer.byteLength(text)) }] as const
/** A chunked body (no Content-Length): the text in pieces, or breaking off with an error after them. */
const chunked = (text: string, breakOff = false) => {
  const bytes = new TextEncoder().encode(text)
  let at = 0
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (at >= bytes.length) return breakOff ? controller.error(new Error('client reset')) : controller.close()
      controller.enqueue(bytes.slice(at, (at += 100)))
    },
  })
}
const send = (body: BodyInit, extra: Record<string, string> = {}) =>
  gateway.app.request('/v1/completions', {
    method: 'POST',
    headers: { ...headers, ...extra },
    body,
    duplex: 'half',
  } as RequestInit)

async function assertError(response: Response, status: number, code: string) {
  assert.equal(response.status, status)
  assert.equal(((await response.json()) as { error: { code: string } }).error.code, code)
  assert.equal(response.headers.get('connection'), 'close')
}

describe('body limit', () => {
  test('a body of exactly maxBodyBytes passes; one byte more is 413, declared or chunked', async () => {
    const before = fake.requests.length
    assert.equal((await send(...declared(bodyOf(MAX)))).status, 200)
    assert.equal((await send(chunked(bodyOf(MAX)))).status, 200)
    assert.equal(fake.requests.length, before + 2)
    await assertError(await send(...declared(bodyOf(MAX + 1))), 413, 'request_too_large')
    await assertError(await send(chunked(bodyOf(MAX + 1))), 413, 'request_too_large')
    assert.equal(fake.requests.length, before + 2, 'nothing over the limit is forwarded')
  })

  test('a declared Content-Length over the limit is refused without reading the body', async () => {
    let pulled = 0
    const endless = new ReadableStream<Uint8Array>({
      pull: (controller) => {
        pulled++
        controller.enqueue(new Uint8Array(512))
      },
    })
    await assertError(await send(endless, { 'content-length': String(MAX * 100) }), 413, 'request_too_large')
    assert.ok(pulled <= 1, `read ${pulled} chunks`)
  })

  test('a Content-Length that is not a number is 400', async () => {
    for (const length of ['abc', '-5', '1e3', '12 34'])
      await assertError(await send(bodyOf(100), { 'content-length': length }), 400, 'invalid_content_length')
  })

  test('a chunked body that breaks off is the client’s 400, not a 5xx', async () => {
    const before = fake.requests.length
    await assertError(await send(chunked('{"model":"m","prompt":"abc', true)), 400, 'invalid_body')
    assert.equal(fake.requests.length, before)
  })
})
