import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

/**
 * A backend node that is broken in ways its health check cannot see: it passes everything to a
 * real node (so /ready answers 200 and the tokens are real) and damages the generations.
 *
 * - 'malformed': a JSON answer comes back 200 with its body cut in half (not JSON); a stream
 *   gets a few good events and then, in turn, is cut in the middle of an event (connection
 *   destroyed), gets a garbage event that is not JSON, or ends cleanly without [DONE].
 * - 'slow': a JSON answer is held for `jsonDelayMs`; a stream gets its first events at once
 *   and then one event every `eventDelayMs` (longer than the gateway's stall timeout).
 *
 * (Nodes that accept connections and never answer: startFakeNode('hang') in fake-node.ts.)
 */
export type FaultMode = 'malformed' | 'slow'
export type StreamFault = 'cut_mid_event' | 'garbage_event' | 'end_without_done'
const STREAM_FAULTS: StreamFault[] = ['cut_mid_event', 'garbage_event', 'end_without_done']

export interface FaultyNodeOptions {
  /** Good events a damaged stream gets before the fault (default 3). */
  goodEvents?: number
  jsonDelayMs?: number
  eventDelayMs?: number
}

export async function startFaultyNode(mode: FaultMode, target: string, options: FaultyNodeOptions = {}) {
  const goodEvents = options.goodEvents ?? 3
  const state = { generations: 0, faults: {} as Record<string, number> }
  const count = (fault: string) => (state.faults[fault] = (state.faults[fault] ?? 0) + 1)
  const open = new Set<ServerResponse>()

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const generation = req.method === 'POST'
    if (generation) state.generations++
    open.add(res)
    res.on('close', () => open.delete(res))
    const upstream = httpRequest(`${target}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
      const eventStream = answer.headers['content-type']?.startsWith('text/event-stream')
      if (!generation || answer.statusCode !== 200) {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      } else if (eventStream) relayStream(answer, res)
      else relayJson(answer, res)
    })
    upstream.on('error', () => res.destroy())
    // The gateway gave up (timeout, stall): stop the real node's generation too.
    res.on('close', () => upstream.destroy())
    req.pipe(upstream)
  })

  function relayJson(answer: IncomingMessage, res: ServerResponse): void {
    const parts: Buffer[] = []
    answer.on('data', (d: Buffer) => parts.push(d))
    answer.on('end', () => {
      const body = Buffer.concat(parts)
      if (mode === 'malformed') {
        count('truncated_json')
        const half = body.subarray(0, Math.floor(body.length / 2))
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': half.length }).end(half)
      } else {
        count('delayed_json')
        setTimeout(
          () =>
            res.destroyed ||
            res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length }).end(body),
          options.jsonDelayMs ?? 5000,
        )
      }
    })
  }

  function relayStream(answer: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
    const fault = mode === 'slow' ? 'trickle' : STREAM_FAULTS[state.generations % STREAM_FAULTS.length]
    let pending = ''
    const events: string[] = []
    let sent = 0
    let upstreamDone = false
    let pumping = false
    let faulted = false

    const pump = async () => {
      if (pumping) return
      pumping = true
      while (events.length > 0 && !res.destroyed && !faulted) {
        const event = events.shift()!
        if (sent >= goodEvents) {
          if (fault === 'trickle') {
            if (sent === goodEvents) count('trickle')
            await new Promise((r) => setTimeout(r, options.eventDelayMs ?? 2500))
          } else {
            faulted = true
            count(fault)
            answer.destroy()
            if (fault === 'cut_mid_event')
              res.write(`${event.slice(0, Math.ceil(event.length / 2))}`, () => res.destroy())
            else if (fault === 'garbage_event') res.end('data: {"choices": [{"text": "garbage\n\n')
            else res.end()
            return
          }
        }
        if (res.destroyed) break
        res.write(`${event}\n\n`)
        sent++
      }
      pumping = false
      if (upstreamDone && events.length === 0 && !faulted && !res.destroyed) res.end()
    }
    answer.setEncoding('utf8')
    answer.on('data', (d: string) => {
      pending += d
      let cut: number
      while ((cut = pending.indexOf('\n\n')) !== -1) {
        events.push(pending.slice(0, cut))
        pending = pending.slice(cut + 2)
      }
      void pump()
    })
    answer.on('end', () => {
      upstreamDone = true
      void pump()
    })
    answer.on('error', () => res.destroy())
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    state,
    async stop() {
      for (const res of open) res.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
