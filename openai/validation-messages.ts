import type { core } from 'zod'

/**
 * OpenAI-style messages for zod issues: which field, what it allows, and what it got
 * ("Invalid value for 'temperature': expected a number at most 2, but got 5."), in place of
 * zod's own wording ("Invalid input", `expected "text"`), which names neither.
 */

type Issue = core.$ZodIssue
type Path = readonly PropertyKey[]

/** `messages[0].content`, as OpenAI writes a field's place. */
export function fieldName(path: Path): string {
  return path
    .map((key, i) => (typeof key === 'number' ? `[${key}]` : i === 0 ? String(key) : `.${String(key)}`))
    .join('')
}

/** The value at `path` in the client's body (zod reports issues without it). */
function valueAt(input: unknown, path: Path): unknown {
  let value = input
  for (const key of path) {
    if (value === null || typeof value !== 'object' || !Object.hasOwn(value, key)) return undefined
    value = (value as Record<PropertyKey, unknown>)[key]
  }
  return value
}

const article: Record<string, string> = {
  int: 'an integer',
  number: 'a number',
  string: 'a string',
  array: 'an array',
  object: 'an object',
  boolean: 'a boolean',
  null: 'null',
}
const kindOf = (value: unknown) =>
  value === null
    ? 'null'
    : Array.isArray(value)
      ? 'an array'
      : Number.isInteger(value)
        ? 'an integer'
        : (article[typeof value] ?? typeof value)
const shown = (value: unknown) => {
  const text = JSON.stringify(value)
  return text === undefined ? String(value) : text.length > 40 ? `${text.slice(0, 40)}…` : text
}
const listed = (items: string[]) =>
  items.length < 3 ? items.join(' or ') : `${items.slice(0, -1).join(', ')} or ${items.at(-1)}`
/** zod's default English messages; anything else was written in a schema on purpose and is kept. */
const ZOD_DEFAULT = /^(Invalid|Too (big|small)|Unrecognized)/

function bound(issue: Extract<Issue, { code: 'too_big' | 'too_small' }>): string {
  const big = issue.code === 'too_big'
  const limit = String(big ? issue.maximum : issue.minimum)
  const edge = issue.inclusive === false ? (big ? 'less than' : 'greater than') : big ? 'at most' : 'at least'
  if (issue.origin === 'array' || issue.origin === 'set') return `an array with ${edge} ${limit} items`
  if (issue.origin === 'string') return `a string of ${edge} ${limit} characters`
  return `a number ${edge} ${limit}`
}

/** The message for one issue; `input` is the client's whole body. */
export function describeIssue(issue: Issue, input: unknown, prefix: Path = []): string {
  const path = [...prefix, ...issue.path]
  const field = fieldName(path)
  const value = valueAt(input, path)
  const name = field ? ` for '${field}'` : ''
  if (issue.code !== 'invalid_union' && !ZOD_DEFAULT.test(issue.message))
    return field ? `Invalid value for '${field}': ${issue.message}` : issue.message
  switch (issue.code) {
    case 'invalid_type':
      if (value === undefined && field) return `Missing required parameter: '${field}'.`
      return `Invalid type${name}: expected ${article[issue.expected] ?? issue.expected}, but got ${kindOf(value)} instead.`
    case 'invalid_value':
      return `Invalid value${name}: expected ${issue.values.length === 1 ? shown(issue.values[0]) : `one of ${issue.values.map(shown).join(', ')}`}, but got ${shown(value)}.`
    case 'too_big':
    case 'too_small': {
      const got = Array.isArray(value)
        ? `${value.length} items`
        : typeof value === 'string'
          ? `${value.length} characters`
          : shown(value)
      return `Invalid value${name}: expected ${bound(issue)}, but got ${got}.`
    }
    case 'unrecognized_keys':
      return `Unrecognized request argument${issue.keys.length > 1 ? 's' : ''} supplied${name}: ${issue.keys.join(', ')}.`
    case 'invalid_union': {
      // A branch whose type matched the value says what is wrong inside it; otherwise list the types allowed.
      const matched = issue.errors.find(
        (branch) => branch.length > 0 && !branch.every((i) => i.code === 'invalid_type' && i.path.length === 0),
      )
      if (matched) return describeIssue(matched[0], input, path)
      const expected = [
        ...new Set(
          issue.errors
            .flatMap((branch) =>
              branch.map((i) => (i.code === 'invalid_type' ? (article[i.expected] ?? i.expected) : '')),
            )
            .filter(Boolean),
        ),
      ]
      if (expected.length === 0) return `Invalid value${name}.`
      return `Invalid type${name}: expected ${listed(expected)}, but got ${kindOf(value)} instead.`
    }
    default:
      return field ? `Invalid value for '${field}'.` : 'Invalid request body.'
  }
}
