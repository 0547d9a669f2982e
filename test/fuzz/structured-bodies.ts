import fc from 'fast-check'
import { MODEL } from './bodies.ts'
import { oddString } from './schema-arbitrary.ts'

/**
 * Output formats and tools as a client may send them: valid, odd, invalid, huge and deeply
 * nested. Each must be served (200) or refused with a 400 naming it; never a 5xx or a hang.
 */

/** The grammar bound both servers run with in the structured fuzz. */
export const MAX_GRAMMAR_CHARS = 16_384

/** Codes a structured-output refusal may carry. */
export const STRUCTURED_CODES = [
  'invalid_grammar',
  'invalid_value',
  'grammar_too_large',
  'tools_unsupported',
  'invalid_json',
  'context_length_exceeded',
]

const typeName = fc.oneof(
  fc.constantFrom('object', 'array', 'string', 'integer', 'number', 'boolean', 'null'),
  oddString(0, 8),
)
const keyword = fc.constantFrom(
  'type',
  'properties',
  'items',
  'required',
  'enum',
  'const',
  'minimum',
  'maximum',
  'minLength',
  'maxLength',
  'pattern',
  'anyOf',
  'oneOf',
  'allOf',
  '$ref',
  '$defs',
  'additionalProperties',
  'minItems',
  'maxItems',
  'format',
  'not',
)

/** JSON-schema-like objects: right keywords with wrong values, and the other way round. */
const schemaLike: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  schema: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.record({ type: typeName }, { requiredKeys: [] }),
    fc.dictionary(keyword, fc.oneof(fc.jsonValue({ maxDepth: 2 }), tie('schema')), { maxKeys: 4 }),
    fc.record(
      {
        type: fc.constant('object'),
        properties: fc.dictionary(oddString(1, 6), tie('schema'), { maxKeys: 3 }),
        required: fc.array(oddString(1, 6), { maxLength: 2 }),
      },
      { requiredKeys: ['type'] },
    ),
    fc.record(
      {
        type: fc.constant('array'),
        items: tie('schema'),
        minItems: fc.integer({ min: -2, max: 5 }),
        maxItems: fc.integer({ min: -2, max: 6 }),
      },
      { requiredKeys: ['type'] },
    ),
    fc.record({ anyOf: fc.array(tie('schema'), { maxLength: 3 }) }),
    fc.record({ type: fc.constant('string'), pattern: oddString(0, 12) }),
    fc.constantFrom(
      true,
      false,
      {},
      { $ref: '#' },
      { $ref: '#/$defs/missing' },
      { enum: [] },
      { type: 'integer', minimum: 1e308 },
      { type: 'string', minLength: 1e9 },
      { type: 'array', minItems: 5, maxItems: 1 },
    ),
  ),
})).schema

/** A schema nested `depth` levels (each level an object with one property). */
const nested = (depth: number) => {
  let schema: object = { type: 'integer', minimum: 0, maximum: 9 }
  for (let i = 0; i < depth; i++) schema = { type: 'object', properties: { a: schema }, required: ['a'] }
  return schema
}

const hugeSchema = fc
  .integer({ min: MAX_GRAMMAR_CHARS + 1, max: 40_000 })
  .map((size) => ({ type: 'object', description: 'd'.repeat(size) }))

const regexLike = fc.oneof(
  oddString(1, 16),
  fc.constantFrom(
    '(((',
    '[a-',
    'a{2,1}',
    '\\p{L}+',
    '(?<n>a)',
    'a**',
    '[z-a]',
    '\\',
    '(a|b)*c{2,}\\d+',
    'a{100000}',
    '.*',
    '^$',
  ),
)
const ebnfLike = fc.oneof(
  oddString(1, 24),
  fc.constantFrom(
    'root ::= root',
    'root ::= "a" | ',
    'foo ::= "x"',
    'root ::= [a-z]+',
    'root ::= "x" root | "y"',
    'root ::= (',
    'root ::= "\\u0000"',
  ),
)
const tool = (parameters: unknown) => ({ type: 'function', function: { name: 'f', parameters } })

/** One chat or completion body with one output format or tool set from the list above. */
export const structuredBody = fc
  .tuple(
    fc.constantFrom('chat', 'completions') as fc.Arbitrary<'chat' | 'completions'>,
    fc.oneof(
      schemaLike.map((schema) => ({ kind: 'guided_json', extra: { guided_json: schema } })),
      schemaLike.map((schema) => ({ kind: 'guided_json as text', extra: { guided_json: JSON.stringify(schema) } })),
      schemaLike.map((schema) => ({
        kind: 'response_format json_schema',
        extra: { response_format: { type: 'json_schema', json_schema: { name: 'fuzz', schema } } },
        chatOnly: true,
      })),
      regexLike.map((pattern) => ({ kind: 'guided_regex', extra: { guided_regex: pattern } })),
      ebnfLike.map((grammar) => ({ kind: 'guided_grammar', extra: { guided_grammar: grammar } })),
      fc
        .array(oddString(0, 8), { minLength: 0, maxLength: 5 })
        .map((choices) => ({ kind: 'guided_choice', extra: { guided_choice: choices } })),
      fc
        .integer({ min: 1, max: 60 })
        .map((depth) => ({ kind: 'nested schema', extra: { guided_json: nested(depth) } })),
      hugeSchema.map((schema) => ({ kind: 'huge schema', extra: { guided_json: schema } })),
      schemaLike.map((parameters) => ({
        kind: 'tools',
        extra: { tools: [tool(parameters)], tool_choice: 'required' },
        chatOnly: true,
      })),
      fc
        .constantFrom(
          { guided_regex: 'a', guided_choice: ['b'] },
          { response_format: { type: 'json_object' }, guided_json: {} },
          { tool_choice: 'required' },
        )
        .map((extra) => ({ kind: 'contradicting fields', extra, chatOnly: true })),
    ),
    fc.boolean(),
  )
  .map(([route, format, stream]) => {
    const { kind, extra } = format
    const use = 'chatOnly' in format ? 'chat' : route
    const base =
      use === 'chat'
        ? { model: MODEL, messages: [{ role: 'user', content: 'Once upon a time' }] }
        : { model: MODEL, prompt: 'Once upon a time' }
    return { route: use, kind, stream, body: { ...base, max_tokens: 8, temperature: 0.7, seed: 1, stream, ...extra } }
  })
