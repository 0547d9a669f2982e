import * as ort from 'onnxruntime-node'
import { type IoNames, layerName, OPTIMUM_IO_NAMES } from './genai-config.ts'
import { InPlaceKv } from './gqa-kv.ts'
import { type KvArray, KvCache } from './kv-cache.ts'
import { LOGIT_ROWS_INPUT } from './logit-rows.ts'
import { createSession, type ExecutionOptions, type LoadedSession } from './session.ts'

/**
 * How KV rows move each step: `new-rows` fetches only the step's new rows (Concat graphs,
 * rewritten at load); `in-place` binds past and present to one buffer (GroupQueryAttention);
 * `whole-cache` fetches present.* and copies it (any other graph; slower).
 */
export type KvPath = 'new-rows' | 'in-place' | 'whole-cache'

/** Shapes the runner reads from the session's own input and output metadata. */
export interface ModelShape {
  layers: number
  kvHeads: number
  headDim: number
  vocabSize: number
  kvFloat16: boolean
  hasPositionIds: boolean
  /** decoder_model_merged exports switch between their two branches with this input. */
  hasUseCacheBranch: boolean
  /** Element type of the bulk of the weights, read from the graph (float32, float16, int8, int4, ...). */
  weightType: string
}

/** Shapes genai_config.json states; used where the graph's dims are symbolic, checked where not. */
export interface ExpectedShape {
  layers: number
  kvHeads: number
  headDim: number
  vocabSize?: number
}

/** A prompt to prefill into a cache row that the caller has just added. */
export interface PrefillRow {
  row: number
  tokens: ArrayLike<number>
  /** Positions in `tokens` whose next-token logits are wanted, ascending (default: the last). */
  logitPositions?: number[]
}

/**
 * Runs the decoder: prefill of new prompts and batched single-token decode steps over every
 * row of the KV cache. Knows nothing of requests, sampling or HTTP.
 */
export class ModelRunner {
  readonly cache: KvCache
  readonly shape: ModelShape
  readonly device: 'cpu' | 'cuda'
  readonly parameters: number
  private readonly session: ort.InferenceSession
  /** Per layer, the outputs that carry that step's new key and value rows. */
  private readonly kvOutputs: { key: string; value: string }[]
  /** True when kvOutputs name present.* (whole cache) rather than just the new rows. */
  private readonly fetchesWholeCache: boolean
  /** The input choosing which positions reach the LM head; null: logits for every position. */
  private readonly logitRows: string | null
  private readonly growColumns?: number
  readonly kvPath: KvPath
  private readonly inPlace: InPlaceKv | null

  constructor(loaded: LoadedSession, options: { growColumns?: number; io?: IoNames; expected?: ExpectedShape } = {}) {
    this.session = loaded.session
    this.device = loaded.device
    this.parameters = loaded.parameters
    this.logitRows = loaded.logitRows ?? null
    const io = options.io ?? OPTIMUM_IO_NAMES
    this.shape = readShape(loaded.session, io, loaded.facts?.weightType ?? 'float32', options.expected)
    const present = (l: number, kind: string) => `present.${l}.${kind}`
    this.kvOutputs = Array.from({ length: this.shape.layers }, (_, l) => ({
      key: loaded.newRows?.get(present(l, 'key')) ?? present(l, 'key'),
      value: loaded.newRows?.get(present(l, 'value')) ?? present(l, 'value'),
    }))
    this.fetchesWholeCache = !loaded.newRows
    this.growColumns = options.growColumns
    this.cache = this.newCache()
    const gqa = loaded.facts?.groupQueryAttention ?? false
    this.kvPath = gqa ? 'in-place' : loaded.newRows ? 'new-rows' : 'whole-cache'
    this.inPlace = gqa ? new InPlaceKv(this.session, this.shape, io, this.logitRows) : null
    if (!gqa && JSON.stringify(io) !== JSON.stringify(OPTIMUM_IO_NAMES)) {
      throw new Error("input/output names other than Optimum's are supported only for GroupQueryAttention graphs")
    }
  }

  static async load(
    onnxPath: string,
    options: ExecutionOptions,
    log: (message: string) => void,
    graph: { io?: IoNames; expected?: ExpectedShape } = {},
  ): Promise<ModelRunner> {
    return new ModelRunner(await createSession(onnxPath, options, log, graph.io), graph)
  }

  /** Whether each step moves only new KV rows out of onnxruntime (false: whole cache, slower). */
  get movesOnlyNewRows(): boolean {
    return !this.fetchesWholeCache
  }

  /** Whether the LM head runs only on the sampled positions (false: on every prompt position). */
  get gathersLogitRows(): boolean {
    return this.logitRows !== null
  }

  /**
   * Runs prompts (left-padded into one batch) and stores their KV. Returns, per row, the
   * logits of its `logitPositions` ([positions × vocab]; by default the last position's).
   */
  async prefill(rows: PrefillRow[]): Promise<Float32Array[]> {
    if (this.inPlace) {
      const width = Math.max(...rows.map((r) => r.tokens.length))
      this.cache.reserveColumns(Math.max(width, this.cache.maxLength()))
      const out: Float32Array[] = []
      // Each row alone: GroupQueryAttention takes right-padded rows, so no shared padding.
      for (const r of rows) {
        const positions = r.logitPositions ?? [r.tokens.length - 1]
        out.push(this.splitLogits(await this.inPlace.extend(this.cache, r.row, r.tokens, positions), [positions])[0])
      }
      return out
    }
    const k = rows.length
    const width = Math.max(...rows.map((r) => r.tokens.length))
    const ids = new BigInt64Array(k * width)
    const mask = new BigInt64Array(k * width)
    const positions = new BigInt64Array(k * width)
    rows.forEach((r, i) => {
      const pad = width - r.tokens.length
      for (let j = 0; j < r.tokens.length; j++) {
        ids[i * width + pad + j] = BigInt(r.tokens[j])
        mask[i * width + pad + j] = 1n
        positions[i * width + pad + j] = BigInt(j)
      }
    })
    const wanted = rows.map((r, i) =>
      (r.logitPositions ?? [r.tokens.length - 1]).map((p) => i * width + width - r.tokens.length + p),
    )
    const out = await this.session.run(
      this.feeds(this.cache, ids, mask, positions, [k, width], null, wanted.flat()),
      this.fetchNames(),
    )
    this.cache.reserveColumns(Math.max(width, this.cache.maxLength()))
    for (let l = 0; l < this.shape.layers; l++) {
      const key = out[this.kvOutputs[l].key].data as KvArray
      const value = out[this.kvOutputs[l].value].data as KvArray
      rows.forEach((r, i) => {
        this.cache.append(l, r.row, key, value, i, width, width - r.tokens.length, r.tokens.length)
      })
    }
    for (const r of rows) this.cache.lengths[r.row] = r.tokens.length
    return this.splitLogits(out.logits, wanted)
  }

  /** A cache for one prompt prefilled in chunks, outside the decode batch until it is whole. */
  startChunkedPrefill(totalTokens: number): KvCache {
    const staging = this.newCache()
    staging.addRow()
    staging.reserveColumns(totalTokens)
    return staging
  }

  /**
   * Prefills the next chunk of a prompt onto what `staging` (one row) already holds; returns
   * the logits of `logitPositions` (positions within this chunk), [positions × vocab].
   */
  async prefillChunk(staging: KvCache, tokens: ArrayLike<number>, logitPositions: number[]): Promise<Float32Array> {
    if (this.inPlace)
      return this.splitLogits(await this.inPlace.extend(staging, 0, tokens, logitPositions), [logitPositions])[0]
    const past = staging.lengths[0]
    const c = tokens.length
    staging.reserveColumns(past + c)
    const columns = staging.columns
    const ids = BigInt64Array.from(Array.from(tokens, BigInt))
    const positions = BigInt64Array.from({ length: c }, (_, j) => BigInt(past + j))
    const mask = new BigInt64Array(columns + c)
    mask.fill(1n, 0, past)
    mask.fill(1n, columns)
    const out = await this.session.run(
      this.feeds(staging, ids, mask, positions, [1, c], columns, logitPositions),
      this.fetchNames(),
    )
    const srcColumns = this.fetchesWholeCache ? columns + c : c
    const srcColumn = this.fetchesWholeCache ? columns : 0
    for (let l = 0; l < this.shape.layers; l++) {
      staging.append(
        l,
        0,
        out[this.kvOutputs[l].key].data as KvArray,
        out[this.kvOutputs[l].value].data as KvArray,
        0,
        srcColumns,
        srcColumn,
        c,
      )
    }
    staging.lengths[0] = past + c
    return this.splitLogits(out.logits, [logitPositions])[0]
  }

  /** Moves a whole chunked prompt into a new row of the decode cache; returns that row. */
  finishChunkedPrefill(staging: KvCache): number {
    const length = staging.lengths[0]
    this.cache.reserveColumns(Math.max(length, this.cache.maxLength()))
    const row = this.cache.addRow()
    for (let l = 0; l < this.shape.layers; l++)
      this.cache.append(l, row, staging.keys[l], staging.values[l], 0, staging.columns, 0, length)
    this.cache.lengths[row] = length
    return row
  }

  /** One decode step: `tokens[r]` is the next input of cache row r. Returns logits [rows × vocab]. */
  async decode(tokens: ArrayLike<number>): Promise<Float32Array> {
    if (this.inPlace) return toFloat32(await this.inPlace.decode(this.cache, tokens))
    const cache = this.cache
    const n = cache.rows
    cache.reserveColumns(cache.maxLength() + 1)
    const columns = cache.columns
    const ids = new BigInt64Array(n)
    const positions = new BigInt64Array(n)
    const mask = new BigInt64Array(n * (columns + 1))
    for (let r = 0; r < n; r++) {
      ids[r] = BigInt(tokens[r])
      positions[r] = BigInt(cache.lengths[r])
      mask.fill(1n, r * (columns + 1), r * (columns + 1) + cache.lengths[r])
      mask[r * (columns + 1) + columns] = 1n
    }
    const rows = Array.from({ length: n }, (_, r) => r)
    const out = await this.session.run(
      this.feeds(cache, ids, mask, positions, [n, 1], columns, rows),
      this.fetchNames(),
    )
    // The step's rows sit at column 0 of the new-rows outputs, or after the past in present.*.
    const srcColumns = this.fetchesWholeCache ? columns + 1 : 1
    const srcColumn = this.fetchesWholeCache ? columns : 0
    for (let l = 0; l < this.shape.layers; l++) {
      const key = out[this.kvOutputs[l].key].data as KvArray
      const value = out[this.kvOutputs[l].value].data as KvArray
      for (let r = 0; r < n; r++) cache.append(l, r, key, value, r, srcColumns, srcColumn, 1)
    }
    for (let r = 0; r < n; r++) cache.lengths[r]++
    return toFloat32(out.logits)
  }

  async dispose(): Promise<void> {
    await this.session.release()
  }

  private newCache(): KvCache {
    return new KvCache({
      layers: this.shape.layers,
      heads: this.shape.kvHeads,
      headDim: this.shape.headDim,
      float16: this.shape.kvFloat16,
      growColumns: this.growColumns,
    })
  }

  private fetchNames(): string[] {
    return ['logits', ...this.kvOutputs.flatMap((o) => [o.key, o.value])]
  }

  /**
   * `wanted[i]` lists flat batch × sequence positions of row i. With the gathered head the
   * logits hold exactly those rows, in order; otherwise every position, and only the wanted
   * rows are converted and copied.
   */
  private splitLogits(logits: ort.Tensor, wanted: number[][]): Float32Array[] {
    const V = this.shape.vocabSize
    let next = 0
    return wanted.map((flat) => {
      const out = new Float32Array(flat.length * V)
      flat.forEach((position, j) => {
        copyRow(logits, this.logitRows ? next++ : position, V, out, j)
      })
      return out
    })
  }

  /** `pastColumns` null means an empty past (prefill); otherwise `cache`'s rows are the past. */
  private feeds(
    cache: KvCache,
    ids: BigInt64Array,
    mask: BigInt64Array,
    positions: BigInt64Array,
    dims: [number, number],
    pastColumns: number | null,
    logitRows: number[],
  ): Record<string, ort.Tensor> {
    const [batch, length] = dims
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, dims),
      attention_mask: new ort.Tensor('int64', mask, [batch, mask.length / batch]),
    }
    if (this.logitRows)
      feeds[this.logitRows] = new ort.Tensor('int64', BigInt64Array.from(logitRows, BigInt), [logitRows.length])
    if (this.shape.hasPositionIds) feeds.position_ids = new ort.Tensor('int64', positions, [batch, length])
    if (this.shape.hasUseCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', [pastColumns !== null], [1])
    const type = this.shape.kvFloat16 ? 'float16' : 'float32'
    const { kvHeads, headDim } = this.shape
    for (let l = 0; l < this.shape.layers; l++) {
      const past = pastColumns === null ? null : cache.pastView(l)
      const empty = this.shape.kvFloat16 ? new Uint16Array(0) : new Float32Array(0)
      const pastDims = [batch, kvHeads, pastColumns ?? 0, headDim]
      feeds[`past_key_values.${l}.key`] = new ort.Tensor(type, past?.key ?? empty, pastDims)
      feeds[`past_key_values.${l}.value`] = new ort.Tensor(type, past?.value ?? empty, pastDims)
    }
    return feeds
  }
}

/** Inputs the runner can feed besides input_ids, attention_mask and the past KV. */
const OPTIONAL_INPUTS = ['use_cache_branch', LOGIT_ROWS_INPUT]

function readShape(
  session: ort.InferenceSession,
  io: IoNames,
  weightType: string,
  expected?: ExpectedShape,
): ModelShape {
  const inputs = new Map(session.inputMetadata.map((m) => [m.name, m]))
  const outputs = new Map(session.outputMetadata.map((m) => [m.name, m]))
  const problem = (what: string): never => {
    throw new Error(`the ONNX graph is not a decoder with a KV cache: ${what}`)
  }
  for (const name of [io.inputIds, io.attentionMask]) if (!inputs.has(name)) problem(`no ${name} input`)
  const logits = outputs.get(io.logits) ?? problem(`no ${io.logits} output`)
  let layers = 0
  while (inputs.has(layerName(io.pastKey, layers))) layers++
  if (layers === 0) problem(`no ${io.pastKey.replace('%d', 'N')} inputs`)
  const known = new Set([io.inputIds, io.attentionMask, io.positionIds, ...OPTIONAL_INPUTS])
  for (let l = 0; l < layers; l++) known.add(layerName(io.pastKey, l)).add(layerName(io.pastValue, l))
  const unknown = session.inputNames.find((name) => !known.has(name))
  if (unknown)
    throw new Error(
      `unsupported ONNX graph: input "${unknown}" is not one Switchyard can feed (input_ids, attention_mask, position_ids, use_cache_branch, past key/values)`,
    )
  const past = inputs.get(layerName(io.pastKey, 0))!
  if (past.isTensor && past.type !== 'float32' && past.type !== 'float16')
    throw new Error(`unsupported ONNX graph: KV cache element type ${past.type} (float32 and float16 are supported)`)
  const dims = past.isTensor ? past.shape : []
  // Fixed dims in the graph win; symbolic ones come from genai_config.json when it gives them.
  const pick = (what: string, fromGraph: unknown, fromConfig: number | undefined): number => {
    if (typeof fromGraph === 'number' && fromConfig !== undefined && fromGraph !== fromConfig) {
      throw new Error(`genai_config.json gives ${what} ${fromConfig}, but the ONNX graph has ${fromGraph}`)
    }
    return typeof fromGraph === 'number'
      ? fromGraph
      : (fromConfig ?? problem(`the graph's shapes do not give the ${what} and no genai_config.json does`))
  }
  if (expected && expected.layers !== layers)
    throw new Error(`genai_config.json gives ${expected.layers} layers, but the ONNX graph has ${layers}`)
  return {
    layers,
    kvHeads: pick('number of KV heads', dims[1], expected?.kvHeads),
    headDim: pick('head size', dims[3], expected?.headDim),
    // [batch, seq, vocab], or [1, rows, vocab] once the head is gathered.
    vocabSize: pick(
      'vocabulary size',
      logits.isTensor ? logits.shape[logits.shape.length - 1] : undefined,
      expected?.vocabSize,
    ),
    kvFloat16: past.isTensor && past.type === 'float16',
    hasPositionIds: inputs.has(io.positionIds),
    hasUseCacheBranch: inputs.has('use_cache_branch'),
    weightType,
  }
}

/** A float32 or float16 tensor's values as float32 (float16 through a lookup table). */
export function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array
  const half = tensor.data as Uint16Array
  const out = new Float32Array(half.length)
  const table = halfTable()
  for (let i = 0; i < half.length; i++) out[i] = table[half[i]]
  return out
}

/** Copies row `row` of a [rows, width] float32 or float16 tensor into row `at` of `out`. */
function copyRow(tensor: ort.Tensor, row: number, width: number, out: Float32Array, at: number): void {
  if (tensor.type === 'float32') {
    out.set((tensor.data as Float32Array).subarray(row * width, (row + 1) * width), at * width)
    return
  }
  const half = tensor.data as Uint16Array
  const table = halfTable()
  for (let i = 0, src = row * width, dst = at * width; i < width; i++) out[dst + i] = table[half[src + i]]
}

let HALF_TO_FLOAT: Float32Array | null = null

/** Every float16 bit pattern's float32 value: one load per element instead of the arithmetic. */
function halfTable(): Float32Array {
  if (HALF_TO_FLOAT) return HALF_TO_FLOAT
  HALF_TO_FLOAT = new Float32Array(65536)
  for (let h = 0; h < 65536; h++) HALF_TO_FLOAT[h] = halfToFloat(h)
  return HALF_TO_FLOAT
}

export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exponent = (h >> 10) & 0x1f
  const fraction = h & 0x3ff
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024)
  if (exponent === 31) return fraction ? NaN : sign * Infinity
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024)
}
