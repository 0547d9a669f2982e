import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { parseGatewayConfig } from '../../gateway/config/parse.ts'
import { freePort } from '../helpers/redis-server.ts'
import {
  type Block,
  ENCODER_BLOCK,
  freshClone,
  PREDICT_BLOCK,
  readmeBlocks,
  STRUCTURED_BLOCK,
  STYLES_BLOCK,
  shellCommands,
} from './readme-blocks.ts'

// Every code block of the README and of docs/*.md is either run here, on a fresh clone's state
// with real processes, or listed with the reason it cannot run in CI; a new block that is
// neither fails this test, so the documentation cannot drift from the code unnoticed.

const run = promisify(execFile)
const blocks = readmeBlocks()
const first = (prefix: string) =>
  blocks.find((b) => b.text.startsWith(prefix)) ??
  assert.fail(`neither the README nor docs/ has a block starting with ${JSON.stringify(prefix)}`)

/** Blocks not run, and why. Each entry matches one block by its start. */
const NOT_RUN: [string, string][] = [
  ['npm test', 'the whole suite: this test is part of it'],
  ['HTTP (Hono on @hono/node-server)', 'a diagram'],
  ['request id → access log', 'a diagram'],
  [
    'npm run dev:worker',
    'wrangler deploy and secrets need a Cloudflare account; the Worker build itself is run by test/workers',
  ],
  ['config.json  generation_config.json', 'a folder layout'],
  ['pip install "optimum[onnxruntime]"', 'needs Python, Hugging Face and the internet'],
  ['backend/   api/ engine/', 'a folder layout'],
  [' client ──(1)──▶ gateway', 'a diagram (docs/SECURITY.md)'],
  [
    'node --import tsx --test test/security/',
    'the security and fuzz tests themselves: run by the e2e tier (docs/SECURITY.md)',
  ],
]
/** Blocks run below, or by models-readme.test.ts and structured-readme.test.ts (by their start). */
const RUN = [
  ENCODER_BLOCK,
  PREDICT_BLOCK,
  STYLES_BLOCK,
  'npm ci',
  'MODEL_DIR=../shared/models/stories260K npm start',
  'curl -N http://127.0.0.1:8080/v1/completions',
  "import OpenAI from 'openai'",
  'npx tsx backend/model/builder/cli.ts',
  '{\n  "backend"',
  '{\n  "routing"',
  '{ "backend"',
  STRUCTURED_BLOCK,
]

let clone: { root: string; dir: string }
before(() => {
  clone = freshClone()
})
after(() => {
  // Whatever a failed test left running in the clone was started here.
  for (const { pid } of processesInClone()) process.kill(pid, 'SIGKILL')
  rmSync(clone.root, { recursive: true, force: true })
})

test('every code block of the README and docs/ is run here or listed with the reason it is not', () => {
  const known = (b: Block) =>
    [...RUN, ...NOT_RUN.map(([start]) => start)].filter((start) => b.text.startsWith(start)).length
  for (const block of blocks)
    assert.equal(
      known(block),
      1,
      `${block.file}:${block.line}: a block this test neither runs nor lists:\n${block.text}`,
    )
})

/** `npm start` (or another command) in the clone, until it prints that it runs. */
async function startEmbedded(command: string, env: Record<string, string>) {
  const [gatewayPort, backendPort] = [await freePort(), await freePort()]
  const [program, ...args] = command.split(' ')
  const child = spawn(program, args, {
    cwd: clone.dir,
    env: {
      ...process.env,
      ...env,
      PORT: String(gatewayPort),
      BACKEND_PORT: String(backendPort),
      LOG_LEVEL: 'info',
      npm_config_update_notifier: 'false',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout!.on('data', (d) => (output += d))
  child.stderr!.on('data', (d) => (output += d))
  const deadline = Date.now() + 60_000
  while (!output.includes('Switchyard is running')) {
    if (child.exitCode !== null) assert.fail(`${command} exited with ${child.exitCode}:\n${output}`)
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      assert.fail(`${command} did not start:\n${output}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  await new Promise((r) => setTimeout(r, 100))
  const key = /Demo API key[^:]*: (sy-\S+)/.exec(output)?.[1] ?? assert.fail(output)
  const printedCurl =
    /^ {2}(curl -N [\s\S]*?stream":true}')$/m.exec(output)?.[1] ?? assert.fail(`no curl command printed:\n${output}`)
  return { child, key, gatewayPort, printedCurl, output: () => output }
}

/** Processes whose working folder is the clone (npm, its shell, the launcher, the backend node). */
function processesInClone(): { pid: number; args: string }[] {
  const found: { pid: number; args: string }[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) !== clone.dir) continue
      found.push({
        pid: Number(entry),
        args: readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ').trim(),
      })
    } catch {
      // Gone meanwhile, or not ours to read.
    }
  }
  return found
}

async function untilNoProcessInClone(timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (processesInClone().length > 0) {
    if (Date.now() > deadline) assert.fail(`left running: ${JSON.stringify(processesInClone())}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const exited = (child: ChildProcess) =>
  child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise<void>((r) => child.once('exit', () => r()))

/** The README's SDK example, saved as chat.mjs in the clone as the README says, run with KEY set. */
async function runSdkExample(port: number, key: string, model?: string): Promise<string> {
  let code = first("import OpenAI from 'openai'").text.replace('127.0.0.1:8080', `127.0.0.1:${port}`)
  if (model) code = code.replace("model: 'random-tiny'", `model: '${model}'`)
  writeFileSync(join(clone.dir, 'chat.mjs'), code)
  const { stdout } = await run('node', ['chat.mjs'], {
    cwd: clone.dir,
    env: { ...process.env, KEY: key },
    timeout: 60_000,
  })
  return stdout
}

describe('Quick start, on a fresh clone', () => {
  test('npm start (random-tiny), the curl example, the printed curl, the SDK example; SIGTERM leaves nothing running', async () => {
    const quick = first('npm ci').text
    // `npm ci` itself is not run (node_modules is linked, see freshClone); `npm start` is.
    assert.deepEqual(shellCommands(quick), ['npm ci', 'npm start'])
    assert.equal(existsSync(join(clone.dir, 'models')), false, 'a fresh clone has no model')
    const started = await startEmbedded('npm start', {})
    try {
      assert.match(started.output(), /RANDOM WEIGHTS/)
      const env = { ...process.env, KEY: started.key }
      const [curl] = shellCommands(first('curl -N http://127.0.0.1:8080/v1/completions').text)
      const fromReadme = await run('bash', ['-c', curl.replace('127.0.0.1:8080', `127.0.0.1:${started.gatewayPort}`)], {
        env,
        timeout: 30_000,
      })
      assert.match(fromReadme.stdout, /"text_completion"[\s\S]*data: \[DONE\]/)
      const printed = await run('bash', ['-c', started.printedCurl], { timeout: 30_000 })
      assert.match(printed.stdout, /"chat\.completion\.chunk"[\s\S]*data: \[DONE\]/)
      // The chat stream without max_tokens that failed with a 400 on both bundled models.
      const text = await runSdkExample(started.gatewayPort, started.key)
      assert.ok(text.length > 0, 'the SDK example printed text')
    } finally {
      // To npm only, as a process manager would send it: npm and its shell end at once; the
      // launcher must notice and stop its backend too.
      started.child.kill('SIGTERM')
      await exited(started.child)
    }
    await untilNoProcessInClone(10_000)
    assert.match(started.output(), /gateway stopped/)
    assert.match(started.output(), /drained, exiting/)
  })

  test('MODEL_DIR=../shared/models/stories260K npm start and the SDK example; a killed launcher takes its backend along', async () => {
    const [command] = shellCommands(first('MODEL_DIR=../shared/models/stories260K npm start').text)
    const [assignment, ...rest] = command.split(' ')
    const [name, value] = assignment.split('=')
    const started = await startEmbedded(rest.join(' '), { [name]: value })
    try {
      assert.match(started.output(), /models: stories260K/)
      const text = await runSdkExample(started.gatewayPort, started.key, 'stories260K')
      assert.ok(text.length > 0)
      // SIGKILL runs no handler: the backend notices its launcher's IPC channel close, and leaves.
      const launcher =
        processesInClone().find((p) => p.args.includes('scripts/start.ts')) ??
        assert.fail(JSON.stringify(processesInClone()))
      process.kill(launcher.pid, 'SIGKILL')
      await exited(started.child)
      await untilNoProcessInClone(15_000)
    } finally {
      if (started.child.exitCode === null) started.child.kill('SIGKILL')
    }
  })
})

describe('other commands the README gives', () => {
  test('the model builder: the tiny preset, with the parameter count the README states', async () => {
    const lines = shellCommands(first('npx tsx backend/model/builder/cli.ts').text)
    const tiny = lines.find((l) => l.includes('--preset tiny'))!
    // The 15m and 100m presets are the same code at 63 MB and 400 MB: not written here.
    const { stdout } = await run('bash', ['-c', tiny], { cwd: clone.dir, timeout: 60_000 })
    const count = Number(/([\d,]+) parameters/.exec(stdout)![1].replaceAll(',', ''))
    const stated = Number(
      /--preset tiny.*# ~([\d.]+)M parameters/.exec(first('npx tsx backend/model/builder/cli.ts').text)![1],
    )
    assert.equal(Math.round(count / 10_000) / 100, stated, `the README says ~${stated}M, the builder made ${count}`)
  })

  test('npm run keys:backend -- DIR makes the folder it is given', async () => {
    await run('npm', ['run', 'keys:backend', '--', 'keys'], { cwd: clone.dir, timeout: 60_000 })
    assert.equal(statSync(join(clone.dir, 'keys/gateway-signing-key.json')).mode & 0o777, 0o600)
    assert.ok(existsSync(join(clone.dir, 'keys/gateway-verify-keys.json')))
  })

  test('npm run build, then node dist/gateway.mjs (beside node_modules) starts', async () => {
    await run('npm', ['run', 'build'], { cwd: clone.dir, timeout: 120_000 })
    const child = spawn('node', ['dist/gateway.mjs'], {
      cwd: clone.dir,
      env: {
        ...process.env,
        BACKEND_URL: 'http://127.0.0.1:9',
        PORT: '0',
        ADMIN_TOKEN: 'an-admin-token-for-the-readme-test',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    child.stdout!.on('data', (d) => (output += d))
    child.stderr!.on('data', (d) => (output += d))
    const deadline = Date.now() + 20_000
    while (!output.includes('gateway listening') && child.exitCode === null && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50))
    child.kill('SIGTERM')
    await exited(child)
    assert.match(output, /gateway listening/)
    assert.equal(child.exitCode, 0, output)
  })

  test("the README's blocks moved to docs/ only: the quick start stays in the README", () => {
    for (const start of [
      'npm ci',
      'MODEL_DIR=../shared/models/stories260K npm start',
      'curl -N http://127.0.0.1:8080/v1/completions',
      "import OpenAI from 'openai'",
      'npm test',
    ])
      assert.equal(first(start).file, 'README.md', start)
    // The 19 blocks of the README before the split, wherever they are now (the other pages add theirs).
    assert.ok(blocks.filter((b) => !['docs/SECURITY.md', 'docs/testing.md'].includes(b.file)).length >= 19)
  })

  test('the gateway configuration examples are valid configurations', () => {
    const hash = createHash('sha256').update('sy-example').digest('hex')
    for (const start of ['{\n  "backend"', '{\n  "routing"', '{ "backend"']) {
      const file = JSON.parse(first(start).text.replace('<sha256 hex>', hash)) as object
      assert.doesNotThrow(() => parseGatewayConfig(file, {}), start)
    }
  })
})
