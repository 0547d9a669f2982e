/**
 * Sets the logits of tokens a bitmask does not allow to -Infinity (bit `t & 31` of word
 * `t >> 5`, xgrammar's layout; ids past the mask are not allowed). Returns the number allowed.
 */
export function maskLogits(logits: Float32Array, mask: Int32Array): number {
  let allowed = 0
  for (let word = 0; word * 32 < logits.length; word++) {
    const bits = word < mask.length ? mask[word] : 0
    const end = Math.min(32, logits.length - word * 32)
    // Whole words: the common cases (nothing allowed, everything allowed) skip the bit loop.
    if (bits === 0) {
      logits.fill(-Infinity, word * 32, word * 32 + end)
      continue
    }
    for (let bit = 0; bit < end; bit++) {
      if ((bits >>> bit) & 1) allowed++
      else logits[word * 32 + bit] = -Infinity
    }
  }
  return allowed
}
