import assert from 'node:assert/strict'
import { createServer, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, test } from 'node:test'
import { createNodeUpstream } from '../../../gateway/node/upstream.ts'
import { relayEventStream } from '../../../gateway/proxy/stream-relay.ts'

// The Node upstream client's event streams, read through the relay as the gateway does, against
// a real HTTP server: connections are kept across streams, a stalled stream can be cancelled,
// and the relay reports how the client's stream ended.

const event = (text: string) =>
  `data: ${JSON.stringify({ id: 'cmpl-1', created: 1, choices: [{ index: 0, text, finish_reason: null }] })}\n\n`
let server: Server
let origin: string
let connections = 0
const stalled: ServerResponse[] = []

before(async () => {
  server = createServer((req, res) => {
    req.resume()
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' })
      if (req.url === '/crlf') {
        // CRLF line ends, one chunk's JSON over several data lines, a CRLF split across writes.
        const chunk = (text: string, ids: number[]) =>
          JSON.stringify({
            id: 'cmpl-1',
            created: 1,
            choices: [{ index: 0, text, token_ids: ids, finish_reason: null }],
          })
        const multiLine = JSON.stringify(JSON.parse(chunk('Once', [1])), null, 1).split('\n')
        res.write(`${multiLine.map((line) => `data: ${line}`).join('\r\n')}\r\n\r`)
        setTimeout(() => res.write(`\ndata: ${chunk(' upon', [2, 3])}\r\n\r\ndata: [DONE]\r\n\r\n`), 2)
        setTimeout(() => res.end(), 4)
        return
      }
      if (req.url === '/stall') {
        res.write(event('first'))
        stalled.push(res)
        return
      }
      res.write(event('Once'))
      // The response ends a little after [DONE], as a real node's may.
      setTimeout(() => res.write(`${event(' upon')}data: [DONE]\n\n`), 2)
      setTimeout(() => res.end(), 6)
    })
  })
  server.on('connection', () => connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
after(async () => {
  for (const res of stalled) res.destroy()
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

const relayOptions = {
  stallTimeoutMs: 5000,
  deadline: performance.now() + 60_000,
  dropUsageEvent: false,
  dropTokenIds: false,
  onUsage: () => {},
  resume: async () => null,
  onGiveUp: () => {},
}

test('streams read to [DONE] keep their upstream connection: thirty in a row use one or two (the next may start before undici has put the last one back)', async () => {
  const upstream = createNodeUpstream()
  connections = 0
  try {
    for (let i = 0; i < 30; i++) {
      const answer = await upstream({
        url: `${origin}/v1/completions`,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      })
      const ends: string[] = []
      const text = await new Response(
        relayEventStream({ ...relayOptions, body: answer.body!, onEnd: (outcome) => ends.push(outcome) }),
      ).text()
      assert.ok(text.endsWith('data: [DONE]\n\n'), text)
      assert.ok(text.includes('Once') && text.includes(' upon'))
      assert.deepEqual(ends, ['ok'])
    }
    assert.ok(connections <= 2, `${connections} connections`)
  } finally {
    await upstream.close()
  }
})

test('a backend stream with CRLF line ends and multi-line data passes through event by event', async () => {
  const upstream = createNodeUpstream()
  try {
    const answer = await upstream({ url: `${origin}/crlf`, method: 'POST', headers: {}, body: '{}' })
    const ends: string[] = []
    let resumes = 0
    const relayed = relayEventStream({
      ...relayOptions,
      dropTokenIds: true,
      body: answer.body!,
      onEnd: (outcome) => ends.push(outcome),
      resume: async () => {
        resumes++
        return null
      },
    })
    const text = await new Response(relayed).text()
    const events = text.split('\n\n').filter(Boolean)
    assert.equal(events.at(-1), 'data: [DONE]')
    const chunks = events
      .slice(0, -1)
      .map((e) => JSON.parse(e.replace(/^data: /gm, '')) as { choices: { text: string; token_ids?: number[] }[] })
    assert.deepEqual(
      chunks.map((c) => c.choices[0].text),
      ['Once', ' upon'],
    )
    assert.ok(
      chunks.every((c) => c.choices[0].token_ids === undefined),
      'token_ids dropped as asked',
    )
    assert.ok(!text.includes('\r'), 'the client gets LF line ends')
    assert.equal(resumes, 0, 'nothing was taken for a broken stream')
    assert.deepEqual(ends, ['ok'])
  } finally {
    await upstream.close()
  }
})

test('a client leaving a stalled stream cancels it at once and frees the upstream connection', async () => {
  const upstream = createNodeUpstream()
  try {
    const answer = await upstream({ url: `${origin}/stall`, method: 'POST', headers: {}, body: '{}' })
    const ends: string[] = []
    let resumes = 0
    const reader = relayEventStream({
      ...relayOptions,
      body: answer.body!,
      onEnd: (outcome) => ends.push(outcome),
      resume: async () => {
        resumes++
        return null
      },
    }).getReader()
    const first = new TextDecoder().decode((await reader.read()).value)
    assert.ok(first.includes('first'))
    const closed = new Promise((resolve) => stalled.at(-1)!.once('close', resolve))
    // Let the relay start its next read of the stalled body: cancelling must not wait behind
    // it, and its failure must not be taken for the node's.
    await new Promise((resolve) => setTimeout(resolve, 20))
    const cancelled = reader.cancel()
    await Promise.race([
      cancelled,
      new Promise((_, reject) => setTimeout(() => reject(new Error('cancel hung')), 2000)),
    ])
    await Promise.race([
      closed,
      new Promise((_, reject) => setTimeout(() => reject(new Error('upstream connection not closed')), 2000)),
    ])
    assert.deepEqual(ends, ['client_closed'])
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.equal(resumes, 0, 'a stream the client left is not continued on another node')
  } finally {
    await upstream.close()
  }
})

test('a stream that stalls after its first event ends with an error event once no node can continue it', async () => {
  const upstream = createNodeUpstream()
  try {
    const answer = await upstream({ url: `${origin}/stall`, method: 'POST', headers: {}, body: '{}' })
    const ends: string[] = []
    const gaveUp: string[] = []
    const text = await new Response(
      relayEventStream({
        ...relayOptions,
        stallTimeoutMs: 100,
        body: answer.body!,
        onGiveUp: (failure) => gaveUp.push(failure.reason),
        onEnd: (outcome) => ends.push(outcome),
      }),
    ).text()
    assert.ok(text.includes('first'))
    assert.ok(text.includes('"code":"stream_interrupted"'), text)
    assert.deepEqual(gaveUp, ['stall'])
    assert.deepEqual(ends, ['ok'])
  } finally {
    await upstream.close()
  }
})
