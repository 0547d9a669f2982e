import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { after, describe, test } from 'node:test'
import { OTHER, plan, summaryOf, TIERS, tierOf } from '../../scripts/test.ts'
import { REPO_ROOT } from '../helpers/paths.ts'

// The tier runner behind npm test: which tier a file lands in, and, on a scratch tree of small
// test files, that every tier runs, its counts and time are printed, and failures fail the run.
describe('tiers', () => {
  test('a file’s tier is its folder’s; files in folders no tier names, or at the top, run in other', () => {
    assert.equal(tierOf('gateway/proxy/forward.test.ts').name, 'unit')
    assert.equal(tierOf('backend/model/runner.test.ts').name, 'unit')
    assert.equal(tierOf('e2e/gateway-routing.test.ts').name, 'e2e')
    assert.equal(tierOf('security/auth.test.ts').name, 'e2e')
    assert.equal(tierOf('workers/stores.test.ts').name, 'workers')
    assert.equal(tierOf('console/console.test.ts').name, 'console')
    assert.equal(tierOf('chaos/chaos.test.ts').name, 'chaos')
    assert.equal(tierOf('infra/compose.test.ts').name, 'infra')
    assert.equal(tierOf('readme/examples.test.ts'), OTHER)
    assert.equal(tierOf('gateway.test.ts'), OTHER, 'a file named like a folder is not in it')
    const names = TIERS.map((t) => t.name)
    assert.deepEqual(new Set(names).size, names.length)
    const folders = TIERS.flatMap((t) => t.folders)
    assert.deepEqual(new Set(folders).size, folders.length, 'a folder belongs to one tier')
  })

  test('plan keeps every file exactly once, tiers in order, other last', () => {
    const files = [
      'test/zzz/x.test.ts',
      'test/chaos/c.test.ts',
      'test/gateway/a.test.ts',
      'test/e2e/b.test.ts',
      'test/top.test.ts',
    ]
    const planned = plan(files)
    assert.deepEqual(
      planned.map((p) => [p.tier.name, p.files]),
      [
        ['unit', ['test/gateway/a.test.ts']],
        ['e2e', ['test/e2e/b.test.ts']],
        ['chaos', ['test/chaos/c.test.ts']],
        ['other', ['test/zzz/x.test.ts', 'test/top.test.ts']],
      ],
    )
  })

  test('counts come from the last closing lines; cancelled counts as failed', () => {
    const tap = [
      '# tests 99',
      'ok 1 - a',
      '# Subtest: b',
      '# tests 4',
      '# suites 1',
      '# pass 2',
      '# fail 1',
      '# cancelled 1',
      '# skipped 0',
      '# todo 0',
    ].join('\n')
    assert.deepEqual(summaryOf(tap), { tests: 4, passed: 2, failed: 2, skipped: 0 })
    assert.deepEqual(summaryOf(''), { tests: 0, passed: 0, failed: 0, skipped: 0 })
  })
})

describe('the runner on a scratch tree', () => {
  const root = mkdtempSync(join(tmpdir(), 'switchyard-tiers-'))
  after(() => rmSync(root, { recursive: true, force: true }))
  symlinkSync(resolve(REPO_ROOT, 'node_modules'), join(root, 'node_modules'))
  const write = (path: string, text: string) => {
    mkdirSync(dirname(join(root, path)), { recursive: true })
    writeFileSync(join(root, path), `import { test } from 'node:test'\n${text}\n`)
  }
  write('test/gateway/fast.test.ts', "test('passes', () => {})\ntest('is skipped', { skip: true }, () => {})")
  write('test/brand-new/slow.test.ts', "test('passes too', () => {})")
  const run = (args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', resolve(REPO_ROOT, 'scripts/test.ts'), ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, TEST_ROOT: root },
      encoding: 'utf8',
    })

  test('every tier runs, each prints node’s closing lines and its time, and the last line sums them', () => {
    const result = run([])
    assert.equal(result.status, 0, result.stdout + result.stderr)
    const out = result.stdout
    assert.match(out, /## tier unit: 1 passed, 0 failed, 1 skipped in \d+\.\d s/)
    assert.match(out, /## tier other: 1 passed, 0 failed in \d+\.\d s/)
    assert.equal(out.match(/^# tests \d+$/gm)?.length, 2)
    assert.equal(out.match(/^# pass \d+$/gm)?.length, 2)
    assert.equal(out.match(/^# fail \d+$/gm)?.length, 2)
    assert.equal(out.trimEnd().split('\n').at(-1), '2 passed, 0 failed, 1 skipped')
  })

  test('a failing test in any tier fails the run; the other tiers still run; named tiers run alone', () => {
    write('test/e2e/broken.test.ts', "test('fails', () => { throw new Error('no') })")
    write('test/e2e/crash.test.ts', "throw new Error('the file does not even load')")
    try {
      const result = run(['e2e', 'other'])
      assert.equal(result.status, 1)
      assert.doesNotMatch(result.stdout, /tier unit/)
      assert.match(result.stdout, /## tier e2e: 0 passed, 2 failed/)
      assert.match(result.stdout, /## tier other: 1 passed, 0 failed/)
      assert.equal(result.stdout.trimEnd().split('\n').at(-1), '1 passed, 2 failed')
    } finally {
      rmSync(join(root, 'test/e2e'), { recursive: true })
    }
  })

  test('--typecheck runs the type check first; a type error stops the run before any test', () => {
    writeFileSync(
      join(root, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'NodeNext', strict: true, noEmit: true, types: ['node'] },
        include: ['test'],
      }),
    )
    const clean = run(['--typecheck', 'unit'])
    assert.equal(clean.status, 0, clean.stdout + clean.stderr)
    assert.match(clean.stdout, /## type check: ok in \d+\.\d s/)
    write('test/gateway/typo.test.ts', "const count: number = 'three'\nvoid count")
    try {
      const broken = run(['--typecheck'])
      assert.equal(broken.status, 1)
      assert.match(broken.stdout, /## type check: failed/)
      assert.doesNotMatch(broken.stdout, /## tier/)
      assert.equal(broken.stdout.trimEnd().split('\n').at(-1), 'type check failed; no tests run')
    } finally {
      rmSync(join(root, 'test/gateway/typo.test.ts'))
      rmSync(join(root, 'tsconfig.json'))
    }
  })

  test('--lint runs Biome first; a lint error stops the run before the type check and any test', () => {
    writeFileSync(
      join(root, 'biome.json'),
      JSON.stringify({
        formatter: { enabled: false },
        assist: { enabled: false },
        linter: { rules: { suspicious: { noDebugger: 'error' } } },
      }),
    )
    try {
      const clean = run(['--lint', 'unit'])
      assert.equal(clean.status, 0, clean.stdout + clean.stderr)
      assert.match(clean.stdout, /## lint: ok in \d+\.\d s/)
      write('test/gateway/debugger.test.ts', 'debugger\n')
      try {
        const broken = run(['--lint', '--typecheck'])
        assert.equal(broken.status, 1)
        assert.match(broken.stdout, /## lint: failed/)
        assert.doesNotMatch(broken.stdout, /## type check|## tier/)
        assert.match(broken.stdout.trimEnd().split('\n').at(-1)!, /^lint failed/)
      } finally {
        rmSync(join(root, 'test/gateway/debugger.test.ts'))
      }
    } finally {
      rmSync(join(root, 'biome.json'))
    }
  })

  test('an unknown tier name is refused', () => {
    const result = run(['nope'])
    assert.equal(result.status, 2)
    assert.match(result.stderr, /Unknown tier nope; tiers: unit, e2e/)
  })
})
