import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Ajv } from 'ajv'
import { generateText, type ServedModel, type TextChunk } from '../../../backend/engine/text-generation.ts'
import type { GrammarSpec } from '../../../backend/grammar/spec.ts'
import { buildRandomLlama } from '../../../backend/model/builder/build-model.ts'
import { STORIES_DIR } from '../../helpers/paths.ts'
import { startServedModel } from '../../helpers/served-model.ts'

/**
 * 200 constrained generations per schema, sampled at temperature 1, every output validated with
 * ajv. On random weights (and on a story model that has never seen JSON) nothing would parse
 * without the grammar.
 */
const GENERATIONS = 200
const SCHEMAS: Record<string, object> = {
  nested: {
    type: 'object',
    properties: {
      user: {
        type: 'object',
        properties: { id: { type: 'integer', minimum: 1, maximum: 9999 }, active: { type: 'boolean' } },
        required: ['id', 'active'],
        additionalProperties: false,
      },
      note: { type: 'null' },
    },
    required: ['user', 'note'],
    additionalProperties: false,
  },
  boundedArray: { type: 'array', items: { type: 'integer', minimum: -50, maximum: 50 }, minItems: 1, maxItems: 4 },
  enums: {
    type: 'object',
    properties: { color: { enum: ['red', 'green', 'blue'] }, size: { const: 'XL' } },
    required: ['color', 'size'],
    additionalProperties: false,
  },
  // xgrammar 0.1.27 bounds integers exactly but not fractional numbers (it let -10.2 through minimum -10): see docs/api.md.
  numbers: {
    type: 'object',
    properties: { x: { type: 'number' }, n: { type: 'integer', minimum: 0, maximum: 100 } },
    required: ['x', 'n'],
    additionalProperties: false,
  },
  pattern: {
    type: 'object',
    properties: {
      code: { type: 'string', pattern: '^[A-Z]{2}-[0-9]{3}$' },
      tag: { type: 'string', minLength: 1, maxLength: 6 },
    },
    required: ['code', 'tag'],
    additionalProperties: false,
  },
  anyOf: {
    type: 'array',
    items: {
      anyOf: [{ type: 'integer', minimum: 0, maximum: 9 }, { type: 'string', maxLength: 3 }, { type: 'boolean' }],
    },
    minItems: 2,
    maxItems: 3,
  },
}

const ajv = new Ajv({ strict: false })

async function generateAll(
  model: ServedModel,
  spec: GrammarSpec,
  prompt: number[],
  count: number,
  maxTokens: number,
): Promise<{ text: string; finish: string }[]> {
  const sampling = {
    temperature: 1,
    topP: 1,
    topK: 0,
    minP: 0,
    presencePenalty: 0,
    frequencyPenalty: 0,
    repetitionPenalty: 1,
    seed: 7,
    logprobs: -1,
  }
  const results = Array.from({ length: count }, () => ({ text: '', finish: '' }))
  const chunks: AsyncGenerator<TextChunk> = generateText(
    model,
    { prompts: [prompt], n: count, maxTokens, stop: [], sampling, grammar: spec },
    1024,
  )
  for await (const chunk of chunks) {
    results[chunk.index].text += chunk.text
    if (chunk.finishReason) results[chunk.index].finish = chunk.finishReason
  }
  return results
}

async function checkSchemas(model: ServedModel, prompt: number[], maxTokens: number) {
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    const spec: GrammarSpec = { type: 'json_schema', schema: JSON.stringify(schema) }
    const compiled = await model.engine.compileGrammar(spec)
    assert.ok(compiled.ok, `${name}: ${JSON.stringify(compiled)}`)
    const validate = ajv.compile(schema)
    const results = await generateAll(model, spec, prompt, GENERATIONS, maxTokens)
    const distinct = new Set<string>()
    for (const { text, finish } of results) {
      assert.equal(finish, 'stop', `${name}: a generation did not finish: ${JSON.stringify(text)}`)
      let value: unknown
      assert.doesNotThrow(() => (value = JSON.parse(text)), `${name}: not JSON: ${JSON.stringify(text)}`)
      assert.ok(validate(value), `${name}: ${text} does not match: ${ajv.errorsText(validate.errors)}`)
      distinct.add(text)
    }
    // Sampled at temperature 1: the grammar constrains, the model still chooses.
    assert.ok(distinct.size > 1, `${name}: every output was ${[...distinct][0]}`)
  }
}

describe('constrained generation: 200 outputs per schema all validate', () => {
  let dir: string
  const models: ServedModel[] = []
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'switchyard-grammar-'))
    await buildRandomLlama({ dir: join(dir, 'random'), preset: 'tiny', seed: 3 })
  })
  after(async () => {
    await Promise.all(models.map((m) => m.engine.close()))
    await rm(dir, { recursive: true, force: true })
  })

  test('stories260K (trained, byte-fallback vocabulary)', async () => {
    const model = await startServedModel(STORIES_DIR)
    models.push(model)
    await checkSchemas(model, model.tokenizer.encode('Once upon a time'), 120)
  })

  test('random weights (builder tiny preset)', async () => {
    const model = await startServedModel(join(dir, 'random'))
    models.push(model)
    await checkSchemas(model, model.tokenizer.encode('Hello'), 120)
  })
})
