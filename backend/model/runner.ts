import * as ort from 'onnxruntime-node'
import { OPTIMUM_IO_NAMES, layerName, type IoNames } from './genai-config.ts'
import { InPlaceKv } from './gqa-kv.ts'
import { KvCache, type KvArray } from './kv-cache.ts'
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
  readonly kvPath: KvPath
  private readonly inPlace: InPlaceKv | null

  constructor(loaded: LoadedSession, options: { growColumns?: number; io?: IoNames; expected?: ExpectedShape } = {}) {
    this.session = loaded.session
    this.device = loaded.device
    this.parameters = loaded.parameters
    const io = options.io ?? OPTIMUM_IO_NAMES
    this.shape = readShape(loaded.session, io, loaded.facts.weightType, options.expected)
    const present = (l: number, kind: string) => `present.${l}.${kind}`
    this.kvOutputs = Array.from({ length: this.shape.layers }, (_, l) => ({
      key: loaded.newRows?.get(present(l, 'key')) ?? present(l, 'key'),
      value: loaded.newRows?.get(present(l, 'value')) ?? present(l, 'value'),
    }))
    this.fetchesWholeCache = !loaded.newRows
    this.cache = new KvCache({ layers: this.shape.layers, heads: this.shape.kvHeads, headDim: this.shape.headDim, float16: this.shape.kvFloat16, growColumns: options.growColumns })
    const gqa = loaded.facts.groupQueryAttention
    this.kvPath = gqa ? 'in-place' : loaded.newRows ? 'new-rows' : 'whole-cache'
    this.inPlace = gqa ? new InPlaceKv(this.session, this.cache, this.shape, io) : null
    if (!gqa && JSON.stringify(io) !== JSON.stringify(OPTIMUM_IO_NAMES)) {
      throw new Error('input/output names other than Optimum\'s are supported only for GroupQueryAttention graphs')
    }
  }

  static async load(onnxPath: string, options: ExecutionOptions, log: (message: string) => void, graph: { io?: IoNames; expected?: ExpectedShape } = {}): Promise<ModelRunner> {
    return new ModelRunner(await createSession(onnxPath, options, log, graph.io), graph)
  }

  /** Whether each step moves only new KV rows out of onnxruntime (false: whole cache, slower). */
  get movesOnlyNewRows(): boolean {
    return !this.fetchesWholeCache
  }

  /** Runs prompts (left-padded into one batch) and stores their KV; returns each row's next-token logits. */
  async prefill(rows: PrefillRow[]): Promise<Float32Array[]> {
    if (this.inPlace) return (await this.inPlace.prefill(rows)).map((logits) => lastRow(toFloat32(logits), this.shape.vocabSize))
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
    const feeds = this.feeds(ids, mask, positions, [k, width], null)
    const out = await this.session.run(feeds, this.fetchNames())
    this.cache.reserveColumns(Math.max(width, this.cache.maxLength()))
    for (let l = 0; l < this.shape.layers; l++) {
      const key = out[this.kvOutputs[l].key].data as KvArray
      const value = out[this.kvOutputs[l].value].data as KvArray
      rows.forEach((r, i) => this.cache.append(l, r.row, key, value, i, width, width - r.tokens.length, r.tokens.length))
    }
    for (const r of rows) this.cache.lengths[r.row] = r.tokens.length
    const logits = toFloat32(out.logits)
    const V = this.shape.vocabSize
    return rows.map((_, i) => logits.slice(((i + 1) * width - 1) * V, (i + 1) * width * V))
  }

  /** One decode step: `tokens[r]` is the next input of cache row r. Returns logits [rows × vocab]. */
  async decode(tokens: ArrayLike<number>): Promise<Float32Array> {
    if (this.inPlace) return toFloat32(await this.inPlace.decode(tokens))
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
    const out = await this.session.run(this.feeds(ids, mask, positions, [n, 1], columns), this.fetchNames())
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

  private fetchNames(): string[] {
    return ['logits', ...this.kvOutputs.flatMap((o) => [o.key, o.value])]
  }

  /** `pastColumns` null means an empty past (prefill); otherwise the cache rows are the past. */
  private feeds(ids: BigInt64Array, mask: BigInt64Array, positions: BigInt64Array, dims: [number, number], pastColumns: number | null): Record<string, ort.Tensor> {
    const [batch, length] = dims
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, dims),
      attention_mask: new ort.Tensor('int64', mask, [batch, mask.length / batch]),
    }
    if (this.shape.hasPositionIds) feeds.position_ids = new ort.Tensor('int64', positions, [batch, length])
    if (this.shape.hasUseCacheBranch) feeds.use_cache_branch = new ort.Tensor('bool', [pastColumns !== null], [1])
    const type = this.shape.kvFloat16 ? 'float16' : 'float32'
    const { kvHeads, headDim } = this.shape
    for (let l = 0; l < this.shape.layers; l++) {
      const past = pastColumns === null ? null : this.cache.pastView(l)
      const empty = this.shape.kvFloat16 ? new Uint16Array(0) : new Float32Array(0)
      const pastDims = [batch, kvHeads, pastColumns ?? 0, headDim]
      feeds[`past_key_values.${l}.key`] = new ort.Tensor(type, past?.key ?? empty, pastDims)
      feeds[`past_key_values.${l}.value`] = new ort.Tensor(type, past?.value ?? empty, pastDims)
    }
    return feeds
  }
}

/** Inputs the runner can feed besides input_ids, attention_mask and the past KV. */
const OPTIONAL_INPUTS = ['use_cache_branch']

function readShape(session: ort.InferenceSession, io: IoNames, weightType: string, expected?: ExpectedShape): ModelShape {
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
  if (unknown) throw new Error(`unsupported ONNX graph: input "${unknown}" is not one Switchyard can feed (input_ids, attention_mask, position_ids, use_cache_branch, past key/values)`)
  const past = inputs.get(layerName(io.pastKey, 0))!
  if (past.isTensor && past.type !== 'float32' && past.type !== 'float16') throw new Error(`unsupported ONNX graph: KV cache element type ${past.type} (float32 and float16 are supported)`)
  const dims = past.isTensor ? past.shape : []
  // Fixed dims in the graph win; symbolic ones come from genai_config.json when it gives them.
  const pick = (what: string, fromGraph: unknown, fromConfig: number | undefined): number => {
    if (typeof fromGraph === 'number' && fromConfig !== undefined && fromGraph !== fromConfig) {
      throw new Error(`genai_config.json gives ${what} ${fromConfig}, but the ONNX graph has ${fromGraph}`)
    }
    return typeof fromGraph === 'number' ? fromGraph : (fromConfig ?? problem(`the graph's shapes do not give the ${what} and no genai_config.json does`))
  }
  if (expected && expected.layers !== layers) throw new Error(`genai_config.json gives ${expected.layers} layers, but the ONNX graph has ${layers}`)
  return {
    layers,
    kvHeads: pick('number of KV heads', dims[1], expected?.kvHeads),
    headDim: pick('head size', dims[3], expected?.headDim),
    vocabSize: pick('vocabulary size', logits.isTensor ? logits.shape[2] : undefined, expected?.vocabSize),
    kvFloat16: past.isTensor && past.type === 'float16',
    hasPositionIds: inputs.has(io.positionIds),
    hasUseCacheBranch: inputs.has('use_cache_branch'),
    weightType,
  }
}

/** The last position's row of [1, length, vocab] logits. */
function lastRow(logits: Float32Array, vocab: number): Float32Array {
  return logits.subarray(logits.length - vocab)
}

function toFloat32(tensor: ort.Tensor): Float32Array {
  if (tensor.type === 'float32') return tensor.data as Float32Array
  const half = tensor.data as Uint16Array
  const out = new Float32Array(half.length)
  for (let i = 0; i < half.length; i++) out[i] = halfToFloat(half[i])
  return out
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1
  const exponent = (h >> 10) & 0x1f
  const fraction = h & 0x3ff
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024)
  if (exponent === 31) return fraction ? NaN : sign * Infinity
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024)
}
