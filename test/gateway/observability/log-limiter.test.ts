import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createLogLimiter } from '../../../gateway/observability/log-limiter.ts'
import type { Logger } from '../../../gateway/types.ts'

type Line = { level: string; fields: Record<string, unknown>; message: string }
function recording() {
  const lines: Line[] = []
  const logger: Logger = {
    info: (fields, message) => lines.push({ level: 'info', fields, message }),
    warn: (fields, message) => lines.push({ level: 'warn', fields, message }),
    error: (fields, message) => lines.push({ level: 'error', fields, message }),
  }
  return { lines, logger }
}

test('one line per cause per interval; the next interval starts with the count of what was left out', () => {
  const { lines, logger } = recording()
  let now = 0
  const log = createLogLimiter(logger, { intervalMs: 1000, now: () => now })
  for (let i = 0; i < 1000; i++) log('error', 'store', { i }, 'store down')
  for (let i = 0; i < 10; i++) log('warn', 'other', { i }, 'other cause')
  assert.deepEqual(
    lines.map((l) => [l.message, l.fields.i]),
    [
      ['store down', 0],
      ['other cause', 0],
    ],
  )
  now = 1000
  log('error', 'store', { i: 1000 }, 'store down')
  assert.deepEqual(lines.slice(2), [
    { level: 'error', fields: { cause: 'store', suppressed: 999, intervalMs: 1000 }, message: 'store down (repeated)' },
    { level: 'error', fields: { i: 1000 }, message: 'store down' },
  ])
})

test('the count of the last interval is written when it ends, without another line of that cause', async () => {
  const { lines, logger } = recording()
  const log = createLogLimiter(logger, { intervalMs: 50 })
  for (let i = 0; i < 5; i++) log('warn', 'flood', {}, 'authentication failed')
  assert.equal(lines.length, 1)
  await new Promise((r) => setTimeout(r, 150))
  assert.deepEqual(lines[1], {
    level: 'warn',
    fields: { cause: 'flood', suppressed: 4, intervalMs: 50 },
    message: 'authentication failed (repeated)',
  })
})

test('bounded: past maxCauses the oldest cause is flushed and forgotten; interval 0 logs every line', () => {
  const { lines, logger } = recording()
  const now = 0
  const log = createLogLimiter(logger, { intervalMs: 1000, maxCauses: 2, now: () => now })
  log('info', 'a', {}, 'a')
  log('info', 'a', {}, 'a')
  log('info', 'b', {}, 'b')
  log('info', 'c', {}, 'c')
  assert.deepEqual(
    lines.map((l) => l.message),
    ['a', 'b', 'a (repeated)', 'c'],
  )
  log('info', 'a', {}, 'a')
  assert.equal(lines.at(-1)!.message, 'a', 'a was forgotten, so it is written again')
  const every = recording()
  const unlimited = createLogLimiter(every.logger, { intervalMs: 0 })
  for (let i = 0; i < 5; i++) unlimited('warn', 'x', {}, 'x')
  assert.equal(every.lines.length, 5)
})
