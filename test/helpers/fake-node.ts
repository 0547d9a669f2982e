import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export type FakeNodeMode = 'fail' | 'hang' | 'proxy'

/**
 * A stand-in backend node for failures a real node cannot be made to produce on demand:
 * 'fail' answers every generation with a 500, 'hang' accepts connections and never answers,
 * 'proxy' passes everything to a real node. /ready answers 200 except in 'hang'.
 */
export async function startFakeNode(mode: FakeNodeMode, target?: string) {
  const state = { mode, generations: 0, connections: 0 }
  const held: ServerResponse[] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    if (state.mode === 'hang') {
      held.push(res)
      return
    }
    if (req.url !== '/ready' && req.url !== '/health') state.generations++
    if (state.mode === 'proxy' && target) {
      const upstream = httpRequest(`${target}${req.url}`, { method: req.method, headers: req.headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(res)
      })
      upstream.on('error', () => res.destroy())
      req.pipe(upstream)
      return
    }
    req.resume()
    if (req.url === '/ready' || req.url === '/health')
      return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}')
    res
      .writeHead(500, { 'content-type': 'application/json' })
      .end('{"error":{"message":"boom","type":"server_error","param":null,"code":"internal_error"}}')
  })
  server.on('connection', () => state.connections++)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    url,
    state,
    setMode(next: FakeNodeMode) {
      state.mode = next
      for (const res of held.splice(0)) res.destroy()
    },
    async stop() {
      for (const res of held.splice(0)) res.destroy()
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
