/**
 * Seeded PRNG (sfc32 seeded through splitmix32). Fast, 32-bit state words, and the
 * same seed gives the same stream in every process, which is what `seed` promises.
 */
export type Random = () => number

function splitmix32(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x9e3779b9) >>> 0
    let z = state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }
}

/** Returns a function that yields uniform floats in [0, 1). */
export function createRandom(seed: number): Random {
  // Mix the high bits in too: seeds are accepted up to 2^53.
  const mix = splitmix32((seed >>> 0) ^ Math.floor(seed / 2 ** 32))
  let a = mix()
  let b = mix()
  let c = mix()
  let d = mix()
  return () => {
    const t = (((a + b) >>> 0) + d) >>> 0
    d = (d + 1) >>> 0
    a = b ^ (b >>> 9)
    b = (c + (c << 3)) >>> 0
    c = ((c << 21) | (c >>> 11)) >>> 0
    c = (c + t) >>> 0
    return t / 4294967296
  }
}

/** A seed for requests that did not ask for one. */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32)
}
