import { Template } from '@huggingface/jinja'
import { Tokenizer } from '@huggingface/tokenizers'

export interface ChatMessage {
  role: string
  content: string | null
  /** An assistant's tool calls; `arguments` as an object, the form chat templates render. */
  tool_calls?: { id?: string; type: 'function'; function: { name: string; arguments: unknown } }[]
  /** A `tool` message's answer to this call. */
  tool_call_id?: string
  name?: string
}

/**
 * A model's tokenizer.json and chat template. Models without a `chat_template` get a plain
 * "role: content" transcript ending in "assistant:" (documented in the README).
 */
export class TextTokenizer {
  private readonly tokenizer: Tokenizer
  private readonly template: Template | null
  /** The chat template's source ('' without one), for features read from it (tool-call formats). */
  readonly templateSource: string
  private readonly specialTokens: Record<string, string>
  private readonly anchor: number
  private readonly anchorText: string

  constructor(tokenizerJson: Record<string, unknown>, tokenizerConfig: Record<string, unknown>) {
    this.tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig)
    const template = tokenizerConfig.chat_template
    // A list of named templates is allowed by transformers; the one named "default" serves chat.
    const source = Array.isArray(template) ? template.find((t: { name?: string }) => t.name === 'default')?.template : template
    this.template = typeof source === 'string' ? new Template(source) : null
    this.templateSource = typeof source === 'string' ? source : ''
    const tokenText = (v: unknown) => (typeof v === 'string' ? v : typeof (v as { content?: unknown })?.content === 'string' ? (v as { content: string }).content : '')
    this.specialTokens = {
      bos_token: tokenText(tokenizerConfig.bos_token),
      eos_token: tokenText(tokenizerConfig.eos_token),
      unk_token: tokenText(tokenizerConfig.unk_token),
      pad_token: tokenText(tokenizerConfig.pad_token),
    }
    const anchorIds = this.encode('a', false)
    this.anchor = anchorIds[anchorIds.length - 1] ?? 0
    this.anchorText = this.tokenizer.decode([this.anchor], { skip_special_tokens: false })
  }

  get hasChatTemplate(): boolean {
    return this.template !== null
  }

  encode(text: string, addSpecialTokens = true): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: addSpecialTokens }).ids.map(Number)
  }

  decode(ids: number[]): string {
    return this.tokenizer.decode(ids, { skip_special_tokens: true })
  }

  /**
   * A token's text as it reads inside a sequence (for logprobs). Decoding it alone would lose
   * what decoders strip at the start of a text, such as SentencePiece's leading space, so it is
   * decoded after an anchor token and the anchor's own text is cut off.
   */
  tokenText(id: number): string {
    const anchored = this.tokenizer.decode([this.anchor, id], { skip_special_tokens: false })
    return anchored.slice(this.anchorText.length)
  }

  /** Renders and tokenizes a chat; the template writes its own special tokens (and renders `tools`). */
  encodeChat(messages: ChatMessage[], options: { tools?: unknown[]; addGenerationPrompt?: boolean } = {}): number[] {
    const addGenerationPrompt = options.addGenerationPrompt ?? true
    if (!this.template) {
      const transcript = messages.map((m) => `${m.role}: ${m.content ?? ''}\n`).join('') + (addGenerationPrompt ? 'assistant:' : '')
      return this.encode(transcript)
    }
    const tools = options.tools && options.tools.length > 0 ? { tools: options.tools } : {}
    // Templates test and concatenate content; an assistant turn that only calls tools has none.
    const rendered = messages.map((m) => (m.content === null ? { ...m, content: '' } : m))
    const text = this.template.render({ messages: rendered, add_generation_prompt: addGenerationPrompt, ...tools, ...this.specialTokens })
    return this.encode(text, false)
  }
}

/**
 * Turns a growing list of token ids into text deltas. Each step decodes a short window that
 * starts a few tokens back, so tokenizers that strip a leading space or merge byte-fallback
 * pieces into one character still produce exactly the text of a full decode.
 */
export class IncrementalDecoder {
  private readonly tokenizer: TextTokenizer
  private readonly tokens: number[]
  private prefixOffset = 0
  private readOffset: number

  constructor(tokenizer: TextTokenizer, promptIds: number[]) {
    this.tokenizer = tokenizer
    // Context from the prompt's tail, so the first generated token decodes as it would in place.
    this.tokens = promptIds.slice(-5)
    this.readOffset = this.tokens.length
  }

  /** Adds a token; returns the text it completes ('' while a multi-byte character is unfinished). */
  push(token: number): string {
    this.tokens.push(token)
    return this.advance(false)
  }

  /** Text still held back at the end of generation (an unfinished character, as decoded). */
  flush(): string {
    return this.advance(true)
  }

  private advance(final: boolean): string {
    const before = this.tokenizer.decode(this.tokens.slice(this.prefixOffset, this.readOffset))
    const after = this.tokenizer.decode(this.tokens.slice(this.prefixOffset))
    if (after.length <= before.length || (!final && after.endsWith('\uFFFD'))) return ''
    this.prefixOffset = this.readOffset
    this.readOffset = this.tokens.length
    return after.slice(before.length)
  }
}
