import fc from 'fast-check'
import type { z } from 'zod'
import { MAX_BODY_DEPTH } from '../../openai/body.ts'
import { chatRequestSchema, completionRequestSchema, generateRequestSchema } from '../../openai/requests.ts'
import { arbitraryFor, type JsonSchema, jsonSchemaOf, junkFor, oddString, type Tweak } from './schema-arbitrary.ts'

/**
 * Request bodies for the generation endpoints, derived from the request schemas: valid but odd
 * ones that must be served, and junk that must be refused with a 4xx in OpenAI's error shape.
 */

export const MODEL = 'stories260K'
/** stories260K's context window and vocabulary. */
export const CONTEXT = 512
export const VOCAB = 512
/** Both servers under fuzz run with this body limit, so oversized bodies stay small. */
export const MAX_BODY_BYTES = 65_536

export type Route = 'completions' | 'chat' | 'generate'
export const PATHS: Record<Route, string> = {
  completions: '/v1/completions',
  chat: '/v1/chat/completions',
  generate: '/generate',
}
export const SCHEMAS: Record<Route, z.ZodType> = {
  completions: completionRequestSchema,
  chat: chatRequestSchema,
  generate: generateRequestSchema,
}

export interface BodyCase {
  /** What kind of case this is, for per-kind counts. */
  kind: string
  /** More about this one case, for failure messages. */
  detail?: string
  body: Uint8Array
  /** Content-Type header; null sends none. */
  contentType: string | null
  /** Send the body chunked (no Content-Length). */
  chunked?: boolean
}

export interface JunkCase extends BodyCase {
  /** Allowed statuses (all 4xx) and error codes. */
  status: number[]
  codes?: (string | null)[]
  /** The error's `param` must start with this. */
  param?: string
}

const encoder = new TextEncoder()
const bytes = (text: string) => encoder.encode(text)

/** Makes fast-check print a case as its kind and the start of its body, not as a byte array. */
function printable<T extends BodyCase>(c: T): T {
  const preview = new TextDecoder().decode(c.body.subarray(0, 300))
  return Object.assign(c, {
    [fc.toStringMethod]: () =>
      `${c.kind}${c.detail ? ` [${c.detail}]` : ''} (${c.body.length} bytes, ${c.contentType ?? 'no content type'}${c.chunked ? ', chunked' : ''}): ${JSON.stringify(preview)}`,
  })
}
const JSON_TYPE = 'application/json'

/** Names that are not fields of any schema but are properties of every object (prototype pollution). */
const PROTOTYPE_KEYS = [
  '__proto__',
  'constructor',
  'prototype',
  'toString',
  'hasOwnProperty',
  'valueOf',
  '__defineGetter__',
  'isPrototypeOf',
]

const tokenId = fc.integer({ min: 0, max: VOCAB - 1 })
const fewTokens = fc.integer({ min: 1, max: 8 })

/**
 * What the schemas cannot say. Each answer keeps a case valid for this model and fast; the
 * generic arbitrary covers everything else (boundary numbers, odd strings, null, absent).
 */
const tweaks: Record<Route, Tweak> = {
  completions: (path, schema) => {
    if (path === 'model') return fc.constant(MODEL)
    // Few tokens per case; null means the default (16).
    if (path === 'max_tokens') return fc.option(fewTokens)
    // Token ids must be in the vocabulary.
    if (path.startsWith('prompt') && schema.type === 'integer') return tokenId
    return commonTweak(path)
  },
  chat: (path) => {
    if (path === 'model') return fc.constant(MODEL)
    if (path === 'max_tokens' || path === 'max_completion_tokens') return fc.option(fewTokens)
    return commonTweak(path)
  },
  generate: (path) => {
    if (path === 'model') return fc.constant(MODEL)
    if (path === 'max_length') return fewTokens
    return undefined
  },
}

/** Output formats stories260K serves (one per body: two contradict); invalid ones are fuzzed in structured.test.ts. */
const structuredTweak = (path: string): fc.Arbitrary<unknown> | undefined => {
  if (path === 'response_format')
    return fc.constantFrom(
      undefined,
      null,
      { type: 'text' },
      { type: 'json_object' },
      {
        type: 'json_schema',
        json_schema: { name: 'n', schema: { type: 'object', properties: { a: { type: 'integer' } } } },
      },
    )
  if (path === 'guided_json' || path === 'guided_regex' || path === 'guided_choice' || path === 'guided_grammar')
    return fc.constant(undefined)
  // stories260K's has no chat template, so no tool support: tools are fuzzed in structured.test.ts.
  if (path === 'tools' || path === 'parallel_tool_calls' || path === 'messages[].tool_calls')
    return fc.constantFrom(undefined, null)
  if (path === 'tool_choice') return fc.constantFrom(undefined, null, 'none')
  return undefined
}

function commonTweak(path: string): fc.Arbitrary<unknown> | undefined {
  const structured = structuredTweak(path)
  if (structured) return structured
  // Refused on purpose when set (docs/api.md: logit_bias non-empty, suffix): only their empty forms are valid.
  if (path === 'logit_bias') return fc.constantFrom(null, {})
  if (path === 'suffix') return fc.constantFrom(null, '')
  // Mid-stream continuation is the gateway's own (refused from clients) and has its own tests.
  if (path === 'resume') return fc.constant(undefined)
  return undefined
}

/** Rules across fields: best_of equals n; a chat body names its max tokens (else it runs to the context's end). */
function fixUp(route: Route, body: Record<string, unknown>): Record<string, unknown> {
  const out = { ...body }
  if (route === 'completions' && out.best_of != null) out.best_of = out.n ?? 1
  if (route === 'chat' && out.max_tokens == null && out.max_completion_tokens == null) out.max_tokens = 4
  return out
}

const utf8Length = (text: string) => encoder.encode(text).length

/**
 * Whether the prompt and the tokens asked for surely fit the context window: every token covers
 * at least one UTF-8 byte, plus BOS and the chat fallback's role markers.
 */
export function fitsContext(route: Route, body: Record<string, any>): boolean {
  if (route === 'chat') {
    const prompt = (body.messages as any[]).reduce(
      (sum, m) =>
        sum +
        12 +
        (typeof m.content === 'string'
          ? utf8Length(m.content)
          : (m.content ?? []).reduce((s: number, p: any) => s + utf8Length(p.text), 0)),
      8,
    )
    return prompt + (body.max_completion_tokens ?? body.max_tokens) <= CONTEXT
  }
  const max = route === 'generate' ? (body.max_length ?? 50) : (body.max_tokens ?? 16)
  const prompts = typeof body.prompt === 'string' ? [body.prompt] : body.prompt
  const longest = Math.max(
    ...(prompts as unknown[]).map((p) =>
      typeof p === 'string' ? utf8Length(p) + 2 : typeof p === 'number' ? prompts.length : (p as number[]).length,
    ),
  )
  return longest + max <= CONTEXT
}

export const schemaOf = (route: Route) => jsonSchemaOf(SCHEMAS[route])

/** Schema-derived bodies that must be served. */
export function validBodyObject(route: Route): fc.Arbitrary<Record<string, unknown>> {
  return (arbitraryFor(schemaOf(route), tweaks[route]) as fc.Arbitrary<Record<string, unknown>>)
    .map((b) => fixUp(route, b))
    .filter((b) => fitsContext(route, b))
}

const jsonText = (body: unknown) => JSON.stringify(body)

/**
 * A valid body as sent: unknown extra members (prototype names among them), and sometimes a
 * known field written twice, first with a wrong value (JSON.parse keeps the last, on both sides).
 */
export function validCase(route: Route): fc.Arbitrary<BodyCase> {
  const known = schemaOf(route).properties ?? {}
  const unknownKey = fc
    .oneof(
      fc.constantFrom(...PROTOTYPE_KEYS, '', ' ', 'MODEL', 'metadata', '$where', 'parallel_tool_calls'),
      oddString(1, 8),
    )
    .filter((k) => !Object.hasOwn(known, k))
  const extra = fc.array(fc.tuple(unknownKey, fc.jsonValue({ maxDepth: 3 })), { maxLength: 3 })
  const duplicate = fc.option(fc.tuple(fc.nat(), fc.constantFrom('junk', -1, null, [], { x: 1 }, 1e308)), { freq: 3 })
  const contentType = fc.constantFrom(
    JSON_TYPE,
    'application/json; charset=utf-8',
    'Application/JSON',
    'application/vnd.api+json',
    'application/json;charset=UTF-8;foo=bar',
  )
  // RFC 8259 lets a parser ignore one leading byte order mark; both servers do.
  const bom = fc.oneof({ weight: 9, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constant('\ufeff') })
  return fc
    .tuple(validBodyObject(route), extra, duplicate, contentType, fc.boolean(), bom)
    .map(([body, extras, dup, type, chunked, prefix]) => {
      const members = extras.map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`)
      const keys = Object.keys(body).filter((k) => body[k] !== undefined)
      if (dup && keys.length > 0) members.push(`${JSON.stringify(keys[dup[0] % keys.length])}:${jsonText(dup[1])}`)
      const text = members.length > 0 ? `{${members.join(',')},${jsonText(body).slice(1)}` : jsonText(body)
      const kind = [
        members.length > 0 ? 'valid, extra members' : 'valid',
        prefix ? 'BOM' : '',
        chunked ? 'chunked' : '',
      ]
        .filter(Boolean)
        .join(', ')
      return printable({ kind, body: bytes(prefix + text), contentType: type, chunked })
    })
}

/** Valid JSON text with invalid UTF-8 bytes inside a string: decoded (WHATWG) to U+FFFD, so still valid. */
export function invalidUtf8InStringCase(route: Route): fc.Arbitrary<BodyCase> {
  const bad = fc.constantFrom([0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82])
  return fc.tuple(validBodyObject(route), bad).map(([body, junk]) => {
    const marker = '\u0001MARK\u0001'
    // Completions echo the prompt back, so the replacement character can be seen in the answer.
    const field =
      route === 'chat'
        ? { messages: [{ role: 'user', content: marker }] }
        : route === 'completions'
          ? { prompt: marker, echo: true, stream: false }
          : { prompt: marker }
    const text = jsonText({ ...body, ...field })
    const escaped = JSON.stringify(marker).slice(1, -1)
    const at = text.indexOf(escaped)
    const out = new Uint8Array([...bytes(text.slice(0, at)), ...junk, ...bytes(text.slice(at + escaped.length))])
    return printable({ kind: 'invalid UTF-8 inside a string', body: out, contentType: JSON_TYPE })
  })
}

const validText = (route: Route) => validBodyObject(route).map(jsonText)

/** Junk of every kind the brief names; each case says which 4xx it must get. */
export function junkCase(route: Route, options: { gateway: boolean }): fc.Arbitrary<JunkCase> {
  const schema = schemaOf(route)
  const zod = SCHEMAS[route]
  const properties = Object.entries(schema.properties ?? {}) as [string, JsonSchema][]
  const json = (kind: string, text: string, rest: Partial<JunkCase> & { status: number[] }): JunkCase =>
    printable({ kind, body: bytes(text), contentType: JSON_TYPE, ...rest })

  const wrongField = fc
    .tuple(validBodyObject(route), fc.constantFrom(...properties))
    .chain(([body, [name, s]]) => junkFor(s).map((value) => ({ body: { ...body, [name]: value }, name })))
    .filter(({ body }) => !zod.safeParse(body).success)
    .map(({ body, name }) =>
      json('wrong type or range', jsonText(body), {
        status: [400],
        codes: ['invalid_value'],
        param: name,
        detail: name,
      }),
    )

  const missing = fc.tuple(validBodyObject(route), fc.constantFrom(...(schema.required ?? []))).map(([body, name]) =>
    json('missing required field', jsonText(Object.fromEntries(Object.entries(body).filter(([k]) => k !== name))), {
      status: [400],
      codes: ['invalid_value'],
      param: name,
      detail: name,
    }),
  )

  const notObject = fc
    .oneof(
      fc.jsonValue({ maxDepth: 2 }).filter((v) => v === null || typeof v !== 'object' || Array.isArray(v)),
      validBodyObject(route).map((b) => [b]),
    )
    .map((v) => json('not an object', jsonText(v), { status: [400], codes: ['invalid_value'] }))

  const deep = fc
    .tuple(
      validBodyObject(route),
      fc.integer({ min: MAX_BODY_DEPTH, max: 9_000 }),
      fc.constantFrom('[', '{"a":'),
      fc.constantFrom('x-extra', 'prompt', 'messages', 'stop'),
    )
    .map(([body, depth, open, field]) => {
      const close = open === '[' ? ']' : '}'
      const nested = `${open.repeat(depth)}1${close.repeat(depth)}`
      // Last, so JSON.parse keeps it over the body's own member of that name.
      return json('nested too deep', `${jsonText(body).slice(0, -1)},${JSON.stringify(field)}:${nested}}`, {
        status: [400],
        codes: ['invalid_json'],
        detail: `${depth + 1} levels in ${field}`,
      })
    })

  // Fields reachable only through the prototype chain must not count as present.
  const prototypeKeys = fc.oneof(
    fc
      .tuple(validBodyObject(route), fc.constantFrom('__proto__', 'constructor'))
      .map(([body, key]) =>
        json(
          'fields only under __proto__ or constructor',
          key === '__proto__' ? `{"__proto__":${jsonText(body)}}` : jsonText({ constructor: { prototype: body } }),
          { status: [400], codes: ['invalid_value'], detail: key },
        ),
      ),
    fc.tuple(validBodyObject(route), fc.constantFrom(...PROTOTYPE_KEYS)).map(([body, model]) =>
      json('model named after a prototype member', jsonText({ ...body, model }), {
        status: [404],
        codes: ['model_not_found'],
        param: 'model',
        detail: model,
      }),
    ),
  )

  const unknownModel = fc
    .tuple(validBodyObject(route), oddString(1, 24))
    .filter(([, model]) => model !== MODEL && model.length <= 256)
    .map(([body, model]) =>
      json('unknown model', jsonText({ ...body, model }), {
        status: [404],
        codes: ['model_not_found'],
        param: 'model',
      }),
    )

  const notJson = fc.oneof(
    fc.tuple(validText(route), fc.nat()).map(([text, cut]) => text.slice(0, cut % text.length)),
    validText(route).map((text) => `${text}}`),
    validText(route).map((text) => text.replace(/"/g, "'")),
    validText(route).map((text) => `${text.slice(0, -1)},}`),
    validText(route).map((text) => `/* comment */${text}`),
    // A byte order mark is ignored only at the very start.
    validText(route).map((text) => `{\ufeff${text.slice(1)}`),
    fc.constantFrom(
      '',
      ' ',
      'NaN',
      'undefined',
      '{"model": NaN}',
      '{model: 1}',
      '{"a":1}{"b":2}',
      '\u0000',
      '[',
      '{"prompt": "x',
      'true false',
    ),
    fc.string({ unit: 'binary', maxLength: 64 }),
  )
  const notJsonCases = notJson
    .filter((text) => {
      try {
        JSON.parse(text.replace(/^\ufeff+/, ''))
        return false
      } catch {
        return true
      }
    })
    .map((text) => json('not JSON', text, { status: [400], codes: ['invalid_json'] }))

  // Invalid UTF-8 between JSON tokens decodes to U+FFFD, which is not JSON; a UTF-16 body is not UTF-8.
  const badBytes = fc.oneof(
    fc
      .tuple(validText(route), fc.constantFrom([0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x80, 0x80]))
      .map(([text, junk]) => new Uint8Array([0x7b, ...junk, ...bytes(text.slice(1))])),
    validText(route).map((text) => new Uint8Array([0xff, 0xfe, ...Buffer.from(text, 'utf16le')])),
  )
  const badBytesCases = badBytes.map((body) =>
    printable<JunkCase>({
      kind: 'invalid UTF-8 outside strings',
      body,
      contentType: JSON_TYPE,
      status: [400],
      codes: ['invalid_json'],
    }),
  )

  const notJsonType = fc.oneof(
    fc.constantFrom(
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'text/json',
      'json',
      'application/javascript',
      'application/jsonp',
      '*/*',
      '',
    ),
    fc.string({ unit: 'grapheme-ascii', maxLength: 32 }).filter((t) => !/json/i.test(t) && /^[\x20-\x7e]*$/.test(t)),
  )
  const wrongType = fc.tuple(validText(route), fc.option(notJsonType, { freq: 4 })).map(([text, type]) =>
    printable<JunkCase>({
      kind: 'not a JSON content type',
      body: bytes(text),
      contentType: type ?? null,
      status: [415],
      codes: ['unsupported_media_type'],
    }),
  )

  const oversized = fc
    .tuple(validBodyObject(route), fc.integer({ min: MAX_BODY_BYTES + 1, max: MAX_BODY_BYTES + 40_000 }), fc.boolean())
    .map(([body, size, chunked]) =>
      json('over the body limit', jsonText({ ...body, padding: 'p'.repeat(size) }), {
        status: [413],
        codes: ['request_too_large'],
        chunked,
      }),
    )

  const overContext = fc
    .tuple(validBodyObject(route), fc.integer({ min: CONTEXT, max: 1_000_000 }))
    .map(([body, max]) =>
      json(
        'over the context window',
        jsonText({
          ...body,
          [route === 'generate' ? 'max_length' : route === 'chat' ? 'max_completion_tokens' : 'max_tokens']: max,
        }),
        { status: [400], codes: ['context_length_exceeded'] },
      ),
    )

  const kinds = [
    wrongField,
    missing,
    notObject,
    deep,
    prototypeKeys,
    unknownModel,
    notJsonCases,
    badBytesCases,
    wrongType,
    oversized,
    overContext,
  ]
  if (route === 'completions') {
    kinds.push(
      fc
        .tuple(
          validBodyObject(route),
          fc.constantFrom({ logit_bias: { '5': 1 } }, { suffix: 'The end.' }, { best_of: 3, n: 2 }),
        )
        .map(([body, extra]) =>
          json('refused parameter', jsonText({ ...body, ...extra }), {
            status: [400],
            codes: ['unsupported_parameter'],
          }),
        ),
    )
  }
  if (route === 'chat') {
    kinds.push(
      fc
        .tuple(
          validBodyObject(route),
          fc.constantFrom(
            { logit_bias: { '5': -100 } },
            { tools: [{ type: 'function', function: { name: 'f' } }] },
            { response_format: { type: 'json_object' }, guided_regex: 'a' },
          ),
        )
        .map(([body, extra]) =>
          json('refused parameter', jsonText({ ...body, ...extra }), {
            status: [400],
            codes: ['unsupported_parameter', 'invalid_value', 'tools_unsupported'],
          }),
        ),
    )
  }
  if (options.gateway && route !== 'generate') {
    kinds.push(
      validBodyObject(route).map((body) =>
        json(
          'resume from a client',
          jsonText({
            ...body,
            n: 1,
            prompt: route === 'completions' ? 'x' : undefined,
            resume: { token_ids: [1], text_offset: 0 },
          }),
          { status: [400], codes: ['unsupported_parameter'], param: 'resume' },
        ),
      ),
    )
  }
  return fc.oneof(...kinds)
}
