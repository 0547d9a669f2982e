import type { ParsedToolCall, ToolCallFormat } from './tool-formats.ts'

/**
 * Splits one streamed choice into content and tool calls. Text streams as content until the
 * format's trigger (e.g. `<tool_call>`) appears; a suffix that may be the start of the trigger
 * is held back meanwhile. From the trigger on, the text is kept and parsed into calls at the end.
 */
export class ToolCallStream {
  private readonly format: ToolCallFormat
  private held = ''
  private inCalls = false

  constructor(format: ToolCallFormat) {
    this.format = format
  }

  /** Content that can go out now. */
  push(text: string): string {
    this.held += text
    if (this.inCalls) return ''
    const start = this.held.indexOf(this.format.trigger)
    if (start !== -1) {
      this.inCalls = true
      const content = this.held.slice(0, start)
      this.held = this.held.slice(start)
      return content
    }
    const keep = partialSuffix(this.held, this.format.trigger)
    const content = this.held.slice(0, this.held.length - keep)
    this.held = this.held.slice(this.held.length - keep)
    return content
  }

  /** At the end of the choice: the remaining content and the calls. */
  finish(): { content: string; calls: ParsedToolCall[] } {
    const held = this.held
    this.held = ''
    if (!this.inCalls) return { content: held, calls: [] }
    const { content, calls } = this.format.parse(held)
    // Text that did not parse as calls (a call cut off by max_tokens) is delivered as content.
    return calls.length === 0 ? { content: held, calls } : { content: content ?? '', calls }
  }
}

/** Length of the longest suffix of `text` that is a proper prefix of `trigger`. */
function partialSuffix(text: string, trigger: string): number {
  for (let n = Math.min(text.length, trigger.length - 1); n > 0; n--) if (text.endsWith(trigger.slice(0, n))) return n
  return 0
}
