import { ApiError } from '../../../openai/errors.ts'
import type { ChatRequest, GuidedFields } from '../../../openai/requests.ts'
import type { ServedModel } from '../../engine/text-generation.ts'
import type { GrammarSpec } from '../../grammar/spec.ts'

/** A grammar to enforce, and the request field it came from (named in errors). */
export interface OutputGrammar {
  spec: GrammarSpec
  param: string
}

type FormatFields = GuidedFields & { response_format?: ChatRequest['response_format'] }

/**
 * The grammar that `response_format` or one of vLLM's `guided_*` fields asks for, or undefined
 * for free text. More than one of them is refused: they would contradict each other.
 */
export function outputGrammarOf(body: FormatFields, maxChars: number): OutputGrammar | undefined {
  const found: OutputGrammar[] = []
  const format = body.response_format
  if (format?.type === 'json_object') found.push({ param: 'response_format', spec: { type: 'json_object' } })
  if (format?.type === 'json_schema') {
    const schema = format.json_schema.schema
    found.push({
      param: 'response_format.json_schema.schema',
      spec: schema == null ? { type: 'json_object' } : { type: 'json_schema', schema: JSON.stringify(schema) },
    })
  }
  if (body.guided_json != null)
    found.push({ param: 'guided_json', spec: { type: 'json_schema', schema: schemaText(body.guided_json) } })
  if (body.guided_regex != null)
    found.push({ param: 'guided_regex', spec: { type: 'regex', pattern: body.guided_regex } })
  if (body.guided_choice != null)
    found.push({ param: 'guided_choice', spec: { type: 'ebnf', grammar: choiceGrammar(body.guided_choice) } })
  if (body.guided_grammar != null)
    found.push({ param: 'guided_grammar', spec: { type: 'ebnf', grammar: body.guided_grammar } })
  if (found.length > 1) {
    throw new ApiError(
      400,
      `Only one output format can apply: ${found.map((f) => f.param.split('.')[0]).join(' and ')} were both given`,
      { param: found[1].param.split('.')[0], code: 'invalid_value' },
    )
  }
  if (found[0]) checkSize(found[0], maxChars)
  return found[0]
}

export function checkSize(grammar: OutputGrammar, maxChars: number): void {
  const chars = grammarChars(grammar.spec)
  if (chars > maxChars)
    throw new ApiError(400, `The output format is ${chars} characters long; this server accepts at most ${maxChars}`, {
      param: grammar.param,
      code: 'grammar_too_large',
    })
}

const grammarChars = (spec: GrammarSpec) =>
  spec.type === 'json_schema'
    ? spec.schema.length
    : spec.type === 'regex'
      ? spec.pattern.length
      : spec.type === 'ebnf'
        ? spec.grammar.length
        : spec.type === 'structural_tag'
          ? spec.tag.length
          : 0

/**
 * Compiles the grammar on the model's engine before generation starts, so an invalid one is a
 * 400 naming the problem, and the sequences find it compiled. `resumeIds` (a resumed choice's
 * tokens) must follow the grammar too.
 */
export async function prepareGrammar(model: ServedModel, grammar: OutputGrammar, resumeIds?: number[]): Promise<void> {
  const result = await model.engine.compileGrammar(grammar.spec, resumeIds)
  if (result.ok) return
  if (result.invalid) {
    const param = result.param ?? grammar.param
    throw new ApiError(400, `Invalid value for '${param}': ${result.message}`, {
      param,
      code: param === grammar.param ? 'invalid_grammar' : 'invalid_value',
    })
  }
  throw new ApiError(503, `Constrained decoding is unavailable on this server: ${result.message}`, {
    type: 'server_error',
    code: 'grammar_unavailable',
  })
}

function schemaText(schema: string | boolean | Record<string, unknown>): string {
  if (typeof schema !== 'string') return JSON.stringify(schema)
  try {
    const parsed = JSON.parse(schema)
    if (typeof parsed === 'boolean' || (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)))
      return JSON.stringify(parsed)
  } catch {
    // Reported below.
  }
  throw new ApiError(400, "Invalid value for 'guided_json': a string must hold a JSON schema (a JSON object)", {
    param: 'guided_json',
    code: 'invalid_value',
  })
}

/** EBNF for exactly one of the strings (JSON escapes are valid xgrammar string escapes). */
const choiceGrammar = (choices: string[]) => `root ::= ${choices.map((c) => JSON.stringify(c)).join(' | ')}`
