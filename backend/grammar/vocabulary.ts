/** What xgrammar needs to know about a model's tokens (TokenizerInfo's inputs). */
export interface GrammarVocabulary {
  /** Token strings by id, as tokenizer.json spells them ('Ġ' / '▁' / '<0x0A>' included). */
  tokens: string[]
  /** How the strings map to bytes: GPT-2 byte-level BPE, SentencePiece with byte fallback, or raw text. */
  vocabType: 'byte_level' | 'byte_fallback' | 'raw'
  /** SentencePiece tokenizers that prepend '▁' to the input. */
  prependSpace: boolean
  /** The model's vocabulary size (logit row length), which may exceed the tokenizer's. */
  vocabSize: number
  /** Tokens that end generation: a finished grammar allows exactly these. */
  stopTokenIds: number[]
}

type Json = Record<string, unknown>

/** Reads tokenizer.json (Hugging Face tokenizers format) into the vocabulary xgrammar needs. */
export function grammarVocabulary(tokenizerJson: Json, vocabSize: number, stopTokenIds: number[]): GrammarVocabulary {
  const model = (tokenizerJson.model ?? {}) as Json
  const tokens: string[] = []
  const vocab = model.vocab
  // BPE and WordPiece: {token: id}; Unigram: [[token, score], ...] in id order.
  if (Array.isArray(vocab))
    vocab.forEach((entry, id) => {
      tokens[id] = String((entry as unknown[])[0])
    })
  else for (const [token, id] of Object.entries((vocab ?? {}) as Record<string, number>)) tokens[id] = token
  for (const added of (tokenizerJson.added_tokens ?? []) as { id: number; content: string }[])
    tokens[added.id] = added.content
  const parts = JSON.stringify([
    tokenizerJson.decoder ?? null,
    tokenizerJson.pre_tokenizer ?? null,
    tokenizerJson.normalizer ?? null,
  ])
  const vocabType = parts.includes('"ByteLevel"')
    ? 'byte_level'
    : parts.includes('"ByteFallback"') || model.byte_fallback === true
      ? 'byte_fallback'
      : 'raw'
  const prependSpace =
    vocabType === 'byte_fallback' &&
    (parts.includes('"Prepend"') || /"prepend_scheme":"(always|first)"|"add_prefix_space":true/.test(parts))
  return padVocabulary({ tokens, vocabType, prependSpace, vocabSize, stopTokenIds }, vocabSize)
}

/** The vocabulary sized for a logit row of `vocabSize`: ids without a token (padding rows) get '' and are never allowed. */
export function padVocabulary(vocabulary: GrammarVocabulary, vocabSize: number): GrammarVocabulary {
  const size = Math.max(vocabSize, vocabulary.vocabSize, vocabulary.tokens.length)
  const tokens = Array.from({ length: size }, (_, id) => vocabulary.tokens[id] ?? '')
  return { ...vocabulary, tokens, vocabSize: size }
}
