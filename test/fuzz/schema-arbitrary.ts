import fc from 'fast-check'
import { z } from 'zod'

/**
 * fast-check arbitraries derived from the API's zod schemas (through their JSON Schema), so a
 * field added to a schema is fuzzed without touching the tests. What JSON Schema cannot say
 * (the model's context window, its vocabulary, fields the server refuses on purpose) is given
 * per path by a `Tweak`.
 */

export interface JsonSchema {
  type?: string | string[]
  anyOf?: JsonSchema[]
  enum?: unknown[]
  const?: unknown
  minimum?: number
  maximum?: number
  exclusiveMinimum?: number
  exclusiveMaximum?: number
  minLength?: number
  maxLength?: number
  minItems?: number
  maxItems?: number
  items?: JsonSchema
  properties?: Record<string, JsonSchema>
  required?: string[]
  additionalProperties?: JsonSchema | boolean
}

/** The JSON Schema of a request schema as clients write it (defaults not required). */
export function jsonSchemaOf(schema: z.ZodType): JsonSchema {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as JsonSchema
}

/**
 * Returns an arbitrary for the value at `path` (dotted, `[]` for array items, e.g.
 * `messages[].content`), or undefined for the generic one derived from `schema`.
 */
export type Tweak = (path: string, schema: JsonSchema) => fc.Arbitrary<unknown> | undefined

/** Longest strings and arrays generated: small bodies keep every case to a few tokens. */
const MAX_STRING_UNITS = 16
const MAX_ITEMS = 4

/**
 * Text units that break naive code: control characters, NUL, lone surrogates, joiners,
 * bidi overrides, a BOM, combining marks, what the tokenizer treats as special tokens, and
 * plain code points from the whole Unicode range.
 */
export const oddUnit: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 3, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '\u0000',
      '\n',
      '\r\n',
      '\t',
      '\u007f',
      '\ud800',
      '\udfff',
      '\u200d',
      '\u202e',
      '\ufeff',
      '\u2028',
      '\u0301',
      '\ufffd',
      '👩‍👩‍👧',
      '🦄',
      '</s>',
      '<s>',
      '<unk>',
      '\\',
      '"',
      '{',
      'data: [DONE]\n\n',
    ),
  },
)

export const oddString = (minLength = 0, maxLength = MAX_STRING_UNITS) =>
  fc.string({ unit: oddUnit, minLength, maxLength: Math.max(minLength, maxLength) })

/** Integers over the schema's whole range, boundaries included (fc.integer stops at 32 bits). */
function integerIn(min: number, max: number): fc.Arbitrary<number> {
  if (min >= -(2 ** 31) && max <= 2 ** 31 - 1) return fc.integer({ min, max })
  return fc.bigInt({ min: BigInt(min), max: BigInt(max) }).map(Number)
}

export function arbitraryFor(schema: JsonSchema, tweak: Tweak, path = ''): fc.Arbitrary<unknown> {
  const tweaked = tweak(path, schema)
  if (tweaked) return tweaked
  if (schema.anyOf) return fc.oneof(...schema.anyOf.map((s) => arbitraryFor(s, tweak, path)))
  if ('const' in schema) return fc.constant(schema.const)
  if (schema.enum) return fc.constantFrom(...schema.enum)
  if (Array.isArray(schema.type))
    return fc.oneof(...schema.type.map((type) => arbitraryFor({ ...schema, type }, tweak, path)))
  switch (schema.type) {
    case 'null':
      return fc.constant(null)
    case 'boolean':
      return fc.boolean()
    case 'integer':
      return integerIn(schema.minimum ?? -(2 ** 53 - 1), schema.maximum ?? 2 ** 53 - 1)
    case 'number': {
      const min = schema.exclusiveMinimum ?? schema.minimum ?? -1e308
      const max = schema.exclusiveMaximum ?? schema.maximum ?? 1e308
      return fc.double({
        min,
        max,
        minExcluded: schema.exclusiveMinimum !== undefined,
        maxExcluded: schema.exclusiveMaximum !== undefined,
        noNaN: true,
        noDefaultInfinity: true,
      })
    }
    case 'string':
      return oddString(schema.minLength ?? 0, Math.min(schema.maxLength ?? MAX_STRING_UNITS, MAX_STRING_UNITS))
    case 'array': {
      const min = schema.minItems ?? 0
      const max = Math.min(schema.maxItems ?? MAX_ITEMS, MAX_ITEMS)
      if (max === 0) return fc.constant([])
      return fc.array(arbitraryFor(schema.items ?? {}, tweak, `${path}[]`), {
        minLength: min,
        maxLength: Math.max(min, max),
      })
    }
    case 'object': {
      if (schema.properties) {
        const fields = Object.fromEntries(
          Object.entries(schema.properties).map(([name, s]) => [
            name,
            arbitraryFor(s, tweak, path ? `${path}.${name}` : name),
          ]),
        )
        return fc.record(fields, { requiredKeys: schema.required ?? [] })
      }
      if (typeof schema.additionalProperties === 'object')
        return fc.dictionary(oddString(), arbitraryFor(schema.additionalProperties, tweak, `${path}{}`), { maxKeys: 3 })
      return fc.constant({})
    }
    default:
      // `{}` (anything): JSON values.
      return fc.jsonValue({ maxDepth: 2 })
  }
}

/**
 * A value of the wrong type or out of the schema's range, for the field described by `schema`:
 * the schema's own bounds stepped over, NaN-ish and numeric strings, huge numbers, and values
 * of every other JSON type. Callers keep only what the zod schema really refuses.
 */
export function junkFor(schema: JsonSchema): fc.Arbitrary<unknown> {
  const outOfRange: unknown[] = []
  for (const s of schema.anyOf ?? [schema]) {
    if (s.type === 'integer' || s.type === 'number') {
      if (s.minimum !== undefined) outOfRange.push(s.minimum - 1, s.minimum - 1e-9)
      if (s.exclusiveMinimum !== undefined) outOfRange.push(s.exclusiveMinimum, -0)
      if (s.maximum !== undefined) outOfRange.push(s.maximum + 1, s.maximum + 1e-9)
      if (s.type === 'integer') outOfRange.push(0.5, 2 ** 53 + 2)
    }
    if (s.type === 'string' && s.maxLength !== undefined) outOfRange.push('x'.repeat(s.maxLength + 1))
    if (s.type === 'string' && s.minLength) outOfRange.push('')
    if (s.type === 'array' && s.maxItems !== undefined)
      outOfRange.push(Array.from({ length: s.maxItems + 1 }, () => (s.items?.type === 'integer' ? 1 : 'a')))
    if (s.type === 'array' && s.minItems) outOfRange.push([])
  }
  const nanIsh = fc.constantFrom(
    'NaN',
    'Infinity',
    '-Infinity',
    '1e400',
    '0x10',
    '1_000',
    '',
    ' ',
    'null',
    'true',
    '٣',
    '½',
    '1.5',
    '-0',
  )
  const others = fc.oneof(
    fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, -1, 0.5, true, false, [], {}, [null], { $gt: 0 }, [
      [[[]]],
    ]),
    nanIsh,
    fc.jsonValue({ maxDepth: 2 }),
  )
  return outOfRange.length > 0 ? fc.oneof(fc.constantFrom(...outOfRange), others) : others
}
