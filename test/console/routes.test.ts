import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, describe, test } from 'node:test'
import { createGatewayApp } from '../../gateway/app.ts'
import { parseGatewayConfig } from '../../gateway/config/parse.ts'
import { createMemoryRateLimits } from '../../gateway/limits/rate-limit-store.ts'
import { createPromMetrics } from '../../gateway/node/prom-metrics.ts'
import { Router } from '../../gateway/routing/router.ts'
import { MemoryCacheStore, MemoryKeyStore } from '../../gateway/stores/memory.ts'
import type { UpstreamFetch } from '../../gateway/upstream/upstream.ts'

// The console routes inside the real app (in process, with a stand-in backend node): who may
// see what, the headers the page is served with, and that the charts count client traffic only.
const ADMIN = 'console-admin-token-0123456789'
const KEY = 'sy-console-routes-test-key-000000000'
const quiet = { info() {}, warn() {}, error() {} }
const completion = JSON.stringify({
  id: 'c',
  object: 'text_completion',
  created: 0,
  model: 'm',
  choices: [{ index: 0, text: ' hi', finish_reason: 'length' }],
  usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
})
const upstream: UpstreamFetch = async (request) => {
  const body = request.url.endsWith('/ready') ? '{"status":"ready"}' : completion
  return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } })
}

function gateway(env: Record<string, string>) {
  const config = parseGatewayConfig(
    {
      auth: { apiKeys: [{ id: 'k', tenant: 't', hash: createHash('sha256').update(KEY).digest('hex') }] },
      cache: { enabled: false },
      routing: { regions: [{ name: 'eu', nodes: [{ id: 'eu-1', url: 'http://eu-1.internal:8000' }] }] },
    },
    env,
  )
  const metrics = createPromMetrics({ defaultMetrics: false })
  const router = new Router(config.routing, { metrics: metrics.routing, logger: quiet, upstream })
  const app = createGatewayApp({
    config,
    logger: quiet,
    metrics,
    keyStore: new MemoryKeyStore(),
    rateLimits: createMemoryRateLimits(),
    cacheStore: new MemoryCacheStore(),
    upstream,
    router,
    peerAddress: () => '127.0.0.1',
  })
  return { app, router }
}

describe('console routes', () => {
  const { app, router } = gateway({ ADMIN_TOKEN: ADMIN })
  const admin = { authorization: `Bearer ${ADMIN}` }
  after(() => router.close())

  test('the page and its assets are public, contain no data, and carry a strict policy', async () => {
    const page = await app.request('/console')
    assert.equal(page.status, 200)
    assert.match(page.headers.get('content-type')!, /^text\/html/)
    const html = await page.text()
    assert.doesNotMatch(html, /eu-1|internal/, 'no topology in the public shell')
    assert.doesNotMatch(html, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script')
    assert.doesNotMatch(html, /\sstyle=|<style/, 'no inline style')
    const csp = page.headers.get('content-security-policy')!
    for (const directive of ["default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"])
      assert.ok(csp.includes(directive), directive)
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|\*/)
    assert.equal(page.headers.get('x-frame-options'), 'DENY')
    assert.equal(page.headers.get('cache-control'), 'no-store')
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff')
    for (const [path, type] of [
      ['/console/app.js', 'text/javascript'],
      ['/console/charts.js', 'text/javascript'],
      ['/console/playground.js', 'text/javascript'],
      ['/console/style.css', 'text/css'],
      ['/console/icon.svg', 'image/svg+xml'],
    ]) {
      const asset = await app.request(path)
      assert.equal(asset.status, 200, path)
      assert.ok(asset.headers.get('content-type')!.startsWith(type), path)
      assert.equal(asset.headers.get('cache-control'), 'no-store')
    }
    assert.equal((await app.request('/console/nothing.js')).status, 404)
  })

  test('/console/api/* answers 401 without the admin token, with a wrong one, and with an API key', async () => {
    for (const headers of [
      {},
      { authorization: 'Bearer wrong-token-wrong-token-00' },
      { authorization: `Bearer ${KEY}` },
      { authorization: ADMIN },
    ] as Record<string, string>[]) {
      for (const path of ['/console/api/snapshot', '/console/api/other']) {
        const response = await app.request(path, { headers })
        assert.equal(response.status, 401, `${path} ${JSON.stringify(headers)}`)
        assert.equal(((await response.json()) as { error: { code: string } }).error.code, 'invalid_api_key')
      }
    }
  })

  test('the snapshot has the router status and counts client requests, not the console polling it', async () => {
    const snapshot = async () =>
      (await (await app.request('/console/api/snapshot', { headers: admin })).json()) as {
        regionHeader: string
        stepSeconds: number
        series: unknown[]
        status: { regions: { name: string; nodes: { id: string; url: string }[] }[] }
        totals: { requests: number; promptTokens: number; completionTokens: number }
      }
    const before = await snapshot()
    assert.equal(before.regionHeader, 'x-switchyard-region')
    assert.equal(before.series.length, 60)
    assert.deepEqual(
      before.status.regions.map((r) => [r.name, r.nodes.map((n) => n.id)]),
      [['eu', ['eu-1']]],
    )
    const response = await app.request('/v1/completions', {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', prompt: 'x', max_tokens: 5 }),
    })
    assert.equal(response.status, 200)
    await response.text()
    for (let i = 0; i < 3; i++) await snapshot()
    await app.request('/status', { headers: admin })
    const afterwards = await snapshot()
    assert.equal(afterwards.totals.requests - before.totals.requests, 1)
    assert.equal(afterwards.totals.promptTokens - before.totals.promptTokens, 3)
    assert.equal(afterwards.totals.completionTokens - before.totals.completionTokens, 5)
  })
})

describe('console without an admin token', () => {
  const { app, router } = gateway({})
  after(() => router.close())

  test('does not exist', async () => {
    for (const path of ['/console', '/console/app.js', '/console/api/snapshot']) {
      const response = await app.request(path, { headers: { authorization: `Bearer ${ADMIN}` } })
      assert.equal(response.status, 404, path)
    }
  })
})
