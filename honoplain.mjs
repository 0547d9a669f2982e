import { serve } from '@hono/node-server'
import { Hono } from 'hono'
import { Pool } from 'undici'
const pool = new Pool(process.env.UP, { connections: 128 })
const app = new Hono()
app.post('/v1/completions', async (c) => {
  const body = await c.req.text()
  const r = await pool.request({ path: '/v1/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body })
  const text = await r.body.text()
  return c.body(text, r.statusCode, { 'content-type': 'application/json' })
})
serve({ fetch: app.fetch, port: Number(process.env.PORT), hostname: '127.0.0.1' })
process.on('SIGTERM', () => process.exit(0))
