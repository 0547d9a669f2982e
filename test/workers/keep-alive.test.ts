import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, test } from 'node:test'
import { build } from 'esbuild'
import { Miniflare } from 'miniflare'
import { unstable_getMiniflareWorkerOptions } from 'wrangler'
import { REPO_ROOT } from '../helpers/paths.ts'

// keepAlive on workerd itself: work started after a stream's last byte (refunds, slot
// releases, cache writes) survives only if the request was told to wait for it, and keepAlive
// must find that request from inside the stream's callbacks (the async context on workerd).
const dir = mkdtempSync(join(tmpdir(), 'switchyard-keep-alive-'))
let mf: Miniflare
let url: string

before(async () => {
  const scriptPath = join(dir, 'worker.js')
  await build({
    entryPoints: [resolve(import.meta.dirname, 'fixtures/keep-alive-worker.ts')],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    external: ['cloudflare:workers', 'node:*'],
    outfile: scriptPath,
    logLevel: 'silent',
  })
  const { compatibilityDate, compatibilityFlags } = unstable_getMiniflareWorkerOptions(
    resolve(REPO_ROOT, 'wrangler.toml'),
  ).workerOptions
  mf = new Miniflare({
    modules: true,
    scriptPath,
    modulesRoot: dir,
    compatibilityDate,
    compatibilityFlags,
    cf: false,
    host: '127.0.0.1',
    port: 0,
    durableObjects: { COUNTER: 'SlowCounter' },
  })
  url = (await mf.ready).origin
})
after(async () => {
  await mf?.dispose()
  rmSync(dir, { recursive: true, force: true })
})

const count = async () => (await (await fetch(`${url}/count`)).json()) as number
const streams = async (query: string) => {
  for (let i = 0; i < 5; i++) assert.equal(await (await fetch(`${url}/?${query}`)).text(), 'data\n'.repeat(3))
  await new Promise((r) => setTimeout(r, 500))
}

test('work started at the end of a stream completes when passed to keepAlive', async () => {
  await streams('keepAlive=1')
  assert.equal(await count(), 5)
})

test('without it workerd drops the work with the request (why keepAlive exists)', async () => {
  const before = await count()
  await streams('keepAlive=0')
  assert.equal(await count(), before)
})
