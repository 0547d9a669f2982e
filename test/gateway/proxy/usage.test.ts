import assert from 'node:assert/strict'
import { test } from 'node:test'
import { usageOf } from '../../../gateway/proxy/usage.ts'

test('usageOf reads OpenAI usage and /generate counts, and nothing from anything else', () => {
  assert.deepEqual(usageOf({ choices: [{ text: '"usage": {"prompt_tokens": 99}' }], usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 } }), { promptTokens: 5, completionTokens: 7 })
  assert.deepEqual(usageOf({ generated_text: 'x', input_tokens: 3, output_tokens: 4 }), { promptTokens: 3, completionTokens: 4 })
  assert.equal(usageOf({ choices: [] }), undefined)
  assert.equal(usageOf({ usage: null }), undefined)
  assert.equal(usageOf('text'), undefined)
  assert.equal(usageOf(null), undefined)
})
