/**
 * Keeps byte-fallback tokens (`<0xE2>`, ...) to valid UTF-8. xgrammar 0.1.27 lets a UTF-8 lead
 * byte be followed by any bytes (a random-weight model then wrote `<0xF0> a <0x10>` inside a
 * JSON string, which decodes to U+FFFD and a raw control character). While a multi-byte
 * character is open only the continuation bytes UTF-8 allows there are allowed (RFC 3629's
 * table: after E0 only A0-BF, and so on), and a continuation byte or an invalid lead byte
 * never starts one.
 */
export class Utf8ByteGuard {
  /** Token id → its byte, or -1 for tokens that are not byte-fallback tokens. */
  private readonly byteOf: Int16Array
  /** Bitmasks (xgrammar layout) of the continuation-byte tokens and of the tokens that never start a character. */
  private readonly continuation: Int32Array
  private readonly neverFirst: Int32Array
  /** Byte value → the ids of its tokens. */
  private readonly idsOfByte: number[][] = Array.from({ length: 256 }, () => [])

  private constructor(byteOf: Int16Array, words: number) {
    this.byteOf = byteOf
    this.continuation = new Int32Array(words)
    this.neverFirst = new Int32Array(words)
    byteOf.forEach((byte, id) => {
      if (byte >= 0) this.idsOfByte[byte].push(id)
      if (byte >= 0x80 && byte <= 0xbf) this.continuation[id >> 5] |= 1 << (id & 31)
      if ((byte >= 0x80 && byte <= 0xc1) || byte >= 0xf5) this.neverFirst[id >> 5] |= 1 << (id & 31)
    })
  }

  /** A guard for a vocabulary with byte-fallback tokens, else undefined. */
  static of(tokens: string[]): Utf8ByteGuard | undefined {
    const byteOf = new Int16Array(tokens.length).fill(-1)
    let found = false
    tokens.forEach((token, id) => {
      const match = /^<0x([0-9A-Fa-f]{2})>$/.exec(token)
      if (match) {
        byteOf[id] = parseInt(match[1], 16)
        found = true
      }
    })
    return found ? new Utf8ByteGuard(byteOf, Math.ceil(tokens.length / 32)) : undefined
  }

  /** A sequence's state: how many continuation bytes the open character still needs. */
  static start(): Utf8State {
    return { pending: 0, low: 0x80, high: 0xbf }
  }

  /** Narrows `mask` (in place) to what keeps the text valid UTF-8 in this state. */
  restrict(mask: Int32Array, state: Utf8State): void {
    const n = Math.min(mask.length, this.continuation.length)
    if (state.pending === 0) {
      for (let w = 0; w < n; w++) mask[w] &= ~this.neverFirst[w]
      return
    }
    for (let w = 0; w < n; w++) mask[w] &= this.continuation[w]
    for (let byte = 0x80; byte <= 0xbf; byte++) {
      if (byte >= state.low && byte <= state.high) continue
      for (const id of this.idsOfByte[byte]) mask[id >> 5] &= ~(1 << (id & 31))
    }
  }

  advance(token: number, state: Utf8State): void {
    const byte = token < this.byteOf.length ? this.byteOf[token] : -1
    state.low = 0x80
    state.high = 0xbf
    if (byte < 0) state.pending = 0
    else if (state.pending > 0) state.pending--
    else {
      state.pending = byte >= 0xf0 ? 3 : byte >= 0xe0 ? 2 : byte >= 0xc0 ? 1 : 0
      // The second byte's narrower ranges (no overlong forms, surrogates, or code points past U+10FFFF).
      if (byte === 0xe0) state.low = 0xa0
      else if (byte === 0xed) state.high = 0x9f
      else if (byte === 0xf0) state.low = 0x90
      else if (byte === 0xf4) state.high = 0x8f
    }
  }
}

export interface Utf8State {
  /** Continuation bytes the open character still needs. */
  pending: number
  /** Range of the next continuation byte. */
  low: number
  high: number
}
