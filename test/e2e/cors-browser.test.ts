import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { after, before, describe, test } from 'node:test'
import type { Browser } from 'playwright-core'
import { launchChromium } from '../console/console-page.ts'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'

// Browser clients in headless Chromium: a page on an allowed origin streams a chat completion
// from the gateway (its preflight passes without credentials); a page on another origin is
// stopped by the browser.
const KEY = 'sy-cors-browser-key-0123456789abcdef'

/** A page server: its origin is what the gateway allows or not. */
async function pageServer(): Promise<{ server: Server; origin: string }> {
  const server = createServer((_req, res) =>
    res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>client</title>'),
  )
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` }
}

/** Runs in the page: a streamed chat completion with fetch, as a browser SDK would send it. */
async function streamChat(args: {
  url: string
  key: string
}): Promise<{ ok: true; status: number; text: string; requestId: string | null } | { ok: false; error: string }> {
  try {
    const response = await fetch(`${args.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${args.key}`, 'content-type': 'application/json', 'x-stainless-lang': 'js' },
      body: JSON.stringify({
        model: 'stories260K',
        messages: [{ role: 'user', content: 'Once upon a time' }],
        max_tokens: 12,
        temperature: 0,
        stream: true,
      }),
    })
    return {
      ok: true,
      status: response.status,
      text: await response.text(),
      requestId: response.headers.get('x-request-id'),
    }
  } catch (error) {
    return { ok: false, error: String(error) }
  }
}

describe('CORS in Chromium', () => {
  let backend: BackendProcess
  let gateway: GatewayProcess
  let browser: Browser
  let allowed: Awaited<ReturnType<typeof pageServer>>
  let other: Awaited<ReturnType<typeof pageServer>>

  before(async () => {
    ;[backend, browser, allowed, other] = await Promise.all([
      startBackend(),
      launchChromium(),
      pageServer(),
      pageServer(),
    ])
    gateway = await startGateway({
      backend: { url: backend.url },
      auth: { apiKeys: [{ id: 'browser', tenant: 'web', hash: createHash('sha256').update(KEY).digest('hex') }] },
      server: { cors: { allowedOrigins: [allowed.origin] } },
    })
  })
  after(async () => {
    await browser?.close()
    await Promise.all([gateway?.stop(), backend?.stop()])
    allowed?.server.close()
    other?.server.close()
  })

  test('a page on an allowed origin streams a chat completion and reads the exposed headers', async () => {
    const page = await browser.newPage()
    await page.goto(allowed.origin)
    const result = await page.evaluate(streamChat, { url: gateway.url, key: KEY })
    assert.ok(result.ok, JSON.stringify(result))
    assert.equal(result.status, 200)
    assert.match(result.text, /"chat\.completion\.chunk"/)
    assert.ok(result.text.trimEnd().endsWith('data: [DONE]'))
    assert.ok(result.requestId, 'x-request-id is exposed to the page')
    // The preflight (the browser sends one for Authorization) was answered and logged without a key.
    assert.match(gateway.output(), /"method":"OPTIONS"[^\n]*"status":204/)
    await page.close()
  })

  test('a page on another origin is stopped by the browser', async () => {
    const page = await browser.newPage()
    await page.goto(other.origin)
    const result = await page.evaluate(streamChat, { url: gateway.url, key: KEY })
    assert.equal(result.ok, false)
    assert.match((result as { error: string }).error, /TypeError|Failed to fetch/)
    await page.close()
  })
})
