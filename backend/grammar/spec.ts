/**
 * What a sequence's output must match, as the API layer settles it from `response_format`,
 * vLLM's `guided_*` fields or `tools`. Plain data: it crosses to the engine worker, where it is
 * compiled against the model's vocabulary (compiled-grammar cache key: `grammarKey`).
 */
export type GrammarSpec =
  | { type: 'json_object' }
  | { type: 'json_schema'; schema: string }
  | { type: 'regex'; pattern: string }
  | { type: 'ebnf'; grammar: string }
  /** xgrammar's structural tag (JSON): tool calls, triggered tags. */
  | { type: 'structural_tag'; tag: string }

/** One string per distinct grammar, for the compiled-grammar cache. */
export const grammarKey = (spec: GrammarSpec): string => JSON.stringify(spec)

/** A grammar that cannot be compiled: the client's fault, a 400 naming the problem. */
export class GrammarError extends Error {}

/** Tokens of a resumed choice that the grammar does not allow (a 400 on resume.token_ids). */
export class ResumeMismatch extends GrammarError {}
