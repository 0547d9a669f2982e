import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { rmSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import OpenAI from 'openai'
import { type BackendProcess, postJson, startBackend } from '../helpers/backend-process.ts'
import { buildEncoderModelDir, SENTIMENT_LABELS } from '../helpers/encoder-models.ts'
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { freePort } from '../helpers/redis-server.ts'

/**
 * /v1/embeddings, /predict and GET /models through a real gateway process in front of a real
 * backend serving builder-made encoders: auth and model access, cache (on by default for
 * encoder routes), tokens per minute counting input tokens, and 4xx for bad input.
 */

const KEY = 'sy-test-key-for-the-embeddings-e2e'
const EMBED_ONLY_KEY = 'sy-test-key-limited-to-the-embedder'
const METERED_KEY = 'sy-test-key-with-a-token-budget'
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const auth = (key = KEY) => ({ authorization: `Bearer ${key}` })

describe('gateway: embeddings and the task API through the whole pipeline', () => {
  let dir: string
  let backend: BackendProcess
  let gateway: GatewayProcess
  before(async () => {
    dir = await buildEncoderModelDir()
    backend = await startBackend({ MODEL_DIR: dir })
    gateway = await startGateway({
      backend: { url: backend.url },
      auth: {
        apiKeys: [
          { id: 'test', tenant: 'acme', hash: sha(KEY) },
          { id: 'embed-only', tenant: 'acme', hash: sha(EMBED_ONLY_KEY), models: ['embed'] },
          { id: 'metered', tenant: 'metered', hash: sha(METERED_KEY), limits: { tokensPerMinute: 1000 } },
        ],
      },
    })
  })
  after(async () => {
    await Promise.all([gateway?.stop(), backend?.stop()])
    rmSync(dir, { recursive: true, force: true })
  })

  test('the openai client: float, base64 and dimensions equal the backend’s own answers', async () => {
    const viaGateway = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: KEY, maxRetries: 0 })
    const direct = new OpenAI({ baseURL: `${backend.url}/v1`, apiKey: 'unused', maxRetries: 0 })
    const input = ['hello world', 'the movie was good']
    for (const extra of [
      { encoding_format: 'float' as const },
      {},
      { dimensions: 8, encoding_format: 'float' as const },
    ]) {
      const [a, b] = await Promise.all([
        viaGateway.embeddings.create({ model: 'embed', input, ...extra }),
        direct.embeddings.create({ model: 'embed', input, ...extra }),
      ])
      assert.deepEqual(a.data, b.data)
      assert.deepEqual(a.usage, b.usage)
    }
  })

  test('embeddings are cached by default: the second identical request is a HIT', async () => {
    const body = { model: 'embed', input: 'a text for the cache test', encoding_format: 'float' }
    const first = await postJson(`${gateway.url}/v1/embeddings`, body, auth())
    const second = await postJson(`${gateway.url}/v1/embeddings`, body, auth())
    assert.deepEqual([first.status, second.status], [200, 200])
    assert.deepEqual([first.headers.get('x-cache'), second.headers.get('x-cache')], ['MISS', 'HIT'])
    assert.deepEqual(await second.json(), await first.json())
    const bypass = await postJson(`${gateway.url}/v1/embeddings`, body, {
      ...auth(),
      'cache-control': 'no-cache, no-store',
    })
    assert.equal(bypass.headers.get('x-cache'), 'BYPASS')
  })

  test('/predict and GET /models pass through in the seed’s shapes; model access applies', async () => {
    const predicted = await postJson(
      `${gateway.url}/predict`,
      { text: 'I love this movie', task: 'sentiment-analysis', model_name: 'sentiment' },
      auth(),
    )
    assert.equal(predicted.status, 200)
    const body = await predicted.json()
    assert.deepEqual(Object.keys(body).sort(), ['model_version', 'processing_time', 'result', 'usage'])
    assert.ok(SENTIMENT_LABELS.includes(body.result[0].label))
    assert.ok(body.usage.prompt_tokens > 0 && body.usage.completion_tokens === 0)
    const models = await (await fetch(`${gateway.url}/models`, { headers: auth() })).json()
    assert.deepEqual(
      models.models.map((m: { name: string }) => m.name),
      ['embed', 'sentiment', 'gen'],
    )
    // A key limited to `embed` sees only it, may embed with it, and may not use the classifier.
    const limited = await (await fetch(`${gateway.url}/models`, { headers: auth(EMBED_ONLY_KEY) })).json()
    assert.deepEqual(limited.models, [{ name: 'embed', tasks: ['feature-extraction'] }])
    assert.equal(
      (await postJson(`${gateway.url}/v1/embeddings`, { model: 'embed', input: 'x' }, auth(EMBED_ONLY_KEY))).status,
      200,
    )
    assert.equal(
      (
        await postJson(
          `${gateway.url}/predict`,
          { text: 'x', task: 'sentiment-analysis', model_name: 'sentiment' },
          auth(EMBED_ONLY_KEY),
        )
      ).status,
      403,
    )
    // Without model_name the backend would choose: a limited key must name its model.
    assert.equal(
      (await postJson(`${gateway.url}/predict`, { text: 'x', task: 'feature-extraction' }, auth(EMBED_ONLY_KEY)))
        .status,
      403,
    )
  })

  test('401 without a key; bad input is refused by the gateway with a 4xx', async () => {
    assert.equal((await postJson(`${gateway.url}/v1/embeddings`, { model: 'embed', input: 'x' })).status, 401)
    assert.equal((await postJson(`${gateway.url}/predict`, { text: 'x', task: 'sentiment-analysis' })).status, 401)
    const cases: [string, unknown, string][] = [
      ['/v1/embeddings', { model: 'embed', input: '' }, 'input'],
      ['/v1/embeddings', { model: 'embed', input: 'x', encoding_format: 'int8' }, 'encoding_format'],
      ['/v1/embeddings', { input: 'x' }, 'model'],
      ['/predict', { task: 'sentiment-analysis' }, 'text'],
      ['/predict', { text: 'x', task: 'sentiment-analysis', top_k: -1 }, 'top_k'],
    ]
    for (const [path, body, param] of cases) {
      const response = await postJson(`${gateway.url}${path}`, body, auth())
      const text = await response.text()
      assert.equal(response.status, 400, text)
      assert.equal(JSON.parse(text).error.param?.split('.')[0], param, text)
    }
    // Errors only the backend can know (the model's dimensions, unknown task) come back as its 4xx.
    assert.equal(
      (await postJson(`${gateway.url}/v1/embeddings`, { model: 'embed', input: 'x', dimensions: 65 }, auth())).status,
      400,
    )
    assert.equal((await postJson(`${gateway.url}/predict`, { text: 'x', task: 'summarization' }, auth())).status, 400)
  })

  test('routing: a node that refuses connections is retried on the next one (no stream involved)', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`
    const routed = await startGateway({
      auth: { apiKeys: [{ id: 'test', tenant: 'acme', hash: sha(KEY) }] },
      routing: {
        region: 'eu',
        regions: [
          {
            name: 'eu',
            nodes: [
              { id: 'dead', url: dead },
              { id: 'live', url: backend.url },
            ],
          },
        ],
        retry: { maxAttempts: 3, perTryTimeoutMs: 30_000, budgetRatio: 0.5, budgetMinPerSecond: 10 },
      },
    })
    try {
      for (let i = 0; i < 6; i++) {
        const body = { model: 'embed', input: `routing test ${i}`, encoding_format: 'float' }
        const [embedded, predicted] = await Promise.all([
          postJson(`${routed.url}/v1/embeddings`, body, auth()),
          postJson(`${routed.url}/predict`, { text: `routing test ${i}`, task: 'sentiment-analysis' }, auth()),
        ])
        assert.deepEqual([embedded.status, predicted.status], [200, 200])
        assert.equal(embedded.headers.get('x-switchyard-backend'), 'live')
        await Promise.all([embedded.text(), predicted.text()])
      }
    } finally {
      await routed.stop()
    }
  })

  test('tokens per minute count the input tokens of embeddings (no completion is reserved)', async () => {
    // ~102 input tokens each; the gateway reserves ~516 (bytes + margin) until the answer's usage settles it.
    const body = { model: 'embed', input: 'word '.repeat(100), encoding_format: 'float' }
    let admitted = 0
    let refused: Response | undefined
    for (let i = 0; i < 20 && !refused; i++) {
      const response = await postJson(`${gateway.url}/v1/embeddings`, body, {
        ...auth(METERED_KEY),
        'cache-control': 'no-cache, no-store',
      })
      if (response.status === 429) refused = response
      else {
        assert.equal(response.status, 200)
        assert.equal((await response.json()).usage.prompt_tokens, 102)
        admitted++
      }
    }
    assert.ok(refused, 'the budget ran out')
    // Counting the reservation would admit one; counting actual input tokens admits several.
    assert.ok(admitted >= 4 && admitted <= 9, `admitted ${admitted}`)
    const refusal = (await refused.json()).error
    assert.equal(refusal.code, 'rate_limit_exceeded')
    assert.match(refusal.message, /token/i)
  })
})
