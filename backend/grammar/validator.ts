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

  async check(spec: GrammarSpec): Promise<void> {
    const xg = (this.instance ??= freshXGrammar())
    try {
      const grammar = await withXGrammarErrors(() => {
        switch (spec.type) {
          case 'json_object':
            return xg.Grammar.builtinJSONGrammar()
          case 'json_schema':
            return xg.Grammar.fromJSONSchema(spec.schema, false, -1)
          case 'ebnf':
            return xg.Grammar.fromEBNF(spec.grammar)
          case 'regex':
            return xg.Grammar.fromStructuralTag({ type: 'structural_tag', format: { type: 'regex', pattern: spec.pattern } })
          case 'structural_tag':
            return xg.Grammar.fromStructuralTag(spec.tag)
        }
      })
      grammar.dispose()
    } catch (error) {
      this.instance = undefined
      throw new GrammarError((error as Error).message)
    }
  }
}
