import assert from 'node:assert/strict'
import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { rmSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import { promisify } from 'node:util'
import { freePort } from '../helpers/redis-server.ts'
import { ENCODER_BLOCK, freshClone, PREDICT_BLOCK, readmeBlocks, STYLES_BLOCK, shellCommands } from './readme-blocks.ts'

// Runs the model examples of the docs (docs/api.md, docs/models.md; once the README's) on a fresh clone's state: the encoder builder, serving the
// encoders and the embeddings, /predict and /models curls; the builder's graph styles and
// serving one of them. readme.test.ts checks that every block is run somewhere.

const run = promisify(execFile)
const blocks = readmeBlocks()
const block = (prefix: string) =>
  blocks.find((b) => b.text.startsWith(prefix)) ??
  assert.fail(`neither the README nor docs/ has a block starting with ${JSON.stringify(prefix)}`)

let clone: { root: string; dir: string }
const children: ChildProcess[] = []
before(() => {
  clone = freshClone()
})
after(() => {
  for (const child of children) if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL')
  rmSync(clone.root, { recursive: true, force: true })
})

/** `VAR=… npm run backend` from the README, on a free port instead of 8000; resolves once /ready is 200. */
async function startBackendCommand(command: string): Promise<string> {
  const port = await freePort()
  const env: Record<string, string> = {
    ...process.env,
    LOG_LEVEL: 'warn',
    npm_config_update_notifier: 'false',
  } as Record<string, string>
  const words = command.split(' ')
  while (/^\w+=/.test(words[0])) {
    const [name, value] = words.shift()!.split('=')
    env[name] = value
  }
  env.PORT = String(port)
  // Its own process group: npm passes no signal on to the node it started, a terminal's Ctrl-C
  // reaches the whole group, and so does stop() here.
  const child = spawn(words[0], words.slice(1), {
    cwd: clone.dir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  children.push(child)
  let output = ''
  child.stdout!.on('data', (d) => (output += d))
  child.stderr!.on('data', (d) => (output += d))
  const url = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 120_000
  for (;;) {
    if (child.exitCode !== null) assert.fail(`${command} exited with ${child.exitCode}:\n${output}`)
    if (Date.now() > deadline) assert.fail(`${command} was not ready in time:\n${output}`)
    const ready = await fetch(`${url}/ready`).then(
      (r) => r.status === 200,
      () => false,
    )
    if (ready) return `127.0.0.1:${port}`
    await new Promise((r) => setTimeout(r, 200))
  }
}

const stop = async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode !== null) continue
    const exited = new Promise((r) => child.once('exit', r))
    process.kill(-child.pid!, 'SIGTERM')
    await exited
  }
}

describe('README model examples, on a fresh clone', () => {
  test('encoders: build two, serve them, embeddings with dimensions, /predict and /models', async () => {
    const commands = shellCommands(block(ENCODER_BLOCK).text)
    const builds = commands.filter((c) => c.startsWith('npx tsx'))
    assert.equal(builds.length, 2)
    for (const build of builds) await run('bash', ['-c', build], { cwd: clone.dir, timeout: 120_000 })
    const host = await startBackendCommand(commands.find((c) => c.includes('npm run backend'))!)
    try {
      const embeddings = JSON.parse(
        (
          await run('bash', ['-c', commands.find((c) => c.startsWith('curl'))!.replace('localhost:8000', host)], {
            timeout: 30_000,
          })
        ).stdout,
      )
      assert.equal(embeddings.data.length, 2)
      assert.equal(embeddings.data[0].embedding.length, 8)
      const norm = Math.hypot(...embeddings.data[0].embedding)
      assert.ok(Math.abs(norm - 1) < 1e-4, `renormalised after truncation: ${norm}`)
      const [predict, models] = shellCommands(block(PREDICT_BLOCK).text).map((c) => c.replace('localhost:8000', host))
      const prediction = JSON.parse((await run('bash', ['-c', predict], { timeout: 30_000 })).stdout)
      assert.deepEqual(prediction.result.map((r: { label: string }) => r.label).sort(), ['NEGATIVE', 'POSITIVE'])
      assert.match(prediction.model_version, /^sentiment@[0-9a-f]{12}$/)
      const listed = JSON.parse((await run('bash', ['-c', models], { timeout: 30_000 })).stdout)
      assert.deepEqual(listed.models.map((m: { name: string }) => m.name).sort(), ['embed', 'sentiment'])
    } finally {
      await stop()
    }
  })

  test('builder styles: every command builds its folder, and the genai fp16 one serves', async () => {
    const commands = shellCommands(block(STYLES_BLOCK).text)
    const builds = commands.filter((c) => c.startsWith('npx tsx'))
    assert.ok(builds.length >= 5, JSON.stringify(commands))
    for (const build of builds) await run('bash', ['-c', build], { cwd: clone.dir, timeout: 300_000 })
    const host = await startBackendCommand(commands.find((c) => c.includes('npm run backend'))!)
    try {
      const info = await (await fetch(`http://${host}/model/info`)).json()
      const model = info.models[0]
      assert.equal(model.kv_path, 'in-place')
      assert.equal(model.weight_type, 'float16')
    } finally {
      await stop()
    }
  })
})
