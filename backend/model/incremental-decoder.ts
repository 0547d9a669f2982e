/** What the incremental decoder needs of a tokenizer: a full decode of a list of ids. */
export interface TokenDecoder {
  decode(ids: number[]): string
}

/** Prompt tokens kept as context, so the first generated token decodes as it would in place. */
const PROMPT_CONTEXT = 5

/**
 * Turns a growing list of token ids into text deltas whose concatenation is exactly the full
 * decode. Each step decodes a short window starting a few tokens back, so decoders that strip
 * a leading space (SentencePiece) or join byte pieces into one character (byte-level BPE,
 * byte fallback) give the text they give in place. Text ending in U+FFFD (an unfinished UTF-8
 * character) is held back until the character completes, so a split emoji or CJK character
 * never reaches a stream as U+FFFD; only `flush` at the end releases an unfinished one.
 * Cost per token: at most two decodes of a few tokens, whatever the vocabulary size.
 */
export class IncrementalDecoder {
  private readonly tokenizer: TokenDecoder
  private readonly tokens: number[]
  private prefixOffset = 0
  private readOffset: number
  /** Decode of tokens[prefixOffset, readOffset): what the window's text starts with. */
  private prefixText: string

  constructor(tokenizer: TokenDecoder, promptIds: number[]) {
    this.tokenizer = tokenizer
    this.tokens = promptIds.slice(-PROMPT_CONTEXT)
    this.readOffset = this.tokens.length
    this.prefixText = tokenizer.decode(this.tokens)
  }

  /** Adds a token; returns the text it completes ('' while a character is unfinished). */
  push(token: number): string {
    this.tokens.push(token)
    return this.advance(false)
  }

  /** Text still held back at the end of generation (an unfinished character, as decoded). */
  flush(): string {
    return this.advance(true)
  }

  private advance(final: boolean): string {
    const text = this.tokenizer.decode(this.tokens.slice(this.prefixOffset))
    if (text.length <= this.prefixText.length || (!final && text.endsWith('\uFFFD'))) return ''
    const delta = text.slice(this.prefixText.length)
    this.prefixOffset = this.readOffset
    this.readOffset = this.tokens.length
    this.prefixText = this.tokenizer.decode(this.tokens.slice(this.prefixOffset, this.readOffset))
    // Only the window is needed from here on.
    if (this.prefixOffset > 64) {
      this.tokens.splice(0, this.prefixOffset)
      this.readOffset -= this.prefixOffset
      this.prefixOffset = 0
    }
    return delta
  }
}
