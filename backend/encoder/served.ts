import { TextTokenizer } from '../model/tokenizer.ts'
import type { EncoderEngine } from './encoder-engine.ts'
import type { EncoderFolder } from './folder.ts'

/** A loaded encoder model as the API layer sees it. */
export interface ServedEncoder {
  id: string
  folder: EncoderFolder
  tokenizer: EncoderTokenizer
  engine: EncoderEngine
  created: number
}

/** Too many tokens for the model, and no truncation asked for. */
export class InputTooLongError extends Error {
  constructor(
    readonly tokens: number,
    readonly maxLength: number,
  ) {
    super(
      `This model's maximum input length is ${maxLength} tokens; an input has ${tokens} tokens. Shorten it, or set truncate_prompt_tokens to truncate it.`,
    )
  }
}

/**
 * The encoder's tokenizer with the special tokens its post-processor adds around a text
 * ([CLS] … [SEP], <s> … </s>), so truncation can cut the text and keep them.
 */
export class EncoderTokenizer {
  private readonly text: TextTokenizer
  private readonly prefix: number[]
  private readonly suffix: number[]

  constructor(folder: Pick<EncoderFolder, 'tokenizerJson' | 'tokenizerConfig'>) {
    this.text = new TextTokenizer(folder.tokenizerJson, folder.tokenizerConfig)
    const bare = this.text.encode('a', false)
    const full = this.text.encode('a', true)
    const at = full.findIndex((_, i) => bare.every((id, j) => full[i + j] === id))
    this.prefix = at < 0 ? [] : full.slice(0, at)
    this.suffix = at < 0 ? [] : full.slice(at + bare.length)
  }

  /**
   * Token ids of a text with the model's special tokens. Over `maxLength`: an error, or, with
   * `truncateTo` (-1: to maxLength), the text's first tokens up to that length, special tokens kept.
   */
  encode(text: string, maxLength: number, truncateTo?: number | null): number[] {
    const ids = this.text.encode(text, true)
    const limit = truncateTo == null ? null : truncateTo === -1 ? maxLength : truncateTo
    if (limit !== null && ids.length > limit) {
      const keep = Math.max(0, limit - this.prefix.length - this.suffix.length)
      const body = this.text.encode(text, false).slice(0, keep)
      return [...this.prefix, ...body, ...this.suffix].slice(0, limit)
    }
    if (ids.length > maxLength) throw new InputTooLongError(ids.length, maxLength)
    return ids
  }
}
