import assert from 'node:assert/strict'
import { test } from 'node:test'
import pino from 'pino'
import { loadBackendConfig } from '../../backend/config.ts'
import { BackendStartError, startBackendNode } from '../../backend/server.ts'
import { STORIES_DIR } from '../helpers/paths.ts'

// startBackendNode in this process: the same node as `npm run backend`, without a child process.
const silent = pino({ level: 'silent' })
const config = (env: Record<string, string>) =>
  loadBackendConfig({
    MODEL_DIR: STORIES_DIR,
    HOST: '127.0.0.1',
    PORT: '0',
    DEVICE: 'cpu',
    CPU_THREADS: '1',
    DRAIN_TIMEOUT_MS: '2000',
    ...env,
  })

test('an in-process node listens, loads stories260K, answers a completion, and drains', async () => {
  const node = await startBackendNode(config({}), silent)
  try {
    assert.equal((await fetch(`${node.url}/health`)).status, 200)
    await node.ready
    assert.equal((await fetch(`${node.url}/ready`)).status, 200)
    const response = await fetch(`${node.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }),
    })
    assert.equal(response.status, 200)
    const body = await response.json()
    assert.ok(body.choices[0].text.startsWith(', there was a little girl'), body.choices[0].text)
  } finally {
    await node.shutdown('test')
  }
  assert.equal(
    await fetch(`${node.url}/health`).then(
      () => 'answered',
      () => 'closed',
    ),
    'closed',
  )
})

test('a model folder that cannot be served rejects ready with exit code 1; a port in use rejects the start with 2', async () => {
  const broken = await startBackendNode(config({ MODEL_DIR: '/nonexistent-switchyard-models' }), silent)
  await assert.rejects(
    broken.ready,
    (error) => error instanceof BackendStartError && error.exitCode === 1 && /no such folder/.test(error.message),
  )
  const port = new URL(broken.url).port
  await assert.rejects(
    startBackendNode(config({ PORT: port }), silent),
    (error) =>
      error instanceof BackendStartError &&
      error.exitCode === 2 &&
      error.message.includes(`port ${port} is already in use`),
  )
  await broken.shutdown('test')
})
