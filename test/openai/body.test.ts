import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { z } from 'zod'
import { MAX_BODY_DEPTH, nestsDeeperThan, readJsonBody } from '../../openai/body.ts'
import { ApiError } from '../../openai/errors.ts'

/** A request with `text` as its body; `type` null sends no Content-Type. */
const request = (text: string, type: string | null = 'application/json') => ({
  header: (name: string) => (name === 'content-type' ? (type ?? undefined) : undefined),
  text: async () => text,
})
const schema = z.object({ model: z.string() })

/** The ApiError readJsonBody throws, as status, code and param. */
async function refusal(text: string, type?: string | null) {
  try {
    await readJsonBody(request(text, type), schema)
  } catch (error) {
    assert.ok(error instanceof ApiError)
    return { status: error.status, code: error.code, param: error.param, message: error.message }
  }
  assert.fail('the body should be refused')
}

describe('readJsonBody', () => {
  test('a valid body: the parsed data and the JSON as sent (unknown fields kept)', async () => {
    const { data, json } = await readJsonBody(
      request('{"model":"m","extra":1}', 'application/vnd.api+json; charset=utf-8'),
      schema,
    )
    assert.deepEqual(data, { model: 'm' })
    assert.deepEqual(json, { model: 'm', extra: 1 })
  })

  test('415 for another content type, 400 for bad JSON, too deep, or invalid fields', async () => {
    assert.deepEqual(await refusal('{}', 'text/plain'), {
      status: 415,
      code: 'unsupported_media_type',
      param: null,
      message: 'Content-Type must be application/json',
    })
    assert.deepEqual(await refusal('{}', null), {
      status: 415,
      code: 'unsupported_media_type',
      param: null,
      message: 'Content-Type must be application/json',
    })
    assert.equal((await refusal('{"model":')).code, 'invalid_json')
    const deep = '['.repeat(MAX_BODY_DEPTH + 1) + ']'.repeat(MAX_BODY_DEPTH + 1)
    assert.deepEqual(await refusal(deep), {
      status: 400,
      code: 'invalid_json',
      param: null,
      message: `The request body nests deeper than ${MAX_BODY_DEPTH} levels`,
    })
    assert.deepEqual(await refusal('{"model":5}'), {
      status: 400,
      code: 'invalid_value',
      param: 'model',
      message: "Invalid type for 'model': expected a string, but got an integer instead.",
    })
  })

  test('nestsDeeperThan counts arrays and objects alike', () => {
    assert.equal(nestsDeeperThan({ a: [{ b: 1 }] }, 3), false)
    assert.equal(nestsDeeperThan({ a: [{ b: [] }] }, 3), true)
    assert.equal(nestsDeeperThan('text', 0), false)
  })
})
