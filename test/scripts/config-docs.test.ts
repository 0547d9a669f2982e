import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { renderConfigDocs } from '../../scripts/config-docs.ts'
import { REPO_ROOT } from '../helpers/paths.ts'

// docs/configuration.md's tables are generated from the config schemas (npm run docs:config):
// this is the CI check that they are not stale.
const script = resolve(REPO_ROOT, 'scripts/config-docs.ts')
const docs = resolve(REPO_ROOT, 'docs/configuration.md')
const check = (file: string) =>
  spawnSync(process.execPath, ['--import', 'tsx', script, '--check', file], { cwd: REPO_ROOT, encoding: 'utf8' })

test('docs/configuration.md is up to date with the schemas (npm run docs:config --check)', () => {
  const result = check(docs)
  assert.equal(result.status, 0, `${result.stdout}${result.stderr}`)
})

test('--check fails on a stale table and names the command that fixes it; writing fixes it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'config-docs-'))
  try {
    const file = join(dir, 'configuration.md')
    writeFileSync(
      file,
      readFileSync(docs, 'utf8').replace('| `PORT` | integer | `8080` |', '| `PORT` | integer | `9090` |'),
    )
    const stale = check(file)
    assert.equal(stale.status, 1)
    assert.match(stale.stderr, /npm run docs:config/)
    const written = spawnSync(process.execPath, ['--import', 'tsx', script, file], { cwd: REPO_ROOT, encoding: 'utf8' })
    assert.equal(written.status, 0, written.stderr)
    assert.equal(check(file).status, 0)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test("every gateway config key and both services' variables have a row", () => {
  const text = readFileSync(docs, 'utf8')
  for (const name of [
    '`server.cors.allowedOrigins`',
    '`routing.retry.maxAttempts`',
    '`auth.keyCache.ttlSeconds`',
    '`ENCODER_MAX_QUEUE`',
    '`REDIS_SENTINEL_NAME`',
  ])
    assert.ok(text.includes(`| ${name} |`), name)
  assert.throws(() => renderConfigDocs('no markers here'), /markers/)
})
