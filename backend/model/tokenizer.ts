import { Tokenizer } from '@huggingface/tokenizers'
import { type ChatMessage, type ChatRenderOptions, ChatTemplate } from './chat-template.ts'

export { type ChatMessage, ChatTemplateError } from './chat-template.ts'
export { IncrementalDecoder } from './incremental-decoder.ts'

/**
 * A model's tokenizer.json and chat template. Models without a `chat_template` get a plain
 * "role: content" transcript ending in "assistant:" (documented in docs/api.md).
 */
export class TextTokenizer {
  private readonly tokenizer: Tokenizer
  private readonly template: ChatTemplate | null
  private readonly anchor: number
  private readonly anchorText: string

  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>) {
    this.tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig)
    this.template = ChatTemplate.fromTokenizerConfig(tokenizerConfig)
    const anchorIds = this.encode('a', false)
    this.anchor = anchorIds[anchorIds.length - 1] ?? 0
    this.anchorText = this.rawDecode([this.anchor], false)
  }

  /** The chat templates' source ('' without one), for features read from it (tool-call formats). */
  get templateSource(): string {
    return this.template?.source ?? ''
  }

  get hasChatTemplate(): boolean {
    return this.template !== null
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids.map(Number)
  }

  /** Text of ids, special tokens skipped; ids with no token (padding rows of the vocabulary) read as ''. */
  decode(ids: number[]): string {
    return this.rawDecode(ids, true)
  }

  /**
   * A token's text as it reads inside a sequence (for logprobs). Decoding it alone would lose
   * what decoders strip at the start of a text, such as SentencePiece's leading space, so it is
   * decoded after an anchor token and the anchor's own text is cut off.
   */
  tokenText(id: number): string {
    return this.rawDecode([this.anchor, id], false).slice(this.anchorText.length)
  }

  /**
   * Renders a chat with the model's template and tokenizes it without adding special tokens,
   * as transformers' `apply_chat_template(tokenize=True)` does: the template writes BOS itself
   * when the model wants one, so it is never doubled.
   */
  encodeChat(messages: ChatMessage[], options: ChatRenderOptions = {}): number[] {
    if (!this.template) {
      const transcript = `${messages.map((m) => `${m.role}: ${m.content}\n`).join('')}assistant:`
      return this.encode(transcript)
    }
    return this.encode(this.renderChat(messages, options), false)
  }

  /** The chat prompt as text (`apply_chat_template(tokenize=False)`); throws ChatTemplateError. */
  renderChat(messages: ChatMessage[], options: ChatRenderOptions = {}): string {
    if (!this.template) throw new Error('this model has no chat template')
    return this.template.render(messages, options)
  }

  /**
   * Decodes without clean_up_tokenization_spaces (a BERT-era rewrite such as " ," → "," that
   * some configs, Llama 3's among them, switch on): it edits text across token boundaries, so
   * streamed deltas could not add up to it. vLLM's detokenizer leaves it off too.
   */
  private rawDecode(ids: number[], skipSpecialTokens: boolean): string {
    // A model's embedding may be padded past the tokenizer's vocabulary (Qwen: 151,936 rows).
    const hasToken = (id: number) => this.tokenizer.id_to_token(id) !== undefined
    const known = ids.every(hasToken) ? ids : ids.filter(hasToken)
    if (known.length === 0) return ''
    return this.tokenizer.decode(known, { skip_special_tokens: skipSpecialTokens, clean_up_tokenization_spaces: false })
  }
}
