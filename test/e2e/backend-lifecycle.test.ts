import assert from 'node:assert/strict'
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { postJson, readSse, runBackendToExit, startBackend } from '../helpers/backend-process.ts'
import { STORIES_DIR } from '../helpers/paths.ts'

const scratch = mkdtempSync(join(tmpdir(), 'switchyard-lifecycle-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

const long = (extra: object = {}) => ({
  model: 'stories260K',
  prompt: 'Once upon a time',
  max_tokens: 490,
  temperature: 0,
  ignore_eos: true,
  ...extra,
})

/** Reads an SSE stream until the first data event; returns the reader to go on with. */
async function firstEvent(response: Response) {
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let text = ''
  while (!text.includes('\n\n')) {
    const { value, done } = await reader.read()
    if (done) break
    text += decoder.decode(value, { stream: true })
  }
  return { reader, text }
}

async function readRest(reader: ReadableStreamDefaultReader<Uint8Array>, soFar: string): Promise<string> {
  const decoder = new TextDecoder()
  let text = soFar
  while (true) {
    const { value, done } = await reader.read()
    if (done) return text
    text += decoder.decode(value, { stream: true })
  }
}

async function modelInfo(url: string) {
  return (await (await fetch(`${url}/model/info`)).json()) as {
    status: string
    models: { active: number; queued: number }[]
  }
}

describe('backend start-up failures exit non-zero with one line', () => {
  test('missing MODEL_DIR folder', async () => {
    const { code, output } = await runBackendToExit({ MODEL_DIR: join(scratch, 'nope') })
    assert.equal(code, 1)
    assert.match(output, /switchyard backend: MODEL_DIR .*nope: no such folder\n/)
  })

  test('a file that is not an ONNX model', async () => {
    const dir = join(scratch, 'broken')
    mkdirSync(join(dir, 'onnx'), { recursive: true })
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'])
      cpSync(join(STORIES_DIR, f), join(dir, f))
    writeFileSync(join(dir, 'onnx/model.onnx'), 'this is not a protobuf')
    const { code, output } = await runBackendToExit({ MODEL_DIR: dir })
    assert.equal(code, 1)
    assert.match(output, /switchyard backend: model broken .*model\.onnx.*\n/)
  })

  test('invalid configuration', async () => {
    const { code, output } = await runBackendToExit({ MAX_BATCH_SIZE: 'lots' })
    assert.equal(code, 2)
    assert.match(output, /invalid configuration: MAX_BATCH_SIZE/)
  })
})

describe('backpressure, disconnects, deadlines', () => {
  test('a full queue answers 503 with Retry-After in OpenAI shape, then recovers', async () => {
    const backend = await startBackend({ MAX_BATCH_SIZE: '1', MAX_QUEUE: '1', RETRY_AFTER_SECONDS: '2' })
    try {
      const running = await postJson(`${backend.url}/v1/completions`, long({ stream: true }))
      const { reader, text } = await firstEvent(running)
      const queued = postJson(`${backend.url}/v1/completions`, long({ max_tokens: 5 }))
      while ((await modelInfo(backend.url)).models[0].queued < 1) await new Promise((r) => setTimeout(r, 2))
      const refused = await postJson(`${backend.url}/v1/completions`, long({ max_tokens: 5 }))
      assert.equal(refused.status, 503)
      assert.equal(refused.headers.get('retry-after'), '2')
      const body = (await refused.json()) as { error: { code: string; type: string } }
      assert.equal(body.error.code, 'queue_full')
      assert.match(await readRest(reader, text), /data: \[DONE\]/)
      assert.equal((await queued).status, 200)
      assert.equal((await postJson(`${backend.url}/v1/completions`, long({ max_tokens: 5 }))).status, 200)
      assert.match(
        await (await fetch(`${backend.url}/metrics`)).text(),
        /switchyard_backend_rejections_total\{model="stories260K",reason="queue_full"\} 1/,
      )
    } finally {
      await backend.stop()
    }
  })

  test('a client that goes away mid-stream frees its slot', async () => {
    const backend = await startBackend()
    try {
      const controller = new AbortController()
      const response = await fetch(`${backend.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'stories260K',
          messages: [{ role: 'user', content: 'hi' }],
          max_tokens: 450,
          ignore_eos: true,
          stream: true,
        }),
        signal: controller.signal,
      })
      const { reader } = await firstEvent(response)
      controller.abort()
      await reader.cancel().catch(() => {})
      while ((await modelInfo(backend.url)).models[0].active > 0) await new Promise((r) => setTimeout(r, 5))
      const metrics = await (await fetch(`${backend.url}/metrics`)).text()
      // The aborted stream did not run to its 450 tokens.
      const generated = Number(
        /switchyard_backend_generated_tokens_total\{model="stories260K"\} (\d+)/.exec(metrics)![1],
      )
      assert.ok(generated < 450, `generated ${generated}`)
    } finally {
      await backend.stop()
    }
  })

  test('a request past REQUEST_TIMEOUT_MS gets 504 (JSON) or an error event (stream)', async () => {
    const backend = await startBackend({ REQUEST_TIMEOUT_MS: '1', MAX_BATCH_SIZE: '1' })
    try {
      const plain = await postJson(`${backend.url}/v1/completions`, long())
      assert.equal(plain.status, 504)
      assert.equal(((await plain.json()) as { error: { code: string } }).error.code, 'timeout')
      const events = await readSse(await postJson(`${backend.url}/v1/completions`, long({ stream: true })))
      assert.ok(!events.includes('[DONE]'))
      assert.equal((events.at(-1) as { error: { code: string } }).error.code, 'timeout')
    } finally {
      await backend.stop()
    }
  })

  test('health checks are answered while the engine is busy', async () => {
    const backend = await startBackend({ MAX_BATCH_SIZE: '64' })
    try {
      let finished = 0
      const generations = Array.from({ length: 32 }, () =>
        postJson(`${backend.url}/v1/completions`, long({ max_tokens: 400 })).then(async (r) => {
          await r.json()
          finished++
        }),
      )
      while ((await modelInfo(backend.url)).models[0].active === 0) await new Promise((r) => setTimeout(r, 1))
      let answered = 0
      for (let i = 0; i < 10; i++) if ((await fetch(`${backend.url}/health`)).ok) answered++
      const finishedWhenHealthDone = finished
      await Promise.all(generations)
      assert.equal(answered, 10)
      assert.ok(finishedWhenHealthDone < 32, 'health checks completed while generations were still running')
    } finally {
      await backend.stop()
    }
  })
})

describe('graceful drain on SIGTERM', () => {
  test('ready turns 503, new work is refused, in-flight streams finish, exit 0', async () => {
    const backend = await startBackend({ MAX_BATCH_SIZE: '1', DRAIN_TIMEOUT_MS: '30000' })
    const response = await postJson(`${backend.url}/v1/completions`, long({ stream: true }))
    const { reader, text } = await firstEvent(response)
    backend.child.kill('SIGTERM')
    let ready = 200
    while (ready === 200) ready = (await fetch(`${backend.url}/ready`)).status
    assert.equal(ready, 503)
    const refused = await postJson(`${backend.url}/v1/completions`, long({ max_tokens: 3 }))
    assert.equal(refused.status, 503)
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'draining')
    const rest = await readRest(reader, text)
    assert.match(rest, /"finish_reason":"length"/)
    assert.match(rest, /data: \[DONE\]\n\n$/)
    const tokens = rest.split('\n\n').filter((e) => e.startsWith('data: {')).length
    assert.ok(tokens >= 400, `streamed ${tokens} events`)
    assert.equal(await backend.stop(), 0)
  })

  test('past DRAIN_TIMEOUT_MS the remaining streams end with an error event, and the exit is still 0', async () => {
    const backend = await startBackend({ MAX_BATCH_SIZE: '1', DRAIN_TIMEOUT_MS: '0' })
    const response = await postJson(`${backend.url}/v1/completions`, long({ stream: true }))
    const { reader, text } = await firstEvent(response)
    backend.child.kill('SIGTERM')
    const rest = await readRest(reader, text)
    assert.doesNotMatch(rest, /\[DONE\]/)
    assert.match(rest, /"error":\{/)
    assert.equal(await backend.stop(), 0)
  })
})
