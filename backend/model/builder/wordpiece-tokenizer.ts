// A synthetic BERT-style WordPiece tokenizer (Hugging Face tokenizer.json format), laid out like
// bert-base-uncased: [PAD] 0, [unused*], [UNK] 100, [CLS] 101, [SEP] 102, [MASK] 103, then single
// characters, their ##continuations, common words and lowercase filler words and ##pieces.
// Every lowercase ASCII word encodes (worst case one character per piece), so nothing maps to [UNK].

const SPECIAL = { pad: '[PAD]', unk: '[UNK]', cls: '[CLS]', sep: '[SEP]', mask: '[MASK]' } as const
export const MIN_WORDPIECE_VOCAB = 512

const LETTERS = 'etaoinshrdlcumwfgypbvkjxqz'
const CHARACTERS = [...LETTERS, ...'0123456789', ...'!"#$%&\'()*+,-./:;<=>?@[\\]^_`{|}~']

const COMMON_WORDS = (
  'the of and to a in is it you that he was for on are with as i his they be at one have this from or had by ' +
  'not word but what some we can out other were all there when up use your how said an each she which do their ' +
  'time if will way about many then them write would like so these her long make thing see him two has look more ' +
  'day could go come did number sound no most people my over know water than call first who may down side been ' +
  'now find good bad great terrible love hate movie film happy sad once upon little big friend play'
).split(' ')

const SUFFIXES = 'ing ed er ly tion es ent ion est ness ful ous s'.split(' ')

/** Exactly vocabSize tokens; ids are positions. */
export function buildWordPieceVocabulary(vocabSize: number): string[] {
  if (!Number.isInteger(vocabSize) || vocabSize < MIN_WORDPIECE_VOCAB)
    throw new Error(`vocab size must be an integer of at least ${MIN_WORDPIECE_VOCAB}`)
  const tokens: string[] = [SPECIAL.pad]
  for (let i = 1; i < 100; i++) tokens.push(`[unused${i - 1}]`)
  tokens.push(SPECIAL.unk, SPECIAL.cls, SPECIAL.sep, SPECIAL.mask)
  const seen = new Set(tokens)
  const add = (token: string) => {
    if (tokens.length < vocabSize && !seen.has(token)) {
      seen.add(token)
      tokens.push(token)
    }
  }
  for (const c of CHARACTERS) add(c)
  for (const c of CHARACTERS) add(`##${c}`)
  for (const word of COMMON_WORDS) add(word)
  for (const suffix of SUFFIXES) add(`##${suffix}`)
  // Filler: two-, three-, ... letter strings, as words and as ##pieces, until the vocabulary is full.
  let round = [...LETTERS]
  while (tokens.length < vocabSize) {
    round = round.flatMap((prefix) => [...LETTERS].map((letter) => prefix + letter))
    for (const piece of round) {
      add(piece)
      add(`##${piece}`)
      if (tokens.length >= vocabSize) break
    }
  }
  return tokens
}

export interface WordPieceFiles {
  tokenizer: object
  tokenizerConfig: object
  specialTokensMap: object
  vocabTxt: string
}

export function buildWordPieceTokenizerFiles(vocabSize: number, maxLength: number): WordPieceFiles {
  const tokens = buildWordPieceVocabulary(vocabSize)
  const vocab = Object.fromEntries(tokens.map((token, id) => [token, id]))
  const special = (content: string) => ({
    id: vocab[content],
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  })
  const sequence = (id: 'A' | 'B', typeId: number) => ({ Sequence: { id, type_id: typeId } })
  const token = (id: string, typeId: number) => ({ SpecialToken: { id, type_id: typeId } })
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [SPECIAL.pad, SPECIAL.unk, SPECIAL.cls, SPECIAL.sep, SPECIAL.mask].map(special),
    normalizer: {
      type: 'BertNormalizer',
      clean_text: true,
      handle_chinese_chars: true,
      strip_accents: null,
      lowercase: true,
    },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [token(SPECIAL.cls, 0), sequence('A', 0), token(SPECIAL.sep, 0)],
      pair: [token(SPECIAL.cls, 0), sequence('A', 0), token(SPECIAL.sep, 0), sequence('B', 1), token(SPECIAL.sep, 1)],
      special_tokens: Object.fromEntries(
        [SPECIAL.cls, SPECIAL.sep].map((t) => [t, { id: t, ids: [vocab[t]], tokens: [t] }]),
      ),
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: SPECIAL.unk,
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab,
    },
  }
  const tokenizerConfig = {
    tokenizer_class: 'BertTokenizer',
    do_lower_case: true,
    cls_token: SPECIAL.cls,
    sep_token: SPECIAL.sep,
    pad_token: SPECIAL.pad,
    unk_token: SPECIAL.unk,
    mask_token: SPECIAL.mask,
    model_max_length: maxLength,
    clean_up_tokenization_spaces: true,
    strip_accents: null,
    tokenize_chinese_chars: true,
  }
  const specialTokensMap = {
    cls_token: SPECIAL.cls,
    sep_token: SPECIAL.sep,
    pad_token: SPECIAL.pad,
    unk_token: SPECIAL.unk,
    mask_token: SPECIAL.mask,
  }
  return { tokenizer, tokenizerConfig, specialTokensMap, vocabTxt: `${tokens.join('\n')}\n` }
}
