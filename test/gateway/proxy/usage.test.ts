import assert from 'node:assert/strict'
import { test } from 'node:test'
import { usageFrom, usageOf } from '../../../gateway/proxy/usage.ts'

test('usageOf reads OpenAI usage and /generate counts, and nothing from anything else', () => {
  assert.deepEqual(
    usageOf({
      choices: [{ text: '"usage": {"prompt_tokens": 99}' }],
      usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
    }),
    { promptTokens: 5, completionTokens: 7 },
  )
  assert.deepEqual(usageOf({ generated_text: 'x', input_tokens: 3, output_tokens: 4 }), {
    promptTokens: 3,
    completionTokens: 4,
  })
  assert.equal(usageOf({ choices: [] }), undefined)
  assert.equal(usageOf({ usage: null }), undefined)
  assert.equal(usageOf('text'), undefined)
  assert.equal(usageOf(null), undefined)
})

test("usageFrom (a stream chunk's usage): a missing count is 0", () => {
  assert.deepEqual(usageFrom({ prompt_tokens: 2, completion_tokens: 9, total_tokens: 11 }), {
    promptTokens: 2,
    completionTokens: 9,
  })
  assert.deepEqual(usageFrom({ completion_tokens: 1 }), { promptTokens: 0, completionTokens: 1 })
})
