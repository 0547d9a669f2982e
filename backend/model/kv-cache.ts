/** Element storage of a KV tensor: float32, or float16 kept as raw 16-bit words. */
export type KvArray = Float32Array | Uint16Array

/**
 * The KV cache of every running sequence, kept in JavaScript buffers that are handed to
 * onnxruntime as the `past_key_values` inputs without copying.
 *
 * Per layer, keys and values are one buffer laid out [rowCapacity, heads, columns, headDim].
 * Row r belongs to one sequence, whose tokens occupy columns 0..length-1; the rest of the row
 * is masked out with attention_mask = 0. Rows 0..rows-1 are always in use, so the first `rows`
 * rows form a contiguous [rows, heads, columns, headDim] tensor. A decode step therefore
 * moves only the one new column per row out of the model; whole-cache copies happen only
 * when the buffer grows (amortized over `growColumns` steps).
 */
export class KvCache {
  readonly layers: number
  readonly heads: number
  readonly headDim: number
  readonly float16: boolean
  /** keys[layer], values[layer] */
  keys: KvArray[] = []
  values: KvArray[] = []
  /** Token count of each row. */
  lengths = new Int32Array(0)
  rows = 0
  rowCapacity = 0
  columns = 0
  private readonly growColumns: number

  constructor(options: { layers: number; heads: number; headDim: number; float16?: boolean; growColumns?: number }) {
    this.layers = options.layers
    this.heads = options.heads
    this.headDim = options.headDim
    this.float16 = options.float16 ?? false
    this.growColumns = options.growColumns ?? 64
    this.resize(0, 0)
  }

  /** Floats in one row of one layer's buffer. */
  get rowSize(): number {
    return this.heads * this.columns * this.headDim
  }

  /** Adds an empty row and returns its index. */
  addRow(): number {
    if (this.rows === this.rowCapacity) this.resize(Math.max(4, this.rowCapacity * 2), this.columns)
    this.lengths[this.rows] = 0
    return this.rows++
  }

  /** Frees `row` by moving the last row into it; returns the index the last row moved from (or -1). */
  removeRow(row: number): number {
    const last = this.rows - 1
    if (row !== last) {
      const size = this.rowSize
      for (let l = 0; l < this.layers; l++) {
        this.keys[l].copyWithin(row * size, last * size, (last + 1) * size)
        this.values[l].copyWithin(row * size, last * size, (last + 1) * size)
      }
      this.lengths[row] = this.lengths[last]
    }
    this.rows = last
    if (this.rows === 0) this.resize(0, 0)
    return row !== last ? last : -1
  }

  /** Makes room for `needed` columns in every row; shrinks when long rows have left. */
  reserveColumns(needed: number): void {
    if (needed > this.columns) this.resize(this.rowCapacity, roundUp(needed, this.growColumns))
    else if (this.columns - needed > 2 * this.growColumns)
      this.resize(this.rowCapacity, roundUp(needed, this.growColumns))
  }

  /** Longest row, in tokens. */
  maxLength(): number {
    let max = 0
    for (let r = 0; r < this.rows; r++) if (this.lengths[r] > max) max = this.lengths[r]
    return max
  }

  /**
   * Writes `count` columns from a [batch, heads, srcColumns, headDim] tensor (row `srcRow`,
   * starting at column `srcColumn`) to the end of cache row `row`, for one layer.
   */
  append(
    layer: number,
    row: number,
    key: KvArray,
    value: KvArray,
    srcRow: number,
    srcColumns: number,
    srcColumn: number,
    count: number,
  ): void {
    const d = this.headDim
    const at = this.lengths[row]
    const dstBase = row * this.rowSize
    const srcBase = srcRow * this.heads * srcColumns * d
    const keys = this.keys[layer]
    const values = this.values[layer]
    const n = count * d
    for (let h = 0; h < this.heads; h++) {
      const src = srcBase + (h * srcColumns + srcColumn) * d
      const dst = dstBase + (h * this.columns + at) * d
      if (n <= 128) {
        // A decode step copies one short column per head: a plain loop beats subarray + set.
        for (let i = 0; i < n; i++) {
          keys[dst + i] = key[src + i]
          values[dst + i] = value[src + i]
        }
      } else {
        keys.set(key.subarray(src, src + n), dst)
        values.set(value.subarray(src, src + n), dst)
      }
    }
  }

  /** Views of rows 0..rows-1 shaped [rows, heads, columns, headDim], for the model's past inputs. */
  pastView(layer: number): { key: KvArray; value: KvArray } {
    const n = this.rows * this.rowSize
    return { key: this.keys[layer].subarray(0, n), value: this.values[layer].subarray(0, n) }
  }

  /** Row `row` of one layer as a [1, heads, columns, headDim] view (the in-place GQA path prefills rows alone). */
  rowView(layer: number, row: number): { key: KvArray; value: KvArray } {
    const size = this.rowSize
    return {
      key: this.keys[layer].subarray(row * size, (row + 1) * size),
      value: this.values[layer].subarray(row * size, (row + 1) * size),
    }
  }

  private resize(rowCapacity: number, columns: number): void {
    const Ctor = this.float16 ? Uint16Array : Float32Array
    const size = rowCapacity * this.heads * columns * this.headDim
    const copyColumns = Math.min(columns, this.columns)
    const oldColumns = this.columns
    for (let l = 0; l < this.layers; l++) {
      const key = new Ctor(size)
      const value = new Ctor(size)
      if (this.keys[l] && copyColumns > 0) {
        for (let r = 0; r < this.rows; r++) {
          for (let h = 0; h < this.heads; h++) {
            const src = (r * this.heads + h) * oldColumns * this.headDim
            const dst = (r * this.heads + h) * columns * this.headDim
            const n = copyColumns * this.headDim
            key.set(this.keys[l].subarray(src, src + n), dst)
            value.set(this.values[l].subarray(src, src + n), dst)
          }
        }
      }
      this.keys[l] = key
      this.values[l] = value
    }
    const lengths = new Int32Array(rowCapacity)
    lengths.set(this.lengths.subarray(0, Math.min(this.rows, rowCapacity)))
    this.lengths = lengths
    this.rowCapacity = rowCapacity
    this.columns = columns
  }
}

function roundUp(n: number, step: number): number {
  return Math.ceil(n / step) * step
}
