import assert from 'node:assert/strict'
import { test } from 'node:test'
import { usageFromJson } from '../../../gateway/proxy/usage.ts'

test('usageFromJson reads OpenAI usage, /generate counts, and nothing from junk', () => {
  const openai = JSON.stringify({ choices: [{ text: 'she said "usage": {"prompt_tokens": 99}' }], usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12, prompt_tokens_details: { cached_tokens: 0 } } })
  assert.deepEqual(usageFromJson(openai), { promptTokens: 5, completionTokens: 7 })
  assert.deepEqual(usageFromJson(JSON.stringify({ choices: [{ text: '"usage": {"prompt_tokens": 99, "completion_tokens": 1}' }] })), undefined)
  assert.deepEqual(usageFromJson(JSON.stringify({ generated_text: 'x', input_tokens: 3, output_tokens: 4 })), { promptTokens: 3, completionTokens: 4 })
  assert.equal(usageFromJson('<html>bad gateway</html>'), undefined)
  assert.equal(usageFromJson('{"error":{"message":"no"}}'), undefined)
})
