import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { formatResetDuration, rateLimitHeaders } from '../../../gateway/limits/headers.ts'

describe('formatResetDuration', () => {
  it('writes durations the way OpenAI does', () => {
    const cases: [number, string][] = [
      [1, '1s'],
      [360, '6m0s'],
      [0.02, '20ms'],
      [0.0004, '0s'],
      [0, '0s'],
      [-3, '0s'],
      [1.5, '1.5s'],
      [59.25, '59.25s'],
      [61.5, '1m1.5s'],
      [3600, '1h0m0s'],
      [3725, '1h2m5s'],
      [59.9996, '1m0s'],
      [Number.NaN, '0s'],
    ]
    for (const [seconds, text] of cases) assert.equal(formatResetDuration(seconds), text, `${seconds}s`)
  })
})

describe('rateLimitHeaders', () => {
  it('gives the request and token trios', () => {
    assert.deepEqual(
      rateLimitHeaders({
        requests: { limit: 60, remaining: 59, resetSeconds: 1 },
        tokens: { limit: 150000, remaining: 149984, resetSeconds: 0.006 },
      }),
      {
        'x-ratelimit-limit-requests': '60',
        'x-ratelimit-remaining-requests': '59',
        'x-ratelimit-reset-requests': '1s',
        'x-ratelimit-limit-tokens': '150000',
        'x-ratelimit-remaining-tokens': '149984',
        'x-ratelimit-reset-tokens': '6ms',
      },
    )
  })

  it('leaves out a limit that did not apply, and never reports a negative remainder', () => {
    assert.deepEqual(rateLimitHeaders({ tokens: { limit: 1000, remaining: -5, resetSeconds: 360 } }), {
      'x-ratelimit-limit-tokens': '1000',
      'x-ratelimit-remaining-tokens': '0',
      'x-ratelimit-reset-tokens': '6m0s',
    })
    assert.deepEqual(rateLimitHeaders({}), {})
  })
})
