import assert from 'node:assert/strict'
import { rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { after, before, describe, test } from 'node:test'
import OpenAI from 'openai'
import { loadEncoderFolder } from '../../backend/encoder/folder.ts'
import { EncoderTokenizer } from '../../backend/encoder/served.ts'
import { type BackendProcess, postJson, runBackendToExit, startBackend } from '../helpers/backend-process.ts'
import { buildEncoderModelDir, SENTIMENT_LABELS } from '../helpers/encoder-models.ts'
import { REPO_ROOT } from '../helpers/paths.ts'

/**
 * A real backend node serving builder-made encoder models beside a decoder: /v1/embeddings through
 * the official `openai` client (float, base64, dimensions), /predict and GET /models in the seed's
 * shapes, and bad inputs answered with 4xx in OpenAI's error shape.
 */

const norm = (v: number[]) => Math.hypot(...v)

/** Checks an OpenAI-shaped 4xx and returns its error object. */
async function expectError(
  response: Response,
  status: number,
  param?: string,
): Promise<{ message: string; param: string | null; code: string | null }> {
  const text = await response.text()
  assert.equal(response.status, status, text)
  const { error } = JSON.parse(text)
  assert.equal(typeof error.message, 'string')
  // A union's inner issue names its path below the parameter (input.0): the parameter is its first segment.
  if (param !== undefined) assert.equal(error.param?.split('.')[0], param, text)
  return error
}

test('a broken encoder folder stops the node at start with one line naming the file', async () => {
  const dir = await buildEncoderModelDir()
  try {
    writeFileSync(
      join(dir, 'embed', '1_Pooling', 'config.json'),
      JSON.stringify({ pooling_mode_cls_token: true, pooling_mode_mean_tokens: true }),
    )
    const { code, output } = await runBackendToExit({ MODEL_DIR: dir })
    assert.equal(code, 1)
    assert.match(output, /switchyard backend: model folder .*embed: 1_Pooling\/config.json must enable exactly one of/)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('/live covers the encoder workers: idle they stay live, wedged they are named as stalled', async () => {
  // The same real wedge as backend-liveness.test.ts: SIGUSR2 blocks every worker thread for good.
  const stallTimeoutMs = 1500
  const dir = await buildEncoderModelDir()
  const backend = await startBackend({
    MODEL_DIR: dir,
    ENGINE_STALL_TIMEOUT_MS: String(stallTimeoutMs),
    NODE_OPTIONS: `--import=${resolve(REPO_ROOT, 'test/helpers/wedge-engine.mjs')}`,
  })
  try {
    await new Promise((r) => setTimeout(r, stallTimeoutMs * 2))
    assert.deepEqual(await (await fetch(`${backend.url}/live`)).json(), { status: 'ok' })
    assert.equal((await postJson(`${backend.url}/v1/embeddings`, { model: 'embed', input: 'x' })).status, 200)
    backend.child.kill('SIGUSR2')
    // Each worker's heartbeat ages on its own: wait until all three have passed the timeout.
    const stalledModels = async () => {
      const live = await fetch(`${backend.url}/live`)
      return live.status === 200
        ? []
        : ((await live.json()) as { stalled: { model: string }[] }).stalled.map((s) => s.model).sort()
    }
    let stalled = await stalledModels()
    for (
      const deadline = Date.now() + 20_000;
      stalled.length < 3 && Date.now() < deadline;
      stalled = await stalledModels()
    )
      await new Promise((r) => setTimeout(r, 50))
    assert.deepEqual(stalled, ['embed', 'gen', 'sentiment'])
  } finally {
    await backend.stop('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  }
})

describe('backend: embeddings and the task API', () => {
  let dir: string
  let backend: BackendProcess
  let client: OpenAI
  before(async () => {
    dir = await buildEncoderModelDir()
    backend = await startBackend({ MODEL_DIR: dir, ENCODER_BATCH_WINDOW_MS: '5', ENCODER_MAX_QUEUE: '16' })
    client = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: 'unused', maxRetries: 0 })
  })
  after(async () => {
    await backend?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  test('openai client: float and base64 give the same unit vectors; usage counts input tokens', async () => {
    const input = ['hello world', 'the movie was good']
    const floats = await client.embeddings.create({ model: 'embed', input, encoding_format: 'float' })
    // Without encoding_format the client asks for base64 and decodes it itself.
    const decoded = await client.embeddings.create({ model: 'embed', input })
    assert.equal(floats.object, 'list')
    assert.equal(floats.model, 'embed')
    assert.equal(floats.data.length, 2)
    for (const [i, item] of floats.data.entries()) {
      assert.deepEqual([item.object, item.index, item.embedding.length], ['embedding', i, 64])
      assert.ok(Math.abs(norm(item.embedding) - 1) < 1e-5)
      assert.deepEqual(decoded.data[i].embedding, item.embedding)
    }
    // Each text with its [CLS] and [SEP], as the model's own tokenizer counts them.
    const tokenizer = new EncoderTokenizer(loadEncoderFolder(join(dir, 'embed')))
    const tokens = input.reduce((n, text) => n + tokenizer.encode(text, 128).length, 0)
    assert.deepEqual(floats.usage, { prompt_tokens: tokens, total_tokens: tokens })
    assert.notDeepEqual(floats.data[0].embedding, floats.data[1].embedding)
  })

  test('openai client: dimensions truncates and renormalises; token-id inputs equal their text', async () => {
    const full = await client.embeddings.create({ model: 'embed', input: 'hello world', encoding_format: 'float' })
    const short = await client.embeddings.create({
      model: 'embed',
      input: 'hello world',
      dimensions: 16,
      encoding_format: 'float',
    })
    const head = full.data[0].embedding.slice(0, 16)
    const scaled = head.map((v) => v / norm(head))
    short.data[0].embedding.forEach((v, i) => {
      assert.ok(Math.abs(v - scaled[i]) < 1e-6)
    })
    assert.ok(Math.abs(norm(short.data[0].embedding) - 1) < 1e-5)

    const ids = [101, 2, 3, 102]
    const byIds = await client.embeddings.create({ model: 'embed', input: [ids, ids], encoding_format: 'float' })
    assert.deepEqual(byIds.data[0].embedding, byIds.data[1].embedding)
    assert.equal(byIds.usage.prompt_tokens, 8)
  })

  test('concurrent requests (batched together) equal sequential ones', async () => {
    const texts = ['a', 'the movie was good', 'once upon a time there was a little friend', 'numbers 1 2 3!']
    const sequential: number[][] = []
    for (const input of texts)
      sequential.push(
        (await client.embeddings.create({ model: 'embed', input, encoding_format: 'float' })).data[0].embedding,
      )
    const concurrent = await Promise.all(
      texts.map((input) => client.embeddings.create({ model: 'embed', input, encoding_format: 'float' })),
    )
    concurrent.forEach((r, i) => {
      r.data[0].embedding.forEach((v, j) => {
        assert.ok(Math.abs(v - sequential[i][j]) < 1e-5)
      })
    })
  })

  test('over-long inputs: 400, or truncated when truncate_prompt_tokens asks', async () => {
    const long = 'word '.repeat(300)
    const refused = await expectError(
      await postJson(`${backend.url}/v1/embeddings`, { model: 'embed', input: long }),
      400,
      'input',
    )
    assert.equal(refused.code, 'context_length_exceeded')
    assert.match(refused.message, /maximum input length is 128 tokens/)
    const cut = await (
      await postJson(`${backend.url}/v1/embeddings`, { model: 'embed', input: long, truncate_prompt_tokens: 32 })
    ).json()
    assert.equal(cut.usage.prompt_tokens, 32)
    const max = await (
      await postJson(`${backend.url}/v1/embeddings`, { model: 'embed', input: long, truncate_prompt_tokens: -1 })
    ).json()
    assert.equal(max.usage.prompt_tokens, 128)
  })

  test('bad embedding requests get 4xx naming the parameter', async () => {
    const url = `${backend.url}/v1/embeddings`
    const cases: [unknown, number, string | null][] = [
      [{ model: 'embed' }, 400, 'input'],
      [{ model: 'embed', input: '' }, 400, 'input'],
      [{ model: 'embed', input: [] }, 400, 'input'],
      [{ model: 'embed', input: [[]] }, 400, 'input'],
      [{ model: 'embed', input: [1.5] }, 400, 'input'],
      [{ model: 'embed', input: { text: 'x' } }, 400, 'input'],
      [{ model: 'embed', input: [5000] }, 400, 'input'],
      [{ model: 'embed', input: 'x', dimensions: 65 }, 400, 'dimensions'],
      [{ model: 'embed', input: 'x', dimensions: 0 }, 400, 'dimensions'],
      [{ model: 'embed', input: 'x', encoding_format: 'int8' }, 400, 'encoding_format'],
      [{ model: 'embed', input: 'x', truncate_prompt_tokens: 129 }, 400, 'truncate_prompt_tokens'],
      [{ model: 'embed', input: 'x', truncate_prompt_tokens: 0 }, 400, 'truncate_prompt_tokens'],
      [{ input: 'x' }, 400, 'model'],
      [{ model: 'nope', input: 'x' }, 404, 'model'],
      [{ model: 'gen', input: 'x' }, 404, 'model'],
      [{ model: 'sentiment', input: 'x' }, 400, 'model'],
      ['{"model": "embed", "input": ', 400, null],
    ]
    for (const [body, status, param] of cases) await expectError(await postJson(url, body), status, param ?? undefined)
    // More inputs than the node ever queues (ENCODER_MAX_QUEUE=16): refused whole, as the client's to split.
    assert.equal(
      (await expectError(await postJson(url, { model: 'embed', input: Array(17).fill('x') }), 400, 'input')).code,
      'too_many_inputs',
    )
    await expectError(await fetch(url, { method: 'POST', body: '{}', headers: { 'content-type': 'text/plain' } }), 415)
  })

  test('/predict: sentiment-analysis and text-classification in the pipeline shape, with top_k', async () => {
    const response = await postJson(`${backend.url}/predict`, {
      text: 'I love this movie',
      model_name: 'sentiment',
      task: 'sentiment-analysis',
    })
    assert.equal(response.status, 200)
    const body = await response.json()
    assert.deepEqual(Object.keys(body).sort(), ['model_version', 'processing_time', 'result', 'usage'])
    assert.ok(body.usage.prompt_tokens > 0)
    assert.deepEqual(body.usage, {
      prompt_tokens: body.usage.prompt_tokens,
      completion_tokens: 0,
      total_tokens: body.usage.prompt_tokens,
    })
    assert.equal(body.result.length, 1)
    assert.ok(SENTIMENT_LABELS.includes(body.result[0].label))
    assert.ok(body.result[0].score >= 0.5 && body.result[0].score <= 1)
    assert.equal(typeof body.processing_time, 'number')
    assert.match(body.model_version, /^sentiment@[0-9a-f]{12}$/)
    // Default model for the task is the first that serves it; top_k ranks all labels, scores summing to 1.
    const both = await (
      await postJson(`${backend.url}/predict`, { text: 'I love this movie', task: 'text-classification', top_k: 5 })
    ).json()
    assert.deepEqual(both.result.map((r: { label: string }) => r.label).sort(), [...SENTIMENT_LABELS].sort())
    assert.ok(both.result[0].score >= both.result[1].score)
    assert.ok(Math.abs(both.result[0].score + both.result[1].score - 1) < 1e-6)
    assert.deepEqual(both.result[0], body.result[0])
  })

  test('/predict: feature-extraction and text-generation (on the decoder engine)', async () => {
    const features = await (
      await postJson(`${backend.url}/predict`, { text: 'hello world', task: 'feature-extraction' })
    ).json()
    const embedding = await client.embeddings.create({ model: 'embed', input: 'hello world', encoding_format: 'float' })
    assert.deepEqual(features.result, embedding.data[0].embedding)
    assert.equal(features.usage.prompt_tokens, embedding.usage.prompt_tokens)
    const generated = await (
      await postJson(`${backend.url}/predict`, { text: 'Once upon a time', task: 'text-generation', max_new_tokens: 8 })
    ).json()
    const completion = await (
      await postJson(`${backend.url}/v1/completions`, {
        model: 'gen',
        prompt: 'Once upon a time',
        max_tokens: 8,
        temperature: 0,
      })
    ).json()
    assert.deepEqual(generated.result, [{ generated_text: `Once upon a time${completion.choices[0].text}` }])
    assert.deepEqual(generated.usage, completion.usage)
    assert.match(generated.model_version, /^gen@/)
  })

  test('/predict: unknown task or model, wrong task for a model, bad text: 4xx naming what is served', async () => {
    const url = `${backend.url}/predict`
    const unknownTask = await expectError(await postJson(url, { text: 'x', task: 'summarization' }), 400, 'task')
    assert.match(
      unknownTask.message,
      /embed \(feature-extraction\).*sentiment \(text-classification, sentiment-analysis\).*gen \(text-generation\)/,
    )
    const unknownModel = await expectError(
      await postJson(url, { text: 'x', task: 'sentiment-analysis', model_name: 'distilbert' }),
      404,
      'model_name',
    )
    assert.match(unknownModel.message, /Models served: embed/)
    await expectError(await postJson(url, { text: 'x', task: 'text-generation', model_name: 'sentiment' }), 400, 'task')
    await expectError(await postJson(url, { text: '', task: 'sentiment-analysis' }), 400, 'text')
    await expectError(await postJson(url, { task: 'sentiment-analysis' }), 400, 'text')
    await expectError(await postJson(url, { text: 'x', task: 'sentiment-analysis', top_k: 0 }), 400, 'top_k')
    await expectError(await postJson(url, { text: 'word '.repeat(300), task: 'sentiment-analysis' }), 400, 'text')
    await expectError(
      await postJson(url, { text: 'x', task: 'text-generation', max_new_tokens: 10_000 }),
      400,
      'max_tokens',
    )
  })

  test('GET /models lists every served model with its tasks; /v1/models lists the encoders too', async () => {
    const { models } = await (await fetch(`${backend.url}/models`)).json()
    assert.deepEqual(models, [
      { name: 'embed', tasks: ['feature-extraction'] },
      { name: 'sentiment', tasks: ['text-classification', 'sentiment-analysis'] },
      { name: 'gen', tasks: ['text-generation'] },
    ])
    const list = await client.models.list()
    assert.deepEqual(list.data.map((m) => m.id).sort(), ['embed', 'gen', 'sentiment'])
  })

  test('metrics count encoder batches and input tokens', async () => {
    const text = await (await fetch(`${backend.url}/metrics`)).text()
    assert.match(text, /switchyard_backend_step_duration_seconds_count\{model="embed",phase="encode"\} [1-9]/)
    assert.match(text, /switchyard_backend_prompt_tokens_total\{model="embed"\} [1-9]/)
    assert.match(text, /switchyard_backend_requests_total\{route="\/v1\/embeddings",status="200"\}/)
  })
})
