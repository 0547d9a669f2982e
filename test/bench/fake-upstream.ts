import { createServer } from 'node:http'

// A fast stand-in for a backend node, for the gateway benchmark: answers completions at once
// (JSON, or a short SSE stream) so the numbers measure the proxy, not generation.
const json = JSON.stringify({
  id: 'cmpl-bench',
  object: 'text_completion',
  created: 0,
  model: 'bench',
  choices: [{ index: 0, text: ' hello world', logprobs: null, finish_reason: 'length' }],
  usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
})
const chunk = (text: string) =>
  `data: ${JSON.stringify({ id: 'cmpl-bench', object: 'text_completion', created: 0, model: 'bench', choices: [{ index: 0, text, logprobs: null, finish_reason: null }] })}\n\n`
const usage = `data: ${JSON.stringify({ id: 'cmpl-bench', object: 'text_completion', created: 0, model: 'bench', choices: [], usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 } })}\n\n`

const server = createServer((req, res) => {
  if (req.method === 'GET') {
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ready"}')
    return
  }
  let body = ''
  req.on('data', (d) => (body += d))
  req.on('end', () => {
    if (body.includes('"stream":true')) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' })
      res.write(chunk(' hello'))
      setTimeout(() => {
        res.write(`${chunk(' world') + chunk('!') + chunk(' bye') + usage}data: [DONE]\n\n`)
        res.end()
      }, 1)
      return
    }
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) }).end(json)
  })
})
server.keepAliveTimeout = 60_000
server.listen(Number(process.env.PORT ?? 0), '127.0.0.1', () =>
  console.log(JSON.stringify({ port: (server.address() as { port: number }).port })),
)
