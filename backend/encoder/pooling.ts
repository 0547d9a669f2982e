import type { Pooling } from './folder.ts'

/**
 * Pools one row of token embeddings [seq, dim] (row-major, right-padded) over its first `length`
 * tokens, the real ones: mean, CLS (first token), last token, or elementwise max.
 */
export function poolRow(
  hidden: Float32Array,
  offset: number,
  length: number,
  dim: number,
  mode: Pooling,
): Float32Array {
  if (mode === 'cls') return hidden.slice(offset, offset + dim)
  if (mode === 'lasttoken') return hidden.slice(offset + (length - 1) * dim, offset + length * dim)
  const out = new Float32Array(dim)
  if (mode === 'max') out.fill(-Infinity)
  for (let t = 0; t < length; t++) {
    const base = offset + t * dim
    if (mode === 'max') for (let d = 0; d < dim; d++) out[d] = Math.max(out[d], hidden[base + d])
    else for (let d = 0; d < dim; d++) out[d] += hidden[base + d]
  }
  if (mode === 'mean') for (let d = 0; d < dim; d++) out[d] /= length
  return out
}

/** Scales to unit L2 norm in place (a zero vector stays zero); returns the vector. */
export function normalizeL2(vector: Float32Array): Float32Array {
  let sum = 0
  for (let i = 0; i < vector.length; i++) sum += vector[i] * vector[i]
  const norm = Math.sqrt(sum)
  if (norm > 0) for (let i = 0; i < vector.length; i++) vector[i] /= norm
  return vector
}

/** Softmax of logits, computed stably (max subtracted). */
export function softmax(logits: Float32Array): Float32Array {
  let max = -Infinity
  for (const v of logits) max = Math.max(max, v)
  const out = new Float32Array(logits.length)
  let sum = 0
  for (let i = 0; i < logits.length; i++) sum += out[i] = Math.exp(logits[i] - max)
  for (let i = 0; i < out.length; i++) out[i] /= sum
  return out
}
