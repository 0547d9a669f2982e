import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { rmSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import OpenAI from 'openai'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { buildEncoderModelDir, SENTIMENT_LABELS } from '../helpers/encoder-models.ts'
import { buildWorker, type RunningWorker, startWorker, type WorkerBuild } from '../helpers/worker-runtime.ts'

// The Workers build (wrangler's bundle on workerd) serves /v1/embeddings, /predict and GET /models
// in front of a real backend serving builder-made encoders, with its KV cache on by default.
const KEY = 'sy-worker-embeddings-test-key-0123456789'
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const auth = { authorization: `Bearer ${KEY}` }

describe('Workers build: embeddings and the task API', () => {
  let dir: string
  let backend: BackendProcess
  let build: WorkerBuild
  let worker: RunningWorker
  before(async () => {
    dir = await buildEncoderModelDir()
    ;[build, backend] = await Promise.all([buildWorker(), startBackend({ MODEL_DIR: dir })])
    worker = await startWorker(build, {
      backend: { url: backend.url },
      auth: { apiKeys: [{ id: 'main', tenant: 'acme', hash: sha(KEY) }] },
    })
  })
  after(async () => {
    await worker?.stop()
    await backend?.stop()
    build?.remove()
    rmSync(dir, { recursive: true, force: true })
  })

  test('the openai client: float and base64 embeddings equal the backend’s', async () => {
    const viaWorker = new OpenAI({ baseURL: `${worker.url}/v1`, apiKey: KEY, maxRetries: 0 })
    const direct = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: 'unused', maxRetries: 0 })
    for (const extra of [{ encoding_format: 'float' as const }, { dimensions: 8 }]) {
      const [a, b] = await Promise.all([
        viaWorker.embeddings.create({ model: 'embed', input: ['hello world', 'hi'], ...extra }),
        direct.embeddings.create({ model: 'embed', input: ['hello world', 'hi'], ...extra }),
      ])
      assert.deepEqual(a.data, b.data)
    }
  })

  test('a repeated embedding is served from the cache (KV)', async () => {
    const body = { model: 'embed', input: 'cached on the edge', encoding_format: 'float' }
    const first = await postJson(`${worker.url}/v1/embeddings`, body, auth)
    assert.equal(first.headers.get('x-cache'), 'MISS')
    await first.text()
    // KV writes land after the response (waitUntil): poll briefly for the HIT.
    let cache: string | null = null
    for (let i = 0; i < 40 && cache !== 'HIT'; i++) {
      const again = await postJson(`${worker.url}/v1/embeddings`, body, auth)
      cache = again.headers.get('x-cache')
      await again.text()
      if (cache !== 'HIT') await new Promise((r) => setTimeout(r, 50))
    }
    assert.equal(cache, 'HIT')
  })

  test('/predict, GET /models and a bad request', async () => {
    const predicted = await postJson(
      `${worker.url}/predict`,
      { text: 'I love this movie', task: 'sentiment-analysis' },
      auth,
    )
    assert.equal(predicted.status, 200)
    const body = await predicted.json()
    assert.ok(SENTIMENT_LABELS.includes(body.result[0].label))
    assert.match(body.model_version, /^sentiment@/)
    const models = await (await fetch(`${worker.url}/models`, { headers: auth })).json()
    assert.deepEqual(
      models.models.map((m: { name: string }) => m.name),
      ['embed', 'sentiment', 'gen'],
    )
    const bad = await postJson(`${worker.url}/v1/embeddings`, { model: 'embed', input: [] }, auth)
    assert.equal(bad.status, 400)
    assert.equal((await bad.json()).error.param?.split('.')[0], 'input')
  })
})
