import { errorMessage } from '../../lib/error-message.ts'
import { GrammarError, type GrammarSpec } from './spec.ts'
import { freshXGrammar, withXGrammarErrors, type XGrammarModule } from './xgrammar.ts'

/**
 * Checks a grammar by converting it (JSON schema, regex or EBNF to xgrammar's grammar; no
 * vocabulary needed) in an xgrammar instance of its own. xgrammar refuses a bad grammar by
 * aborting its WebAssembly, which leaves that instance unusable (later calls abort too), so
 * after a refusal the instance is dropped and the next check loads a fresh one. The instance
 * that holds the tokenizer info and the matchers only ever compiles checked grammars.
 */
export class GrammarValidator {
  private instance: XGrammarModule | undefined

  /** Checks `spec`; returns what to compile (a structural tag's JSON schemas rewritten compact, see compactTag). */
  async check(spec: GrammarSpec): Promise<GrammarSpec> {
    const xg = (this.instance ??= freshXGrammar())
    try {
      if (spec.type === 'structural_tag') spec = { type: 'structural_tag', tag: await compactTag(xg, spec.tag) }
      const grammar = await withXGrammarErrors(() => {
        switch (spec.type) {
          case 'json_object':
            return xg.Grammar.builtinJSONGrammar()
          case 'json_schema':
            return xg.Grammar.fromJSONSchema(spec.schema, false, -1)
          case 'ebnf':
            return xg.Grammar.fromEBNF(spec.grammar)
          case 'regex':
            return xg.Grammar.fromStructuralTag({
              type: 'structural_tag',
              format: { type: 'regex', pattern: spec.pattern },
            })
          case 'structural_tag':
            return xg.Grammar.fromStructuralTag(spec.tag)
        }
      })
      grammar.dispose()
      return spec
    } catch (error) {
      this.instance = undefined
      throw new GrammarError(errorMessage(error))
    }
  }
}

/**
 * xgrammar writes a structural tag's `json_schema` content with free whitespace, and a model
 * can then fill a tool call's arguments with blanks up to max_tokens (greedy random weights
 * did). Each such schema is replaced by the compact grammar of the same schema, as
 * response_format gets.
 */
async function compactTag(xg: XGrammarModule, tag: string): Promise<string> {
  const formats: Record<string, unknown>[] = []
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) visit(item)
      return
    }
    if (node === null || typeof node !== 'object') return
    const format = node as Record<string, unknown>
    if (format.type === 'json_schema' && 'json_schema' in format) formats.push(format)
    else Object.values(format).forEach(visit)
  }
  const parsed = JSON.parse(tag)
  visit(parsed)
  for (const format of formats) {
    const grammar = await withXGrammarErrors(() =>
      xg.Grammar.fromJSONSchema(JSON.stringify(format.json_schema), false, -1),
    )
    delete format.json_schema
    format.type = 'grammar'
    format.grammar = grammar.toString()
    grammar.dispose()
  }
  return JSON.stringify(parsed)
}
