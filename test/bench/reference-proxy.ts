import { createServer } from 'node:http'
import { Readable } from 'node:stream'
import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { Pool } from 'undici'

// Reference points for the gateway benchmark: the least a Node proxy can do per request, with
// the same upstream client the gateway uses (an undici pool). MODE=node: node:http alone;
// MODE=hono: a one-route Hono app on @hono/node-server. No auth, limits, logs or metrics.
// Event streams are passed through chunk by chunk, JSON answers read whole (as the gateway does).
const upstream = new Pool(process.env.UPSTREAM!, { connections: 128 })
const port = Number(process.env.PORT)
const headers = { 'content-type': 'application/json' }
const isStream = (contentType: unknown) => String(contentType).startsWith('text/event-stream')

if (process.env.MODE === 'hono') {
  const app = new Hono()
  app.all('*', async (c) => {
    const answer = await upstream.request({ path: c.req.path, method: 'POST', headers, body: await c.req.text() })
    const type = answer.headers['content-type']
    if (isStream(type))
      return c.body(Readable.toWeb(answer.body) as ReadableStream, answer.statusCode as 200, {
        'content-type': String(type),
      })
    return c.body(await answer.body.text(), answer.statusCode as 200, headers)
  })
  serve({ fetch: app.fetch, port, hostname: '127.0.0.1' })
} else {
  createServer(async (req, res) => {
    const chunks: Buffer[] = []
    for await (const chunk of req) chunks.push(chunk as Buffer)
    const answer = await upstream.request({ path: req.url!, method: 'POST', headers, body: Buffer.concat(chunks) })
    const type = answer.headers['content-type']
    if (isStream(type)) {
      res.writeHead(answer.statusCode, { 'content-type': String(type) })
      for await (const chunk of answer.body) res.write(chunk)
      res.end()
      return
    }
    const text = await answer.body.text()
    res.writeHead(answer.statusCode, { ...headers, 'content-length': Buffer.byteLength(text) }).end(text)
  }).listen(port, '127.0.0.1')
}
