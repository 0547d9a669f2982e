/**
 * Finds stop sequences in streamed text, across token boundaries. Text that could still
 * turn into a stop sequence is held back, so a stop sequence is never emitted, not even
 * in part.
 */
export class StopMatcher {
  private readonly stops: string[]
  private held = ''

  constructor(stops: string[]) {
    this.stops = stops.filter((s) => s.length > 0)
  }

  /** Adds generated text; returns the text that is safe to emit and whether a stop matched. */
  push(delta: string): { text: string; stopped: boolean } {
    if (this.stops.length === 0) return { text: delta, stopped: false }
    const buffer = this.held + delta
    let first = -1
    for (const stop of this.stops) {
      const at = buffer.indexOf(stop)
      if (at !== -1 && (first === -1 || at < first)) first = at
    }
    if (first !== -1) {
      this.held = ''
      return { text: buffer.slice(0, first), stopped: true }
    }
    const keep = this.partialMatchLength(buffer)
    this.held = buffer.slice(buffer.length - keep)
    return { text: buffer.slice(0, buffer.length - keep), stopped: false }
  }

  /** Releases held text once generation ended without a match. */
  flush(): string {
    const rest = this.held
    this.held = ''
    return rest
  }

  /** Length of the longest suffix of `text` that is a proper prefix of some stop sequence. */
  private partialMatchLength(text: string): number {
    let longest = 0
    for (const stop of this.stops) {
      for (let n = Math.min(stop.length - 1, text.length); n > longest; n--) {
        if (text.endsWith(stop.slice(0, n))) {
          longest = n
          break
        }
      }
    }
    return longest
  }
}
