import type { CompiledGrammar, GrammarCompiler, TokenizerInfo } from '@mlc-ai/web-xgrammar'
import { errorMessage } from '../../lib/error-message.ts'
import { MatcherConstraint } from './constraint.ts'
import { controlTokenMask } from './control-tokens.ts'
import { GrammarError, type GrammarSpec, grammarKey, ResumeMismatch } from './spec.ts'
import { Utf8ByteGuard } from './utf8-guard.ts'
import { GrammarValidator } from './validator.ts'
import type { GrammarVocabulary } from './vocabulary.ts'
import { loadXGrammar, withXGrammarErrors } from './xgrammar.ts'

/**
 * One model's grammar compiler: xgrammar's TokenizerInfo built once from the vocabulary, and
 * compiled grammars kept per grammar in a bounded LRU (a compiled JSON schema is reused by every
 * request that sends it). Lives in the engine worker, next to the matchers that use it.
 */
export class GrammarCache {
  private readonly vocabulary: GrammarVocabulary
  private readonly maxEntries: number
  private readonly utf8: Utf8ByteGuard | undefined
  private readonly controlTokens: Int32Array
  private readonly validator = new GrammarValidator()
  private readonly compiled = new Map<string, Promise<CompiledGrammar>>()
  private compiler: Promise<{ compiler: GrammarCompiler; info: TokenizerInfo }> | undefined

  constructor(vocabulary: GrammarVocabulary, maxEntries: number) {
    this.vocabulary = vocabulary
    this.maxEntries = maxEntries
    this.utf8 = vocabulary.vocabType === 'byte_fallback' ? Utf8ByteGuard.of(vocabulary.tokens) : undefined
    this.controlTokens = controlTokenMask(vocabulary)
  }

  /** Builds the TokenizerInfo now (it takes ~0.2 s for a 150k vocabulary), not at the first request. */
  async warm(): Promise<void> {
    await this.compilerOf()
  }

  get size(): number {
    return this.compiled.size
  }

  /** The compiled grammar, from the cache or compiled now; GrammarError if the grammar is invalid. */
  compile(spec: GrammarSpec): Promise<CompiledGrammar> {
    const key = grammarKey(spec)
    const hit = this.compiled.get(key)
    if (hit) {
      // Map order is the LRU order: a hit moves to the back.
      this.compiled.delete(key)
      this.compiled.set(key, hit)
      return hit
    }
    const pending = this.compileNow(spec)
    this.compiled.set(key, pending)
    pending.catch(() => this.compiled.get(key) === pending && this.compiled.delete(key))
    while (this.compiled.size > this.maxEntries) {
      const [oldest, entry] = this.compiled.entries().next().value!
      this.compiled.delete(oldest)
      // Matchers made from it keep their own reference; this drops only the cache's.
      void entry.then(
        (g) => g.dispose(),
        () => {},
      )
    }
    return pending
  }

  /** A fresh constraint for one sequence, advanced over `replayIds` (a resumed stream's tokens). */
  async constraint(spec: GrammarSpec, replayIds: number[] = []): Promise<MatcherConstraint> {
    const compiled = await this.compile(spec)
    const { GrammarMatcher } = loadXGrammar()
    // Regexes and EBNF grammars may ask for control characters; JSON never has them raw.
    const json = spec.type === 'json_object' || spec.type === 'json_schema' || spec.type === 'structural_tag'
    const matcher = await GrammarMatcher.createGrammarMatcher(compiled, this.vocabulary.stopTokenIds)
    const constraint = new MatcherConstraint(matcher, {
      utf8: this.utf8,
      forbidden: json ? this.controlTokens : undefined,
    })
    for (const id of replayIds) {
      // An id outside the vocabulary would fail a check inside xgrammar, which aborts its instance.
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabulary.vocabSize || !constraint.accept(id)) {
        constraint.dispose()
        throw new ResumeMismatch(
          `resume.token_ids do not follow the requested format (token ${id} is not allowed there)`,
        )
      }
    }
    return constraint
  }

  private compilerOf() {
    this.compiler ??= (async () => {
      const xg = loadXGrammar()
      const v = this.vocabulary
      const info = await xg.TokenizerInfo.createTokenizerInfo(
        v.tokens,
        v.vocabType,
        v.prependSpace,
        v.vocabSize,
        v.stopTokenIds,
      )
      // xgrammar's own cache is unbounded; this class keeps the bounded one.
      return { compiler: await xg.GrammarCompiler.createGrammarCompiler(info, false), info }
    })()
    return this.compiler
  }

  private async compileNow(spec: GrammarSpec): Promise<CompiledGrammar> {
    const compiled = await this.compileSpec(await this.validator.check(spec))
    // A grammar can be well-formed and match nothing (`root ::= root`): refuse it now, not at the first token.
    const matcher = await loadXGrammar().GrammarMatcher.createGrammarMatcher(compiled, this.vocabulary.stopTokenIds)
    try {
      if (!(await matcher.getNextTokenBitmask()).some((word) => word !== 0))
        throw new GrammarError('the grammar matches no text')
    } catch (error) {
      compiled.dispose()
      throw error
    } finally {
      matcher.dispose()
    }
    return compiled
  }

  private async compileSpec(spec: GrammarSpec): Promise<CompiledGrammar> {
    const { compiler } = await this.compilerOf()
    try {
      return await withXGrammarErrors(() => {
        switch (spec.type) {
          case 'json_object':
            // OpenAI's JSON mode: one object, compact (the builtin JSON grammar allows any value and free whitespace).
            return compiler.compileJSONSchema('{"type": "object"}', false, -1)
          case 'json_schema':
            // Compact JSON (no free whitespace): a model cannot pad its output with blanks up to max_tokens.
            return compiler.compileJSONSchema(spec.schema, false, -1)
          case 'ebnf':
            return compiler.compileGrammar(spec.grammar)
          case 'regex':
            return compiler.compileStructuralTag({
              type: 'structural_tag',
              format: { type: 'regex', pattern: spec.pattern },
            })
          case 'structural_tag':
            return compiler.compileStructuralTag(spec.tag)
        }
      })
    } catch (error) {
      throw new GrammarError(errorMessage(error))
    }
  }
}
