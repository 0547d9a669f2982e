import assert from 'node:assert/strict'
import { rmSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import type { z } from 'zod'
import { embeddingRequestSchema, PREDICT_TASKS, predictRequestSchema } from '../../openai/encoder-requests.ts'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { buildEncoderModelDir } from '../helpers/encoder-models.ts'
import { type Answer, assertOpenAiError, fuzz, send } from './harness.ts'
import { arbitraryFor, jsonSchemaOf, junkFor, oddString, type Tweak } from './schema-arbitrary.ts'

/**
 * Property-based fuzzing of the encoder routes of a real backend node (builder-made embedding,
 * classification and generation models): bodies drawn from the request schemas — models and
 * tasks served or not, odd texts, token ids in and out of the vocabulary, any dimensions — are
 * answered 200 in the right shape or 4xx in OpenAI's shape; junk in any field gets a 4xx; nothing
 * gets a 5xx or hangs.
 */
const MODELS = fc.constantFrom('embed', 'sentiment', 'gen', 'missing')
const tokenIds = fc.array(fc.oneof(fc.integer({ min: 0, max: 1100 }), fc.constantFrom(101, 102)), {
  minLength: 1,
  maxLength: 40,
})
const text = fc.oneof(oddString(1, 60), fc.constantFrom('hello world', 'word '.repeat(200)))
const tweaks: Record<'embeddings' | 'predict', Tweak> = {
  embeddings: (path) => {
    if (path === 'model')
      return fc.oneof({ weight: 3, arbitrary: fc.constant('embed') }, { weight: 1, arbitrary: MODELS })
    if (path === 'input')
      return fc.oneof(
        text,
        fc.array(text, { minLength: 1, maxLength: 4 }),
        tokenIds,
        fc.array(tokenIds, { minLength: 1, maxLength: 4 }),
      )
    if (path === 'dimensions') return fc.integer({ min: 1, max: 80 })
    if (path === 'truncate_prompt_tokens') return fc.oneof(fc.constant(-1), fc.integer({ min: 1, max: 200 }))
    return undefined
  },
  predict: (path) => {
    if (path === 'model_name') return fc.option(MODELS)
    if (path === 'task') return fc.oneof(fc.constantFrom(...PREDICT_TASKS), oddString(1, 12))
    if (path === 'text') return text
    if (path === 'max_new_tokens') return fc.integer({ min: 1, max: 600 })
    if (path === 'top_k') return fc.integer({ min: 1, max: 5 })
    if (path === 'truncate_prompt_tokens') return fc.oneof(fc.constant(-1), fc.integer({ min: 1, max: 200 }))
    return undefined
  },
}
const ROUTES = {
  embeddings: { path: '/v1/embeddings', schema: embeddingRequestSchema },
  predict: { path: '/predict', schema: predictRequestSchema },
} as const

function assertServedShape(route: keyof typeof ROUTES, answer: Answer): void {
  const body = JSON.parse(answer.text)
  if (route === 'embeddings') {
    assert.equal(body.object, 'list')
    assert.ok(body.data.length >= 1 && body.usage.prompt_tokens >= 1)
    for (const item of body.data)
      assert.ok(
        typeof item.embedding === 'string' ||
          item.embedding.every((v: unknown) => typeof v === 'number' && Number.isFinite(v)),
      )
  } else {
    assert.deepEqual(Object.keys(body).sort(), ['model_version', 'processing_time', 'result', 'usage'])
    assert.ok(Array.isArray(body.result))
    const { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total } = body.usage
    assert.ok(
      Number.isInteger(prompt) && Number.isInteger(completion) && total === prompt + completion,
      JSON.stringify(body.usage),
    )
  }
}

describe('fuzz: encoder routes of a backend node', () => {
  let dir: string
  let backend: BackendProcess
  before(async () => {
    dir = await buildEncoderModelDir()
    backend = await startBackend({ MODEL_DIR: dir })
  })
  after(async () => {
    await backend?.stop()
    rmSync(dir, { recursive: true, force: true })
  })

  for (const route of ['embeddings', 'predict'] as const) {
    const { path, schema } = ROUTES[route]
    const jsonSchema = jsonSchemaOf(schema)
    const post = (body: unknown) =>
      send(`${backend.url}${path}`, {
        body: new TextEncoder().encode(JSON.stringify(body)),
        headers: { 'content-type': 'application/json' },
      })

    test(`POST ${path}: schema-shaped bodies get 200 in shape or a 4xx in OpenAI's shape`, async (t) => {
      await fuzz(t, `POST ${path} valid-ish`, arbitraryFor(jsonSchema, tweaks[route]), async (body) => {
        const answer = await post(body)
        if (answer.status === 200) {
          assertServedShape(route, answer)
          return '200'
        }
        return `${answer.status} ${assertOpenAiError(answer).code}`
      })
    })

    test(`POST ${path}: junk in one field gets a 4xx naming it`, async (t) => {
      const fields = Object.keys(jsonSchema.properties ?? {})
      const junk = fc
        .tuple(
          arbitraryFor(jsonSchema, tweaks[route]) as fc.Arbitrary<Record<string, unknown>>,
          fc.constantFrom(...fields),
        )
        .chain(([body, field]) =>
          junkFor(jsonSchema.properties![field]).map((value) => ({ ...body, [field]: value, field })),
        )
        .filter(({ field, ...body }) => !(schema as z.ZodType).safeParse(body).success && field !== undefined)
      await fuzz(t, `POST ${path} junk`, junk, async ({ field, ...body }) => {
        assertOpenAiError(await post(body), { status: [400], param: field })
        return field
      })
    })
  }
})
