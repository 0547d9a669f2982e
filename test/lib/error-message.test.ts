import assert from 'node:assert/strict'
import { test } from 'node:test'
import { runInNewContext } from 'node:vm'
import { errorMessage } from '../../lib/error-message.ts'

test('errorMessage: Errors, error-like objects from other realms, and anything else', () => {
  assert.equal(errorMessage(new TypeError('bad type')), 'bad type')
  const foreign = runInNewContext('new Error("from another realm")')
  assert.equal(foreign instanceof Error, false)
  assert.equal(errorMessage(foreign), 'from another realm')
  assert.equal(errorMessage({ message: 'plain object' }), 'plain object')
  assert.equal(errorMessage({ message: 42 }), '[object Object]')
  assert.equal(errorMessage('a string'), 'a string')
  assert.equal(errorMessage(undefined), 'undefined')
  assert.equal(errorMessage(null), 'null')
})
