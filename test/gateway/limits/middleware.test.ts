import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { RateLimitStore } from '../../../gateway/types.ts'
import type { UpstreamResponse } from '../../../gateway/upstream/upstream.ts'
import {
  apiKeyEntry,
  completionBody,
  createInProcessGateway,
  fakeNodes,
  jsonAnswer,
  recordingLogger,
  until,
} from '../../helpers/in-process-gateway.ts'

// Per-key and per-IP limits through the whole app in process (memory store): what is refused,
// with which headers, and that slots and unused tokens come back when a response ends.
const KEY = 'sy-limits-test-key-0123456789abcdef'
const auth = { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' }

function gatewayWith(
  limits: object,
  answer: Parameters<typeof fakeNodes>[0] = () => jsonAnswer(200, completionBody()),
  extra: { keyLimits?: object; rateLimits?: RateLimitStore } = {},
) {
  const fake = fakeNodes(answer)
  const { logger, lines } = recordingLogger()
  const gateway = createInProcessGateway({
    config: {
      auth: { apiKeys: [apiKeyEntry('k', KEY, extra.keyLimits ? { limits: extra.keyLimits } : {})] },
      cache: { enabled: false },
      limits,
    },
    upstream: fake.upstream,
    logger,
    deps: extra.rateLimits ? { rateLimits: extra.rateLimits } : {},
  })
  const post = (body: object = {}, headers: Record<string, string> = auth) =>
    gateway.app.request('/v1/completions', {
      method: 'POST',
      headers,
      body: JSON.stringify({ model: 'm', prompt: 'abcd', max_tokens: 10, ...body }),
    })
  return { ...fake, gateway, post, lines }
}
const errorOf = async (response: Response) =>
  ((await response.json()) as { error: { code: string; message: string; type: string } }).error

describe('per-key limits', () => {
  test('requests per window: the last allowed carries remaining 0, the next is 429 with retry-after', async (t) => {
    const g = gatewayWith({ defaults: { requestsPerWindow: 2, requestWindowSeconds: 60 } })
    t.after(() => g.gateway.close())
    const first = await g.post()
    assert.equal(first.status, 200)
    assert.equal(first.headers.get('x-ratelimit-limit-requests'), '2')
    assert.equal(first.headers.get('x-ratelimit-remaining-requests'), '1')
    assert.equal((await g.post()).headers.get('x-ratelimit-remaining-requests'), '0')
    const refused = await g.post()
    assert.equal(refused.status, 429)
    assert.ok(Number(refused.headers.get('retry-after')) > 0)
    const error = await errorOf(refused)
    assert.deepEqual([error.code, error.type], ['rate_limit_exceeded', 'rate_limit_error'])
    assert.equal(g.requests.length, 2, 'a refused request reaches no node')
  })

  test('a key’s own limits override the defaults', async (t) => {
    const g = gatewayWith({ defaults: { requestsPerWindow: 100 } }, undefined, { keyLimits: { requestsPerWindow: 1 } })
    t.after(() => g.gateway.close())
    assert.equal((await g.post()).status, 200)
    assert.equal((await g.post()).status, 429)
  })

  test('concurrency: a second request in flight is refused; the slot comes back when the first ends', async (t) => {
    let release!: () => void
    const held = new Promise<UpstreamResponse>(
      (resolve) => (release = () => resolve(jsonAnswer(200, completionBody()))),
    )
    let calls = 0
    const g = gatewayWith({ defaults: { maxConcurrent: 1 } }, () =>
      calls++ === 0 ? held : jsonAnswer(200, completionBody()),
    )
    t.after(() => g.gateway.close())
    const first = g.post()
    await until(() => g.requests.length === 1, 'the first request at the node')
    const second = await g.post()
    assert.equal(second.status, 429)
    assert.equal((await errorOf(second)).code, 'concurrency_limit_exceeded')
    release()
    assert.equal((await first).status, 200)
    // The slot is freed when the request ends, just after its response.
    await until(
      () => g.lines.some((l) => l.message === 'request' && l.fields.status === 200),
      'the first request ended',
    )
    assert.equal((await g.post()).status, 200)
  })

  test('tokens: the reservation (prompt bound + max_tokens × choices) is refused when it does not fit; the unused part is refunded', async (t) => {
    // 'abcd' is at most 4 tokens, plus 16 for template markers: 20; max_tokens 10 × n 2: 20.
    const g = gatewayWith({ defaults: { tokensPerMinute: 100 } }, () =>
      jsonAnswer(200, completionBody(' hi', { prompt_tokens: 3, completion_tokens: 2 })),
    )
    t.after(() => g.gateway.close())
    const tooBig = await g.post({ max_tokens: 50, n: 2 })
    assert.equal(tooBig.status, 429)
    const error = await errorOf(tooBig)
    assert.equal(error.code, 'rate_limit_exceeded')
    assert.match(error.message, /^Rate limit reached for tokens: .*up to 120 tokens/)
    const ok = await g.post({ n: 2 })
    assert.equal(ok.status, 200)
    assert.equal(ok.headers.get('x-ratelimit-remaining-tokens'), '60', '100 − the 40 reserved')
    await until(() => g.lines.some((l) => l.message === 'request' && l.fields.status === 200), 'the request ended')
    // 5 used of the 40 reserved: 35 come back, so the next sees 95 − its own 40.
    assert.equal((await g.post({ n: 2 })).headers.get('x-ratelimit-remaining-tokens'), '55')
  })

  test('a failing store lets requests through and says so in the log', async (t) => {
    const down = async (): Promise<never> => {
      throw new Error('store down')
    }
    const failing: RateLimitStore = { admit: down, hitRequest: down }
    const g = gatewayWith({ defaults: { requestsPerWindow: 1 } }, undefined, { rateLimits: failing })
    t.after(() => g.gateway.close())
    assert.equal((await g.post()).status, 200)
    assert.equal((await g.post()).status, 200)
    assert.ok(
      g.lines.some(
        (l) => l.level === 'warn' && /rate limit store failed/.test(l.message) && l.fields.error === 'store down',
      ),
    )
  })
})

describe('per-IP guard on failed authentication', () => {
  test('authenticated requests cost nothing; after the limit of 401s the address gets 429', async (t) => {
    const g = gatewayWith({ perIp: { requestsPerWindow: 2, requestWindowSeconds: 60 } })
    t.after(() => g.gateway.close())
    for (let i = 0; i < 4; i++) assert.equal((await g.post()).status, 200)
    const wrong = { ...auth, authorization: 'Bearer sy-wrong-key-0123456789abcdef0123' }
    assert.equal((await g.post({}, wrong)).status, 401)
    assert.equal((await g.post({}, wrong)).status, 401)
    const limited = await g.post({}, wrong)
    assert.equal(limited.status, 429)
    assert.ok(Number(limited.headers.get('retry-after')) > 0)
    assert.equal((await errorOf(limited)).code, 'rate_limit_exceeded')
    assert.equal((await g.post({}, wrong)).status, 429, 'refused at once while blocked')
  })
})
