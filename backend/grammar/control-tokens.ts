import type { GrammarVocabulary } from './vocabulary.ts'

/**
 * Tokens that would put a raw control character (other than \n and \r) into the output, as a
 * bitmask in xgrammar's layout. xgrammar 0.1.27's JSON strings exclude only `"`, `\`, \n and
 * \r, so a model could write a raw \u0002 into a string, which is not JSON; JSON-based grammars
 * clear these tokens from every mask.
 */
export function controlTokenMask(vocabulary: GrammarVocabulary): Int32Array {
  const mask = new Int32Array(Math.ceil(vocabulary.tokens.length / 32))
  const isControl = (byte: number) => byte < 0x20 && byte !== 0x0a && byte !== 0x0d
  vocabulary.tokens.forEach((token, id) => {
    if (token === '') return
    let control = false
    if (vocabulary.vocabType === 'byte_fallback') {
      const match = /^<0x([0-9A-Fa-f]{2})>$/.exec(token)
      control = match ? isControl(parseInt(match[1], 16)) : hasControl(token, (c) => c)
    } else if (vocabulary.vocabType === 'byte_level') {
      // GPT-2's byte-to-unicode map writes bytes 0x00-0x20 as U+0100-U+0120.
      control = hasControl(token, (c) => (c >= 0x100 && c <= 0x120 ? c - 0x100 : 0x20))
    } else control = hasControl(token, (c) => c)
    if (control) mask[id >> 5] |= 1 << (id & 31)
  })
  return mask
  function hasControl(token: string, byteOf: (code: number) => number): boolean {
    for (let i = 0; i < token.length; i++) if (isControl(byteOf(token.charCodeAt(i)))) return true
    return false
  }
}
