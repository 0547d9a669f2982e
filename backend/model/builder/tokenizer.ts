// A synthetic Llama-style SentencePiece-BPE tokenizer (Hugging Face tokenizer.json format):
// <unk> <s> </s>, 256 byte-fallback tokens, printable ASCII, then merged filler tokens.
// Every merged token is reachable through merges of earlier tokens, so encode/decode round-trips.

const SPACE = '\u2581' // ▁, SentencePiece's word-boundary marker

const SPECIAL_TOKENS = ['<unk>', '<s>', '</s>']

/** English letter frequencies (percent), used to order filler tokens from plausible to odd. */
const LETTER_FREQUENCY: Record<string, number> = {
  e: 12.7,
  t: 9.1,
  a: 8.2,
  o: 7.5,
  i: 7.0,
  n: 6.7,
  s: 6.3,
  h: 6.1,
  r: 6.0,
  d: 4.3,
  l: 4.0,
  c: 2.8,
  u: 2.8,
  m: 2.4,
  w: 2.4,
  f: 2.2,
  g: 2.0,
  y: 2.0,
  p: 1.9,
  b: 1.5,
  v: 1.0,
  k: 0.8,
  j: 0.15,
  x: 0.15,
  q: 0.1,
  z: 0.07,
  [SPACE]: 18,
}
const LOWERCASE = Object.keys(LETTER_FREQUENCY).filter((c) => c !== SPACE)

const COMMON_BIGRAMS =
  'th he in er an re on at en nd ti es or te of ed is it al ar st to nt ng se ha as ou io le ve co me de hi ri ro ic ne ea ra ce'.split(
    ' ',
  )

const COMMON_WORDS = (
  'the of and to a in is it you that he was for on are with as I his they be at one have this from or had by ' +
  'not word but what some we can out other were all there when up use your how said an each she which do their ' +
  'time if will way about many then them write would like so these her long make thing see him two has look more ' +
  'day could go come did number sound no most people my over know water than call first who may down side been ' +
  'now find The It He She They We You This In A Once upon little big happy friend play'
).split(' ')

const COMMON_SUFFIXES = 'ing ed er ly tion es ent ion est ness ful ous'.split(' ')

export const CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"

export interface TokenizerFiles {
  tokenizer: object
  tokenizerConfig: object
  specialTokensMap: object
}

type Merge = [string, string]

/** Builds a vocabulary of exactly vocabSize tokens plus the merges that produce the merged ones. */
export function buildVocabulary(vocabSize: number): { tokens: string[]; merges: Merge[] } {
  const base = [...SPECIAL_TOKENS]
  for (let byte = 0; byte < 256; byte++) base.push(`<0x${byte.toString(16).toUpperCase().padStart(2, '0')}>`)
  // Space never reaches the model (the normalizer turns it into ▁), so ▁ takes its place.
  base.push(SPACE)
  for (let code = 0x21; code <= 0x7e; code++) base.push(String.fromCharCode(code))
  if (base.length > vocabSize) throw new Error(`vocab size must be at least ${base.length}`)

  const vocabulary = new MergeVocabulary(base, vocabSize)
  for (const letter of sortByScore(LOWERCASE)) vocabulary.addWord(SPACE + letter)
  for (const bigram of COMMON_BIGRAMS) vocabulary.addWord(bigram)
  for (const word of COMMON_WORDS) vocabulary.addWord(SPACE + word)
  for (const suffix of COMMON_SUFFIXES) vocabulary.addWord(suffix)
  for (let code = 0x41; code <= 0x5a; code++) vocabulary.addWord(SPACE + String.fromCharCode(code))

  // Filler: every lowercase (optionally ▁-prefixed) string one letter longer per round, likeliest first.
  let round = [SPACE, ...LOWERCASE]
  while (!vocabulary.full) {
    round = sortByScore(round.flatMap((prefix) => LOWERCASE.map((letter) => prefix + letter)))
    for (const candidate of round) vocabulary.addWord(candidate)
  }
  return { tokens: vocabulary.tokens, merges: vocabulary.merges }
}

/** Grows a BPE vocabulary so that each added word encodes to exactly one token. */
class MergeVocabulary {
  readonly tokens: string[]
  readonly merges: Merge[] = []
  private readonly known: Set<string>
  private readonly ranks = new Map<string, number>()

  constructor(
    base: string[],
    private readonly size: number,
  ) {
    this.tokens = [...base]
    this.known = new Set(base)
  }

  get full(): boolean {
    return this.tokens.length >= this.size
  }

  /**
   * Encodes the word with the merges so far, then joins the pieces left to right with new merges.
   * New merges rank after all existing ones, so earlier words keep encoding the same way.
   */
  addWord(word: string): void {
    const [first, ...rest] = this.encode(word)
    let joined = first
    for (const piece of rest) {
      if (!this.addMerge(joined, piece)) return
      joined += piece
    }
  }

  private addMerge(left: string, right: string): boolean {
    const token = left + right
    if (!this.known.has(token)) {
      if (this.full) return false
      this.known.add(token)
      this.tokens.push(token)
    }
    const key = `${left} ${right}`
    if (!this.ranks.has(key)) {
      this.ranks.set(key, this.merges.length)
      this.merges.push([left, right])
    }
    return true
  }

  /** Plain BPE: repeatedly apply the lowest-ranked merge among adjacent pieces. */
  private encode(word: string): string[] {
    const pieces = [...word]
    for (;;) {
      let best = -1
      let bestRank = Infinity
      for (let i = 0; i + 1 < pieces.length; i++) {
        const rank = this.ranks.get(`${pieces[i]} ${pieces[i + 1]}`)
        if (rank !== undefined && rank < bestRank) [best, bestRank] = [i, rank]
      }
      if (best < 0) return pieces
      pieces.splice(best, 2, pieces[best] + pieces[best + 1])
    }
  }
}

/** Likeliest first by product of letter frequencies; ties alphabetical so the order is stable. */
function sortByScore(texts: string[]): string[] {
  const scored = texts.map((text) => {
    let score = 1
    for (const char of text) score *= LETTER_FREQUENCY[char]
    return { text, score }
  })
  scored.sort((a, b) => b.score - a.score || (a.text < b.text ? -1 : a.text > b.text ? 1 : 0))
  return scored.map(({ text }) => text)
}

export function buildTokenizerFiles(vocabSize: number, contextLength: number): TokenizerFiles {
  const { tokens, merges } = buildVocabulary(vocabSize)
  const vocab = Object.fromEntries(tokens.map((token, id) => [token, id]))
  const special = (content: string, id: number) => ({
    id,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  })

  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map(special),
    normalizer: {
      type: 'Sequence',
      normalizers: [
        { type: 'Prepend', prepend: SPACE },
        { type: 'Replace', pattern: { String: ' ' }, content: SPACE },
      ],
    },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: SPACE }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges,
    },
  }

  const tokenizerConfig = {
    add_bos_token: true,
    add_eos_token: false,
    bos_token: '<s>',
    eos_token: '</s>',
    unk_token: '<unk>',
    pad_token: null,
    legacy: true,
    model_max_length: contextLength,
    clean_up_tokenization_spaces: false,
    tokenizer_class: 'LlamaTokenizer',
    sp_model_kwargs: {},
    spaces_between_special_tokens: false,
    chat_template: CHAT_TEMPLATE,
  }

  const specialTokensMap = { bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>' }
  return { tokenizer, tokenizerConfig, specialTokensMap }
}
