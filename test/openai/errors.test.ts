import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { ApiError, errorBody, errorEvent } from '../../openai/errors.ts'

describe('OpenAI error shape', () => {
  test('errorBody: message, type, param and code, in that order, unset ones null', () => {
    assert.equal(
      JSON.stringify(errorBody('bad')),
      '{"error":{"message":"bad","type":"invalid_request_error","param":null,"code":null}}',
    )
    assert.deepEqual(errorBody('down', { type: 'server_error', param: 'model', code: 'x' }), {
      error: { message: 'down', type: 'server_error', param: 'model', code: 'x' },
    })
  })

  test('errorEvent: one SSE event whose data is the body', () => {
    const body = errorBody('The request took longer than the gateway allows', { type: 'server_error', code: 'timeout' })
    const event = errorEvent(body)
    assert.equal(event, `data: ${JSON.stringify(body)}\n\n`)
    assert.equal(event.split('\n\n').length, 2, 'exactly one event')
  })

  test('ApiError: type from the status unless given; body through errorBody', () => {
    assert.equal(new ApiError(400, 'x').type, 'invalid_request_error')
    assert.equal(new ApiError(503, 'x').type, 'server_error')
    const error = new ApiError(404, 'no model', {
      param: 'model',
      code: 'model_not_found',
      headers: { 'Retry-After': '1' },
    })
    assert.deepEqual(error.body, errorBody('no model', { param: 'model', code: 'model_not_found' }))
    assert.deepEqual(error.headers, { 'Retry-After': '1' })
    assert.equal(error.status, 404)
  })
})
