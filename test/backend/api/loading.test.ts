import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createBackendApp } from '../../../backend/api/app.ts'
import { BackendMetrics } from '../../../backend/metrics.ts'

// Found by the chaos test: a node restarted on its port listens before its models are loaded,
// and a generation reaching it then (before the gateway's health checks have seen /ready 503)
// got a 404 model_not_found, which the gateway returns to the client as the client's error.
test('a node still loading answers generations 503 loading with Retry-After, not 404', async () => {
  const app = createBackendApp({
    models: new Map(),
    metrics: new BackendMetrics({ defaultMetrics: false }),
    maxQueue: 1,
    maxGrammarChars: 65_536,
    requestTimeoutMs: 1000,
    retryAfterSeconds: 2,
    maxBodyBytes: 1 << 20,
    isDraining: () => false,
    isReady: () => false,
    engineStallTimeoutMs: 60_000,
  })
  for (const [path, body] of [
    ['/v1/completions', { model: 'stories260K', prompt: 'hi' }],
    ['/v1/chat/completions', { model: 'stories260K', messages: [{ role: 'user', content: 'hi' }] }],
    ['/generate', { prompt: 'hi' }],
  ] as const) {
    const response = await app.request(path, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    assert.equal(response.status, 503, path)
    assert.equal(response.headers.get('retry-after'), '2')
    assert.deepEqual(((await response.json()) as { error: { type: string; code: string } }).error, {
      message: 'The server is still loading its models; retry on another node',
      type: 'server_error',
      param: null,
      code: 'loading',
    })
  }
  assert.equal((await app.request('/ready')).status, 503)
  assert.equal((await app.request('/health')).status, 200)
})
