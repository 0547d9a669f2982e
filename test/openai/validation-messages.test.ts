import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { z } from 'zod'
import { validationError } from '../../openai/body.ts'
import { chatRequestSchema, completionRequestSchema, generateRequestSchema } from '../../openai/requests.ts'

const messageFor = (schema: z.ZodType, body: unknown) => {
  const parsed = schema.safeParse(body)
  assert.ok(!parsed.success, 'the body should be refused')
  const error = validationError(parsed.error, body)
  return { message: error.message, param: error.param, status: error.status, code: error.code }
}
const chat = (extra: object) => ({ model: 'm', messages: [{ role: 'user', content: 'x' }], ...extra })

describe('validation messages: the field, what it allows, what it got', () => {
  test('ranges, types, enums and missing fields', () => {
    const cases: [z.ZodType, unknown, string, string | null][] = [
      [
        chatRequestSchema,
        chat({ temperature: 5 }),
        "Invalid value for 'temperature': expected a number at most 2, but got 5.",
        'temperature',
      ],
      [
        chatRequestSchema,
        chat({ top_p: 0 }),
        "Invalid value for 'top_p': expected a number greater than 0, but got 0.",
        'top_p',
      ],
      [
        chatRequestSchema,
        chat({ n: 1.5 }),
        "Invalid type for 'n': expected an integer, but got a number instead.",
        'n',
      ],
      [chatRequestSchema, chat({ n: '2' }), "Invalid type for 'n': expected a number, but got a string instead.", 'n'],
      [
        chatRequestSchema,
        chat({ stop: ['a', 'b', 'c', 'd', 'e'] }),
        "Invalid value for 'stop': expected an array with at most 4 items, but got 5 items.",
        'stop',
      ],
      [
        chatRequestSchema,
        chat({ model: 'x'.repeat(300) }),
        "Invalid value for 'model': expected a string of at most 256 characters, but got 300 characters.",
        'model',
      ],
      [
        chatRequestSchema,
        chat({ messages: [] }),
        "Invalid value for 'messages': expected an array with at least 1 items, but got 0 items.",
        'messages',
      ],
      [
        chatRequestSchema,
        chat({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] }),
        `Invalid value for 'messages[0].content[0].type': expected "text", but got "image_url".`,
        'messages.0.content',
      ],
      [
        chatRequestSchema,
        { messages: [{ role: 'user', content: 'x' }] },
        "Missing required parameter: 'model'.",
        'model',
      ],
      [chatRequestSchema, [], 'Invalid type: expected an object, but got an array instead.', null],
      [
        completionRequestSchema,
        { model: 'm', prompt: {} },
        "Invalid type for 'prompt': expected a string or an array, but got an object instead.",
        'prompt',
      ],
      [
        completionRequestSchema,
        { model: 'm', prompt: 'x', logprobs: 9 },
        "Invalid value for 'logprobs': expected a number at most 5, but got 9.",
        'logprobs',
      ],
      [
        generateRequestSchema,
        { prompt: 5 },
        "Invalid type for 'prompt': expected a string, but got an integer instead.",
        'prompt',
      ],
    ]
    for (const [schema, body, message, param] of cases)
      assert.deepEqual(messageFor(schema, body), { message, param, status: 400, code: 'invalid_value' })
  })

  test('a message written in a schema on purpose is kept, with the field named', () => {
    const schema = z
      .object({ resume: z.string() })
      .refine(() => false, { message: 'resume continues a single choice', path: ['resume'] })
    assert.equal(
      messageFor(schema, { resume: 'x' }).message,
      "Invalid value for 'resume': resume continues a single choice",
    )
  })

  test('unknown keys of a strict object are named', () => {
    assert.equal(
      messageFor(z.strictObject({ a: z.number() }), { a: 1, b: 2, c: 3 }).message,
      'Unrecognized request arguments supplied: b, c.',
    )
  })

  test('values are shown short: a long string is cut', () => {
    const { message } = messageFor(z.object({ role: z.enum(['user']) }), { role: 'x'.repeat(100) })
    assert.ok(message.length < 120, message)
    assert.match(message, /but got "x+…\.$/)
  })
})
