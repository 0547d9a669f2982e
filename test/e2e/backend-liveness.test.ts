import assert from 'node:assert/strict'
import { resolve } from 'node:path'
import { test } from 'node:test'
import { postJson, startBackend } from '../helpers/backend-process.ts'
import { REPO_ROOT } from '../helpers/paths.ts'

// /live proves the engine worker still makes progress (backend/engine/heartbeat.ts): an idle
// engine passes however long it idles, a wedged one fails once ENGINE_STALL_TIMEOUT_MS has
// passed without progress, while /health (answered by the main thread) would still say ok.
// The wedge is real: test/helpers/wedge-engine.mjs, preloaded into the backend process only
// here, blocks the engine worker thread in Atomics.wait on SIGUSR2.
// Long enough that a worker thread briefly starved of CPU on a busy machine still beats in time.
const STALL_TIMEOUT_MS = 1500
const WEDGE_PRELOAD = resolve(REPO_ROOT, 'test/helpers/wedge-engine.mjs')

const json = async (url: string) => {
  const response = await fetch(url)
  return {
    status: response.status,
    body: (await response.json()) as {
      status: string
      stall_timeout_ms?: number
      stalled?: { model: string; ms_since_progress: number }[]
    },
  }
}

test('an idle engine stays live; a wedged engine fails /live and /ready after the stall timeout, /health does not notice', async () => {
  const backend = await startBackend({
    ENGINE_STALL_TIMEOUT_MS: String(STALL_TIMEOUT_MS),
    NODE_OPTIONS: `--import=${WEDGE_PRELOAD}`,
  })
  try {
    // Idle for longer than the stall timeout: still live.
    await new Promise((r) => setTimeout(r, STALL_TIMEOUT_MS * 2))
    assert.deepEqual(await json(`${backend.url}/live`), { status: 200, body: { status: 'ok' } })
    // Working: every step is progress.
    const answer = await postJson(`${backend.url}/v1/completions`, {
      model: 'stories260K',
      prompt: 'Once upon a time',
      max_tokens: 200,
      ignore_eos: true,
    })
    assert.equal(answer.status, 200)
    await answer.json()
    assert.equal((await json(`${backend.url}/live`)).status, 200)

    backend.child.kill('SIGUSR2')
    let live = await json(`${backend.url}/live`)
    for (const deadline = Date.now() + 20_000; live.status === 200 && Date.now() < deadline; ) {
      await new Promise((r) => setTimeout(r, 50))
      live = await json(`${backend.url}/live`)
    }
    assert.equal(live.status, 503, 'the wedged engine fails /live')
    assert.equal(live.body.status, 'stalled')
    assert.equal(live.body.stall_timeout_ms, STALL_TIMEOUT_MS)
    assert.equal(live.body.stalled?.[0]?.model, 'stories260K')
    assert.ok(live.body.stalled[0].ms_since_progress > STALL_TIMEOUT_MS)
    assert.equal((await json(`${backend.url}/ready`)).status, 503, "and leaves the gateways' rotation")
    assert.deepEqual(
      await json(`${backend.url}/health`),
      { status: 200, body: { status: 'ok' } },
      'the main thread still answers',
    )
  } finally {
    await backend.stop('SIGKILL')
  }
})

test('ENGINE_STALL_TIMEOUT_MS out of range is refused at start-up', async () => {
  const { loadBackendConfig } = await import('../../backend/config.ts')
  assert.equal(loadBackendConfig({}).ENGINE_STALL_TIMEOUT_MS, 60_000)
  assert.throws(() => loadBackendConfig({ ENGINE_STALL_TIMEOUT_MS: '50' }), /ENGINE_STALL_TIMEOUT_MS/)
  assert.throws(() => loadBackendConfig({ ENGINE_STALL_TIMEOUT_MS: 'soon' }), /ENGINE_STALL_TIMEOUT_MS/)
})
