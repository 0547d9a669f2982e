import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'
import type { Browser } from 'playwright-core'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { REPO_ROOT } from '../helpers/paths.ts'
import { freePort } from '../helpers/redis-server.ts'
import { referenceContinuation } from '../helpers/reference.ts'
import { assertStreamed, consolePage, launchChromium, signIn, streamFromPlayground } from './console-page.ts'

// The console on the Workers build: gateway/workers/index.ts in workerd (`wrangler dev`, local, no
// account) in front of a real backend node. Same module, no file system, no build step.
const ADMIN_TOKEN = 'console-workers-admin-token-0123456789'
const KEY = 'sy-console-workers-key-00000000000000'

describe('operator console on Workers', () => {
  let backend: BackendProcess
  let wrangler: ChildProcess
  let output = ''
  let url: string
  let browser: Browser
  const state = mkdtempSync(join(tmpdir(), 'switchyard-console-wrangler-'))

  before(async () => {
    ;[backend, browser] = await Promise.all([startBackend(), launchChromium()])
    const config = {
      auth: { apiKeys: [{ id: 'console', tenant: 'ops', hash: createHash('sha256').update(KEY).digest('hex') }] },
      cache: { enabled: false },
      routing: {
        regions: [{ name: 'edge', nodes: [{ id: 'w-1', url: backend.url }] }],
        healthCheck: { intervalMs: 200 },
      },
    }
    const [port, inspectorPort] = [await freePort(), await freePort()]
    wrangler = spawn(
      process.execPath,
      [
        resolve(REPO_ROOT, 'node_modules/wrangler/bin/wrangler.js'),
        'dev',
        '--ip',
        '127.0.0.1',
        '--port',
        String(port),
        '--inspector-port',
        String(inspectorPort),
        '--persist-to',
        state,
        '--show-interactive-dev-session=false',
        '--var',
        `ADMIN_TOKEN:${ADMIN_TOKEN}`,
        '--var',
        `GATEWAY_CONFIG_JSON:${JSON.stringify(config)}`,
      ],
      // Its own process group, so stopping it stops the workerd it starts too.
      {
        cwd: REPO_ROOT,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
        env: {
          ...process.env,
          WRANGLER_SEND_METRICS: 'false',
          CLOUDFLARE_CF_FETCH_ENABLED: 'false',
          WRANGLER_SEND_ERROR_REPORTS: 'false',
        },
      },
    )
    wrangler.stdout!.on('data', (d) => (output += d))
    wrangler.stderr!.on('data', (d) => (output += d))
    url = `http://127.0.0.1:${port}`
    const deadline = Date.now() + 30_000
    while (
      !(await fetch(`${url}/health`).then(
        (r) => r.ok,
        () => false,
      ))
    ) {
      if (wrangler.exitCode !== null || Date.now() > deadline) throw new Error(`wrangler dev did not start:\n${output}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  })

  after(async () => {
    await browser?.close()
    if (wrangler?.exitCode === null) {
      const exited = once(wrangler, 'exit')
      process.kill(-wrangler.pid!, 'SIGTERM')
      await exited
    }
    await backend?.stop('SIGKILL')
    rmSync(state, { recursive: true, force: true })
  })

  test('serves the console, shows the node and streams from the playground', async () => {
    assert.equal((await fetch(`${url}/console/api/snapshot`)).status, 401)
    const { page, problems } = await consolePage(browser)
    await signIn(page, url, ADMIN_TOKEN)
    await page
      .getByRole('table', { name: 'edge', exact: true })
      .locator('tr[data-node="w-1"][data-state="healthy"]')
      .waitFor({ timeout: 5000 })
    const streamed = await streamFromPlayground(page, { apiKey: KEY, prompt: 'Once upon a time', maxTokens: 100 })
    assertStreamed(streamed, referenceContinuation(), 100)
    assert.equal(streamed.region, 'edge')
    assert.equal(streamed.node, 'w-1')
    assert.deepEqual(problems, [], 'no console errors and no page errors')
  })
})
