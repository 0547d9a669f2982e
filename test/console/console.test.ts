import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { Browser, Page } from 'playwright-core'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { REPO_ROOT } from '../helpers/paths.ts'
import { referenceContinuation } from '../helpers/reference.ts'
import { assertStreamed, consolePage, launchChromium, signIn, streamFromPlayground } from './console-page.ts'

// The operator console in headless Chromium against a real gateway in front of three real
// backend nodes (stories260K) in two regions.
const KEY = 'sy-console-test-key-0000000000000000'
const SCREENSHOT = resolve(REPO_ROOT, 'test-artifacts/console.png')
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

describe('operator console', () => {
  const backends: Record<string, BackendProcess> = {}
  let gateway: GatewayProcess
  let browser: Browser
  let page: Page
  let problems: string[]
  let traffic: Promise<void> | undefined
  let trafficOn = true

  before(async () => {
    const [a, b, c] = await Promise.all([
      startBackend(),
      startBackend(),
      startBackend(),
      launchChromium().then((launched) => (browser = launched)),
    ])
    Object.assign(backends, { 'eu-1': a, 'eu-2': b, 'us-1': c })
    gateway = await startGateway({
      auth: {
        apiKeys: [
          {
            id: 'console',
            tenant: 'ops',
            hash: createHash('sha256').update(KEY).digest('hex'),
            limits: { requestsPerWindow: 100_000, tokensPerMinute: 100_000_000, maxConcurrent: 1000 },
          },
        ],
      },
      cache: { enabled: false },
      routing: {
        region: 'eu',
        regions: [
          {
            name: 'eu',
            fallback: ['us'],
            nodes: [
              { id: 'eu-1', url: a.url },
              { id: 'eu-2', url: b.url },
            ],
          },
          { name: 'us', fallback: ['eu'], nodes: [{ id: 'us-1', url: c.url }] },
        ],
        healthCheck: { intervalMs: 200, timeoutMs: 1000, unhealthyAfter: 2, healthyAfter: 1 },
      },
    })
    // Real client traffic while the test runs, so the charts have something to show; every
    // tenth request is invalid (a 400) so the error line is exercised too.
    traffic = (async () => {
      for (let i = 0; trafficOn; i++) {
        const body = {
          model: 'stories260K',
          prompt: 'Once upon a time',
          max_tokens: 24 + (i % 5) * 8,
          temperature: i % 10 === 9 ? 7 : 0.8,
        }
        await postJson(`${gateway.url}/v1/completions`, body, { authorization: `Bearer ${KEY}` }).then(
          (r) => r.text(),
          () => '',
        )
        await sleep(60)
      }
    })()
    ;({ page, problems } = await consolePage(browser))
  })

  after(async () => {
    trafficOn = false
    await traffic
    await browser?.close()
    await gateway?.stop()
    await Promise.all(Object.values(backends).map((b) => b.stop('SIGKILL')))
  })

  test('without the admin token the console API is 401 and the page holds no data', async () => {
    for (const headers of [{}, { authorization: `Bearer ${KEY}` }] as Record<string, string>[]) {
      const response = await fetch(`${gateway.url}/console/api/snapshot`, { headers })
      assert.equal(response.status, 401)
    }
    const shell = await (await fetch(`${gateway.url}/console`)).text()
    assert.doesNotMatch(shell, /eu-1|us-1|127\.0\.0\.1/)
  })

  test('shows both regions live, a killed node turning unhealthy, and streams from the playground', async () => {
    await signIn(page, gateway.url, ADMIN_TOKEN)

    // Every node of both regions, healthy, under its region's heading.
    for (const [region, ids] of [
      ['eu', ['eu-1', 'eu-2']],
      ['us', ['us-1']],
    ] as const) {
      const table = page.getByRole('table', { name: region, exact: true })
      for (const id of ids)
        await table.locator(`tr[data-node="${id}"][data-state="healthy"]`).waitFor({ timeout: 5000 })
    }
    assert.equal(await page.locator('#tile-healthy').textContent(), '3 of 3')

    backends['eu-2'].child.kill('SIGKILL')
    const row = page.locator('tr[data-node="eu-2"]')
    await page.locator('tr[data-node="eu-2"][data-state="unhealthy"]').waitFor({ timeout: 5000 })
    assert.match((await row.textContent())!, /Unhealthy.*Failed: unreachable/)
    assert.equal(await page.locator('#tile-healthy').textContent(), '2 of 3')
    assert.match((await page.locator('#announcer').textContent())!, /eu-2 in eu is now unhealthy/)
    assert.equal(await page.locator('tr[data-node="eu-1"]').getAttribute('data-state'), 'healthy')

    // The playground, asked for region us: greedy, so the text must be the model's known continuation.
    const streamed = await streamFromPlayground(page, {
      apiKey: KEY,
      region: 'us',
      prompt: 'Once upon a time',
      maxTokens: 200,
    })
    assertStreamed(streamed, referenceContinuation(), 200)
    assert.equal(streamed.region, 'us')
    assert.equal(streamed.node, 'us-1')

    // The requests chart draws the background traffic as a line once three 5-second steps have finished.
    await page.waitForFunction(
      () => {
        const line = document.querySelector('#chart-requests .s1 .line')
        const ys =
          line
            ?.getAttribute('points')
            ?.split(' ')
            .map((p) => Number(p.split(',')[1])) ?? []
        return ys.length >= 3 && Math.max(...ys.slice(-3)) < 146 // the last three steps above the zero line (y = 146)
      },
      undefined,
      { timeout: 20_000 },
    )
    assert.match((await page.locator('#chart-latency .legend-value').first().textContent())!, /\d+ ms|s$/)

    mkdirSync(resolve(REPO_ROOT, 'test-artifacts'), { recursive: true })
    await page.evaluate(() => window.scrollTo(0, 0)) // the playground scrolled the page; the sticky header belongs at the top
    await page.screenshot({ path: SCREENSHOT, fullPage: true })
    assert.deepEqual(problems, [], 'no console errors and no page errors')
  })
})
