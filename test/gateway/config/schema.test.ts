import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { test } from 'node:test'
import { gatewayEnvSchema, gatewayFileSchema } from '../../../gateway/config/schema.ts'

// schema-defaults.json was captured from the schema as it was before its nested defaults moved
// to `.prefault({})` (each default written once): the parsed result must not change.
const fixture = JSON.parse(readFileSync(new URL('./schema-defaults.json', import.meta.url), 'utf8')) as {
  cases: { input: unknown; output: unknown }[]
  env: unknown
}

test('an empty and partial config files parse to the same full defaults as before', () => {
  assert.ok(fixture.cases.length >= 4)
  for (const { input, output } of fixture.cases)
    assert.deepEqual(gatewayFileSchema.parse(input), output, JSON.stringify(input))
})

test('an empty environment parses to the same defaults as before', () => {
  assert.deepEqual(gatewayEnvSchema.parse({}), fixture.env)
})

test('parsing twice gives separate default objects (no shared mutable default)', () => {
  const [a, b] = [gatewayFileSchema.parse({}), gatewayFileSchema.parse({})]
  assert.notEqual(a.server.cors.allowedOrigins, b.server.cors.allowedOrigins)
  assert.notEqual(a.limits, b.limits)
})
