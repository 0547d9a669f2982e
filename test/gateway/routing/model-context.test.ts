import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseGatewayConfig } from '../../../gateway/config/parse.ts'
import { startupWarnings } from '../../../gateway/config/startup-warnings.ts'
import { contextOfPublicModel, createModelContextLengths } from '../../../gateway/routing/model-context.ts'
import { Router } from '../../../gateway/routing/router.ts'
import { noopRoutingMetrics } from '../../../gateway/types.ts'
import type { UpstreamFetch, UpstreamRequest } from '../../../gateway/upstream/upstream.ts'

// Unit tests with a stand-in upstream; test/e2e/first-run.test.ts covers the real path (a
// reservation bounded by the window a real node reports).
const quiet = { info() {}, warn() {}, error() {} }
const config = (file: object = {}, env: Record<string, string> = {}) =>
  parseGatewayConfig(
    {
      routing: {
        regions: [
          {
            name: 'eu',
            nodes: [
              { id: 'a', url: 'http://a' },
              { id: 'b', url: 'http://b' },
            ],
          },
        ],
        aliases: {
          story: {
            versions: [
              { model: 'small', weight: 1 },
              { model: 'large', weight: 1 },
            ],
          },
        },
      },
      ...file,
    },
    env,
  )

function models(lists: Record<string, unknown>): { upstream: UpstreamFetch; asked: UpstreamRequest[] } {
  const asked: UpstreamRequest[] = []
  const upstream: UpstreamFetch = async (request) => {
    asked.push(request)
    const body = lists[new URL(request.url).host]
    if (body === undefined) throw new Error('connect ECONNREFUSED')
    return {
      status: 200,
      headers: { get: () => 'application/json' },
      body: null,
      text: async () => JSON.stringify(body),
    }
  }
  return { upstream, asked }
}

describe('model context windows learned from the nodes', () => {
  test('unknown at first; one background lookup of every node; the largest window of a model wins', async () => {
    const { upstream, asked } = models({
      a: {
        data: [
          { id: 'small', max_model_len: 512 },
          { id: 'large', max_model_len: 2048 },
        ],
      },
      b: {
        data: [
          { id: 'small', max_model_len: 1024 },
          { id: 'odd', max_model_len: 'many' },
        ],
      },
    })
    const router = new Router(config().routing, { metrics: noopRoutingMetrics, logger: quiet, upstream, timers: false })
    const kept: Promise<void>[] = []
    const contexts = createModelContextLengths({
      router,
      upstream,
      headers: async () => ({ authorization: 'Bearer t' }),
      background: (work) => kept.push(work),
    })
    assert.equal(contexts.get('small'), undefined)
    assert.equal(kept.length, 1, 'the lookup a get() starts is handed to the runtime to keep alive')
    assert.equal(contexts.get('large'), undefined, 'no second lookup while one runs')
    assert.equal(kept.length, 1)
    await contexts.refresh()
    // The explicit refresh joined the lookup the first get() started: each node was asked once.
    assert.deepEqual(asked.map((r) => [r.url, r.headers.authorization]).sort(), [
      ['http://a/v1/models', 'Bearer t'],
      ['http://b/v1/models', 'Bearer t'],
    ])
    assert.equal(contexts.get('small'), 1024)
    assert.equal(contexts.get('large'), 2048)
    assert.equal(contexts.get('odd'), undefined, 'a window that is not a number is ignored')
    // An alias costs what its largest version may.
    assert.equal(contextOfPublicModel(contexts, config().routing.aliases, 'story'), 2048)
    router.close()
  })

  test('an unreachable node teaches nothing and the next lookup waits retryMs; lists passing through teach too', async () => {
    const { upstream, asked } = models({})
    const router = new Router(config().routing, { metrics: noopRoutingMetrics, logger: quiet, upstream, timers: false })
    const contexts = createModelContextLengths({ router, upstream, retryMs: 60_000 })
    assert.equal(contexts.get('small'), undefined)
    await contexts.refresh()
    const tries = asked.length
    assert.equal(contexts.get('small'), undefined)
    assert.equal(asked.length, tries, 'not asked again within retryMs')
    contexts.learn([{ id: 'small', max_model_len: 256 }])
    assert.equal(contexts.get('small'), 256)
    assert.equal(
      contextOfPublicModel(contexts, config().routing.aliases, 'story'),
      undefined,
      'one version still unknown',
    )
    router.close()
  })
})

describe('start-up warnings', () => {
  test('no authentication at all, and a short admin token, are each said once', () => {
    assert.deepEqual(startupWarnings(config({ auth: { apiKeys: [] } })).length, 1)
    assert.match(startupWarnings(config())[0], /no authentication is configured/)
    assert.deepEqual(startupWarnings(config({}, { ADMIN_TOKEN: 'x'.repeat(24) })), [])
    const short = startupWarnings(config({}, { ADMIN_TOKEN: 'x'.repeat(16) }))
    assert.equal(short.length, 1)
    assert.match(short[0], /ADMIN_TOKEN is shorter than 24 characters/)
  })

  test('backend URLs need a scheme; CORS origins are checked', () => {
    assert.throws(
      () => parseGatewayConfig({}, { BACKEND_URL: 'localhost:8000' }),
      /BACKEND_URL: must be an http:\/\/ or https:\/\/ URL/,
    )
    assert.throws(
      () => parseGatewayConfig({ backend: { url: '127.0.0.1:8000' } }, {}),
      /must be an http:\/\/ or https:\/\/ URL/,
    )
    assert.throws(
      () => config({ server: { cors: { allowedOrigins: ['https://app.example.com/path'] } } }),
      /must be \* or an origin/,
    )
    assert.deepEqual(config({ server: { cors: { allowedOrigins: ['https://app.example.com', '*'] } } }).server.cors, {
      allowedOrigins: ['https://app.example.com', '*'],
      maxAgeSeconds: 600,
    })
    assert.deepEqual(config().server.cors, { allowedOrigins: [], maxAgeSeconds: 600 })
  })
})
