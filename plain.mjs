import { createServer } from 'node:http'
import { Pool } from 'undici'
const pool = new Pool(process.env.UP, { connections: 128 })
createServer(async (req, res) => {
  const chunks = []
  for await (const c of req) chunks.push(c)
  const r = await pool.request({ path: req.url, method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) })
  const text = await r.body.text()
  res.writeHead(r.statusCode, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text)
}).listen(Number(process.env.PORT), '127.0.0.1')
process.on('SIGTERM', () => process.exit(0))
