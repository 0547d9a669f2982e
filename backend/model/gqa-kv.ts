import * as ort from 'onnxruntime-node'
import { type IoNames, layerName } from './genai-config.ts'
import type { KvArray, KvCache } from './kv-cache.ts'

/** What the in-place path needs to know about the graph (a subset of the runner's ModelShape). */
export interface InPlaceShape {
  layers: number
  kvHeads: number
  headDim: number
  kvFloat16: boolean
  hasPositionIds: boolean
}

/**
 * The KV path of GroupQueryAttention graphs (the onnxruntime-genai model builder's layout).
 *
 * Each layer's `past_key_values` input and `present` output are bound to the same typed array,
 * the cache's own buffer [rows, kv_heads, columns, head_dim]. GroupQueryAttention sees one
 * buffer (past_present_share_buffer) and writes each row's new key/value at column seqlens_k
 * in place: nothing is appended in JavaScript and the past is never re-fed from a copy.
 * GroupQueryAttention reads seqlens_k and total_sequence_length from the attention mask
 * (the graph computes them), so rows are right-padded: row r's mask is lengths[r] + new ones,
 * then zeros. On CUDA the same buffers are what onnxruntime copies to and from the device.
 *
 * onnxruntime-node 1.30 still returns a fresh copy of every fetched output, so each step pays
 * one memcpy of the bound cache on the way out (no allocation or copy on the way in).
 */
export class InPlaceKv {
  constructor(
    private readonly session: ort.InferenceSession,
    private readonly shape: InPlaceShape,
    private readonly io: IoNames,
    /** The input naming the rows the LM head runs on (logit-rows.ts); null: every position. */
    private readonly logitRows: string | null,
  ) {}

  /**
   * Runs `tokens` after what row `row` of `cache` already holds (nothing, for a prompt; the
   * earlier chunks, for a chunked prefill), alone, so its last position is its last token.
   * Returns the logits of `logitPositions` (positions within `tokens`), or of every position.
   */
  async extend(cache: KvCache, row: number, tokens: ArrayLike<number>, logitPositions: number[]): Promise<ort.Tensor> {
    const past = cache.lengths[row]
    const n = tokens.length
    cache.reserveColumns(Math.max(cache.maxLength(), past + n))
    const ids = BigInt64Array.from(Array.from(tokens, BigInt))
    const positions = BigInt64Array.from({ length: n }, (_, i) => BigInt(past + i))
    const out = await this.run(
      cache,
      ids,
      new BigInt64Array(past + n).fill(1n),
      positions,
      [1, n],
      (l) => cache.rowView(l, row),
      1,
      logitPositions,
    )
    cache.lengths[row] = past + n
    return out
  }

  /** One token for every cache row; returns logits for every row ([1, rows, vocab] gathered, else [rows, 1, vocab]). */
  async decode(cache: KvCache, tokens: ArrayLike<number>): Promise<ort.Tensor> {
    const n = cache.rows
    const total = cache.maxLength() + 1
    cache.reserveColumns(total)
    const ids = new BigInt64Array(n)
    const positions = new BigInt64Array(n)
    const mask = new BigInt64Array(n * total)
    for (let r = 0; r < n; r++) {
      ids[r] = BigInt(tokens[r])
      positions[r] = BigInt(cache.lengths[r])
      mask.fill(1n, r * total, r * total + cache.lengths[r] + 1)
    }
    const logits = await this.run(
      cache,
      ids,
      mask,
      positions,
      [n, 1],
      (l) => cache.pastView(l),
      n,
      Array.from({ length: n }, (_, r) => r),
    )
    for (let r = 0; r < n; r++) cache.lengths[r]++
    return logits
  }

  private async run(
    cache: KvCache,
    ids: BigInt64Array,
    mask: BigInt64Array,
    positions: BigInt64Array,
    dims: [number, number],
    buffers: (layer: number) => { key: KvArray; value: KvArray },
    batch: number,
    logitRows: number[],
  ): Promise<ort.Tensor> {
    const { io, shape } = this
    const feeds: Record<string, ort.Tensor> = {
      [io.inputIds]: new ort.Tensor('int64', ids, dims),
      [io.attentionMask]: new ort.Tensor('int64', mask, [batch, mask.length / batch]),
    }
    if (shape.hasPositionIds) feeds[io.positionIds] = new ort.Tensor('int64', positions, dims)
    if (this.logitRows)
      feeds[this.logitRows] = new ort.Tensor('int64', BigInt64Array.from(logitRows, BigInt), [logitRows.length])
    const fetches: Record<string, ort.Tensor | null> = { [io.logits]: null }
    const type = shape.kvFloat16 ? 'float16' : 'float32'
    const kvDims = [batch, shape.kvHeads, cache.columns, shape.headDim]
    for (let l = 0; l < shape.layers; l++) {
      const { key, value } = buffers(l)
      // The same array as input and preallocated output: GroupQueryAttention's shared-buffer mode.
      feeds[layerName(io.pastKey, l)] = new ort.Tensor(type, key, kvDims)
      feeds[layerName(io.pastValue, l)] = new ort.Tensor(type, value, kvDims)
      fetches[layerName(io.presentKey, l)] = new ort.Tensor(type, key, kvDims)
      fetches[layerName(io.presentValue, l)] = new ort.Tensor(type, value, kvDims)
    }
    const out = await this.session.run(feeds, fetches)
    return out[io.logits]
  }
}
