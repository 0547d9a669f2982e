import { spawn, spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join, relative, resolve, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

/**
 * npm test: lint (Biome), the type check, then every test file, in tiers. A tier is chosen by the file's
 * folder under test/, so new files find their tier without a list to keep; a file in a
 * folder no tier names runs in `other` (serial, last), so nothing is ever skipped.
 *
 *   node --import tsx scripts/test.ts [--lint] [--typecheck] [--list] [tier ...]
 *
 * Each tier is one `node --test` run (TAP reporter: its closing `# tests / # pass / # fail`
 * lines stay in the output), followed by its wall time; the last line sums all tiers:
 * `N passed, N failed, N skipped`. The exit code is 1 if any tier fails.
 */
export interface Tier {
  name: string
  /** Folders under test/ whose files (at any depth) belong here. */
  folders: string[]
  /** Files run at once; 1 for tiers of processes, ports and timing-sensitive checks. */
  concurrency: number
  holds: string
}

/** Files in parallel in the unit tier: TEST_CONCURRENCY, else the CPUs (at least 2; these tests mostly wait). */
const unitConcurrency = Number(process.env.TEST_CONCURRENCY) || Math.max(2, availableParallelism())

export const TIERS: Tier[] = [
  {
    name: 'unit',
    folders: ['openai', 'lib', 'backend', 'gateway', 'scripts'],
    concurrency: unitConcurrency,
    holds: 'in-process tests (real ONNX sessions, the gateway app through app.request, private redis-servers)',
  },
  {
    name: 'e2e',
    folders: ['e2e', 'fuzz', 'security'],
    concurrency: 1,
    holds: 'real backend and gateway processes over HTTP',
  },
  {
    name: 'workers',
    folders: ['workers'],
    concurrency: 1,
    holds: 'the Workers build in workerd (wrangler, Miniflare)',
  },
  {
    name: 'console',
    folders: ['console'],
    concurrency: 1,
    holds: 'the operator console: routes in process, the page in Chromium',
  },
  {
    name: 'infra',
    folders: ['infra'],
    concurrency: 1,
    holds: 'Dockerfiles, Compose, Kubernetes, Prometheus rules, YAML lint',
  },
  {
    name: 'chaos',
    folders: ['chaos'],
    concurrency: 1,
    holds: 'the chaos run: two gateways, four backends, Redis, failures injected',
  },
]
/** Where files of folders no tier names go. */
export const OTHER: Tier = {
  name: 'other',
  folders: [],
  concurrency: 1,
  holds: 'test files in folders no tier names (serial)',
}

const ROOT = resolve(fileURLToPath(import.meta.url), '../..')

/** Every *.test.ts under `testDir`, relative to `root`, sorted. */
export function findTestFiles(testDir: string, root: string): string[] {
  const files: string[] = []
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name)
      if (entry.isDirectory() && entry.name !== 'node_modules') walk(path)
      else if (entry.isFile() && entry.name.endsWith('.test.ts')) files.push(relative(root, path).split(sep).join('/'))
    }
  }
  walk(testDir)
  return files.sort()
}

/** The tier of a file given relative to the test folder (`gateway/proxy/forward.test.ts`). */
export function tierOf(file: string, tiers: Tier[] = TIERS): Tier {
  const folder = file.split('/')[0]
  return tiers.find((t) => file.includes('/') && t.folders.includes(folder)) ?? OTHER
}

/** Files per tier, in run order; tiers with no files left out. */
export function plan(files: string[], testDirName = 'test', tiers: Tier[] = TIERS): { tier: Tier; files: string[] }[] {
  const groups = new Map<Tier, string[]>()
  for (const file of files) {
    const tier = tierOf(file.slice(testDirName.length + 1), tiers)
    groups.set(tier, [...(groups.get(tier) ?? []), file])
  }
  return [...tiers, OTHER].filter((t) => groups.has(t)).map((tier) => ({ tier, files: groups.get(tier)! }))
}

export interface Counts {
  tests: number
  passed: number
  failed: number
  skipped: number
}

/** The counts from a TAP run's closing lines (the last of each wins: tests may print `# ...` lines of their own). */
export function summaryOf(tap: string): Counts {
  const last: Record<string, number> = {}
  for (const match of tap.matchAll(/^# (tests|pass|fail|cancelled|skipped|todo) (\d+)$/gm))
    last[match[1]] = Number(match[2])
  const n = (key: string) => last[key] ?? 0
  // A cancelled test (its file crashed or timed out) did not pass: it counts as failed.
  return { tests: n('tests'), passed: n('pass'), failed: n('fail') + n('cancelled'), skipped: n('skipped') + n('todo') }
}

/** Runs one tier's files in one `node --test`, echoing its output; resolves with its counts and exit code. */
function runTier(tier: Tier, files: string[], root: string): Promise<Counts & { code: number; seconds: number }> {
  const started = performance.now()
  const args = ['--import', 'tsx', '--test', '--test-reporter=tap', `--test-concurrency=${tier.concurrency}`, ...files]
  // Not NODE_TEST_CONTEXT: set when this runs under a test runner, it would make node report in its child protocol.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env
  const child = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'inherit'] })
  let output = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (text: string) => {
    output += text
    process.stdout.write(text)
  })
  return new Promise((done) => {
    child.on('close', (code, signal) => {
      const counts = summaryOf(output)
      const failedToRun = code !== 0 && counts.failed === 0
      done({
        ...counts,
        failed: counts.failed + (failedToRun ? 1 : 0),
        code: code ?? (signal ? 1 : 0),
        seconds: (performance.now() - started) / 1000,
      })
    })
  })
}

const format = (c: Counts) => `${c.passed} passed, ${c.failed} failed${c.skipped ? `, ${c.skipped} skipped` : ''}`

async function main(argv: string[]): Promise<number> {
  const root = process.env.TEST_ROOT ? resolve(process.env.TEST_ROOT) : ROOT
  const wanted = argv.filter((a) => !a.startsWith('--'))
  const known = [...TIERS, OTHER].map((t) => t.name)
  const unknown = wanted.filter((w) => !known.includes(w))
  if (unknown.length) {
    console.error(`Unknown tier ${unknown.join(', ')}; tiers: ${known.join(', ')}`)
    return 2
  }
  const tiers = plan(findTestFiles(join(root, 'test'), root)).filter(
    (p) => wanted.length === 0 || wanted.includes(p.tier.name),
  )
  if (argv.includes('--list')) {
    for (const { tier, files } of tiers)
      console.log(
        `${tier.name} (${files.length} files, concurrency ${tier.concurrency}): ${tier.holds}\n  ${files.join('\n  ')}`,
      )
    return 0
  }
  const times: string[] = []
  if (argv.includes('--lint')) {
    // Biome: formatting, lint rules and the import boundaries of biome.jsonc.
    const started = performance.now()
    const biome = spawnSync(join(ROOT, 'node_modules/.bin/biome'), ['ci', '--colors=off', '.'], {
      cwd: root,
      stdio: 'inherit',
    })
    const seconds = (performance.now() - started) / 1000
    console.log(`\n## lint: ${biome.status === 0 ? 'ok' : 'failed'} in ${seconds.toFixed(1)} s`)
    if (biome.status !== 0) {
      console.log('lint failed (npx biome check --write . fixes formatting); no tests run')
      return 1
    }
    times.push(`lint: ${seconds.toFixed(1)} s`)
  }
  if (argv.includes('--typecheck')) {
    const started = performance.now()
    const tsc = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '--noEmit', '-p', '.'], {
      cwd: root,
      stdio: 'inherit',
    })
    const seconds = (performance.now() - started) / 1000
    console.log(`\n## type check: ${tsc.status === 0 ? 'ok' : 'failed'} in ${seconds.toFixed(1)} s`)
    if (tsc.status !== 0) {
      console.log('type check failed; no tests run')
      return 1
    }
    times.push(`type check: ${seconds.toFixed(1)} s`)
  }
  const total: Counts = { tests: 0, passed: 0, failed: 0, skipped: 0 }
  let failedTiers = 0
  const started = performance.now()
  for (const { tier, files } of tiers) {
    console.log(`\n## tier ${tier.name}: ${files.length} files, ${tier.concurrency} at a time (${tier.holds})`)
    const result = await runTier(tier, files, root)
    for (const key of ['tests', 'passed', 'failed', 'skipped'] as const) total[key] += result[key]
    if (result.code !== 0 || result.failed > 0) failedTiers++
    const line = `tier ${tier.name}: ${format(result)} in ${result.seconds.toFixed(1)} s${result.code !== 0 ? ` (exit code ${result.code})` : ''}`
    console.log(`\n## ${line}`)
    times.push(line)
  }
  console.log(`\n## ${tiers.length} tiers in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  for (const line of times) console.log(`##   ${line}`)
  console.log(format(total))
  return failedTiers > 0 ? 1 : 0
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href)
  process.exitCode = await main(process.argv.slice(2))
