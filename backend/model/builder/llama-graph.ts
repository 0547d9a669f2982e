// The Llama decoder as an ONNX graph, in one of two styles:
// - optimum: the Hugging Face Optimum layout (inputs input_ids / attention_mask / position_ids /
//   past_key_values.{i}.key|value, outputs logits / present.{i}.key|value), standard ops, where
//   present = Concat(past, new rows);
// - genai: as the onnxruntime-genai model builder writes it: no position_ids, one
//   GroupQueryAttention (com.microsoft) per layer with rotary embedding inside, seqlens_k and
//   total_sequence_length computed from attention_mask; past and present may share one buffer.
// Weights are fp32, fp16 (whole graph in half precision), q4 or int8 / uint8 (see quantize.ts).
import type onnxProto from 'onnx-proto'
import { DataType, encodeModel, GraphBuilder, valueInfo } from './onnx-writer.ts'
import { isHalf, projection, type Quantization, type WeightFormat } from './quantize.ts'

type TensorProto = onnxProto.onnx.ITensorProto

export interface LlamaShape {
  hiddenSize: number
  intermediateSize: number
  numLayers: number
  numHeads: number
  numKvHeads: number
  headDim: number
  vocabSize: number
  contextLength: number
  rmsNormEps: number
  ropeTheta: number
  tieWordEmbeddings: boolean
}

export type GraphStyle = 'optimum' | 'genai'

export interface GraphOptions {
  style: GraphStyle
  weights: WeightFormat
  /**
   * optimum style: false computes positions from attention_mask in the graph (exports without a
   * position_ids input). genai style: true applies rotary before GroupQueryAttention from a
   * position_ids input (do_rotary 0), as some model-builder exports do; default is rotary inside.
   */
  positionIds?: boolean
  /** optimum style: a merged decoder, the decoder inside both branches of an If on a use_cache_branch input. */
  merged?: boolean
}

/** One learned tensor. Projections are stored as [in, out] so MatMul needs no Transpose. */
export interface WeightSpec {
  name: string
  dims: number[]
  init: 'embedding' | 'projection' | 'ones'
}

export const OPSET = 14

/**
 * Additive mask value: large enough that exp() underflows to exactly 0, small enough to never
 * reach -inf (a fully masked padding row would turn into NaN). Half precision tops out at 65504.
 */
const MASKED = -3.4e38
const MASKED_HALF = -3e4

export function llamaWeightSpecs(shape: LlamaShape): WeightSpec[] {
  const { hiddenSize: h, intermediateSize: ff, numHeads, numKvHeads, headDim, vocabSize } = shape
  const projection = (name: string, inDim: number, outDim: number): WeightSpec => ({
    name: `${name}.weight_T`,
    dims: [inDim, outDim],
    init: 'projection',
  })
  const norm = (name: string): WeightSpec => ({ name: `${name}.weight`, dims: [h], init: 'ones' })

  const specs: WeightSpec[] = [{ name: 'model.embed_tokens.weight', dims: [vocabSize, h], init: 'embedding' }]
  for (let i = 0; i < shape.numLayers; i++) {
    const layer = `model.layers.${i}`
    specs.push(
      norm(`${layer}.input_layernorm`),
      projection(`${layer}.self_attn.q_proj`, h, numHeads * headDim),
      projection(`${layer}.self_attn.k_proj`, h, numKvHeads * headDim),
      projection(`${layer}.self_attn.v_proj`, h, numKvHeads * headDim),
      projection(`${layer}.self_attn.o_proj`, numHeads * headDim, h),
      norm(`${layer}.post_attention_layernorm`),
      projection(`${layer}.mlp.gate_proj`, h, ff),
      projection(`${layer}.mlp.up_proj`, h, ff),
      projection(`${layer}.mlp.down_proj`, ff, h),
    )
  }
  specs.push(norm('model.norm'))
  if (!shape.tieWordEmbeddings) specs.push(projection('lm_head', h, vocabSize))
  return specs
}

export function countParameters(specs: Pick<WeightSpec, 'dims'>[]): number {
  return specs.reduce((sum, spec) => sum + spec.dims.reduce((a, b) => a * b, 1), 0)
}

/**
 * Encodes the whole model. `weights` holds one tensor per llamaWeightSpecs() entry
 * (inline or external data); small constants are added inline.
 */
export function buildLlamaModel(
  shape: LlamaShape,
  weights: TensorProto[],
  options: GraphOptions = { style: 'optimum', weights: 'fp32' },
): Uint8Array {
  const floatType = isHalf(options.weights) ? DataType.FLOAT16 : DataType.FLOAT
  const g = new GraphBuilder(floatType)
  for (const weight of weights) g.initializer(weight)
  const outputs = graphOutputs(shape, floatType)
  const inputs = graphInputs(shape, hasPositionIds(options), floatType)
  if (options.merged && options.style === 'optimum') {
    // As Optimum's decoder_model_merged: the same decoder in both branches (with and without
    // past), reading the weights from the outer graph.
    const branch = (prefix: string) => {
      const b = new GraphBuilder(floatType, prefix)
      decoderBody(b, shape, options, (name) => `${prefix}/${name}`)
      const output = outputs.map((o) => ({ ...o, name: `${prefix}/${o.name}` }))
      return { graph: { name: prefix, node: b.nodes, initializer: b.initializers, output } }
    }
    g.opMulti(
      'If',
      ['use_cache_branch'],
      outputs.length,
      { then_branch: branch('with_past'), else_branch: branch('without_past') },
      outputs.map((o) => o.name!),
    )
    inputs.push(valueInfo('use_cache_branch', DataType.BOOL, [1]))
  } else decoderBody(g, shape, options, (name) => name)
  return encodeModel({
    graphName: 'llama',
    builder: g,
    inputs,
    outputs,
    opset: OPSET,
    producer: 'switchyard-model-builder',
  })
}

const hasPositionIds = (options: GraphOptions) =>
  options.style === 'genai' ? options.positionIds === true : options.positionIds !== false

/** The decoder's nodes; `out` names its outputs (logits, present.N.key|value). */
function decoderBody(g: GraphBuilder, shape: LlamaShape, options: GraphOptions, out: (name: string) => string): void {
  const hidden = g.op('Gather', ['model.embed_tokens.weight', 'input_ids'], { axis: 0 })
  const attend: Attend =
    options.style === 'genai'
      ? groupQueryAttention(g, shape, out, hasPositionIds(options) ? rotaryCosSin(g, shape, 'position_ids') : undefined)
      : standardAttention(
          g,
          shape,
          rotaryCosSin(g, shape, options.positionIds === false ? positionsFromMask(g) : 'position_ids'),
          attentionBias(g),
          out,
        )

  const quantization: Quantization = { format: options.weights, q4AccuracyLevel: options.style === 'genai' ? 4 : 0 }
  let residual = hidden
  for (let i = 0; i < shape.numLayers; i++) residual = decoderLayer(g, shape, quantization, i, residual, attend)

  const normed = rmsNorm(g, residual, 'model.norm.weight', shape.rmsNormEps)
  if (shape.tieWordEmbeddings) {
    // Tied head: ORT constant-folds this Transpose once at session load.
    g.op('MatMul', [normed, g.op('Transpose', ['model.embed_tokens.weight'], { perm: [1, 0] })], {}, out('logits'))
  } else {
    g.op(
      'Identity',
      [projection(g, normed, 'lm_head', shape.hiddenSize, shape.vocabSize, quantization)],
      {},
      out('logits'),
    )
  }
}

function graphInputs(shape: LlamaShape, positionIds: boolean, floatType: number) {
  const inputs = [
    valueInfo('input_ids', DataType.INT64, ['batch_size', 'sequence_length']),
    valueInfo('attention_mask', DataType.INT64, ['batch_size', 'total_sequence_length']),
  ]
  if (positionIds) inputs.push(valueInfo('position_ids', DataType.INT64, ['batch_size', 'sequence_length']))
  const cacheDims = ['batch_size', shape.numKvHeads, 'past_sequence_length', shape.headDim]
  for (let i = 0; i < shape.numLayers; i++) {
    inputs.push(valueInfo(`past_key_values.${i}.key`, floatType, cacheDims))
    inputs.push(valueInfo(`past_key_values.${i}.value`, floatType, cacheDims))
  }
  return inputs
}

function graphOutputs(shape: LlamaShape, floatType: number) {
  const outputs = [valueInfo('logits', floatType, ['batch_size', 'sequence_length', shape.vocabSize])]
  const cacheDims = ['batch_size', shape.numKvHeads, 'total_sequence_length', shape.headDim]
  for (let i = 0; i < shape.numLayers; i++) {
    outputs.push(valueInfo(`present.${i}.key`, floatType, cacheDims))
    outputs.push(valueInfo(`present.${i}.value`, floatType, cacheDims))
  }
  return outputs
}

/** One layer's attention over its normed input: (layer, x, q, k, v) → context [batch, seq, heads*head_dim]. */
type Attend = (layer: number, query: string, key: string, value: string) => string

/**
 * GroupQueryAttention as the model builder wires it: seqlens_k = (sum of the mask row) - 1 and
 * total_sequence_length = mask width, both int32; rows are right-padded. Rotary inside the op
 * (positions follow from seqlens_k), or, given `rope`, applied to query and key before it.
 */
function groupQueryAttention(
  g: GraphBuilder,
  shape: LlamaShape,
  out: (name: string) => string,
  rope?: RopeInputs,
): Attend {
  const maskSum = g.op('ReduceSum', ['attention_mask', g.int64([1])], { keepdims: 0 })
  const seqlensK = g.op('Cast', [g.op('Sub', [maskSum, g.int64([1], [])])], { to: DataType.INT32 })
  const width = g.op('Gather', [g.op('Shape', ['attention_mask']), g.int64([1], [])], { axis: 0 })
  const totalLength = g.op('Cast', [width], { to: DataType.INT32 })
  const past = (layer: number) => [
    `past_key_values.${layer}.key`,
    `past_key_values.${layer}.value`,
    seqlensK,
    totalLength,
  ]
  const attributes = {
    num_heads: shape.numHeads,
    kv_num_heads: shape.numKvHeads,
    rotary_interleaved: 0,
    scale: { float: 1 / Math.sqrt(shape.headDim) },
  }
  const outputs = (layer: number) => [`/attn_${layer}_out`, out(`present.${layer}.key`), out(`present.${layer}.value`)]
  if (rope) {
    // rope tables are [batch, 1, seq, head_dim]; [batch, seq, heads, head_dim] needs [batch, seq, 1, head_dim].
    const perSeq = {
      cos: g.op('Transpose', [rope.cos], { perm: [0, 2, 1, 3] }),
      sin: g.op('Transpose', [rope.sin], { perm: [0, 2, 1, 3] }),
    }
    const rotate = (x: string, heads: number) =>
      g.op('Reshape', [
        applyRope(g, g.op('Reshape', [x, g.int64([0, 0, heads, shape.headDim])]), perSeq),
        g.int64([0, 0, heads * shape.headDim]),
      ])
    return (layer, query, key, value) =>
      g.msOp(
        'GroupQueryAttention',
        [rotate(query, shape.numHeads), rotate(key, shape.numKvHeads), value, ...past(layer)],
        3,
        { ...attributes, do_rotary: 0 },
        outputs(layer),
      )[0]
  }
  const { cos, sin } = rotaryCache(g, shape)
  return (layer, query, key, value) =>
    g.msOp(
      'GroupQueryAttention',
      [query, key, value, ...past(layer), cos, sin],
      3,
      { ...attributes, do_rotary: 1 },
      outputs(layer),
    )[0]
}

/** cos / sin tables [context, head_dim / 2] for GroupQueryAttention's do_rotary. */
function rotaryCache(g: GraphBuilder, shape: LlamaShape): { cos: string; sin: string } {
  const half = shape.headDim / 2
  const cos: number[] = []
  const sin: number[] = []
  for (let p = 0; p < shape.contextLength; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p / shape.ropeTheta ** ((2 * i) / shape.headDim)
      cos.push(Math.cos(angle))
      sin.push(Math.sin(angle))
    }
  }
  return { cos: g.float(cos, [shape.contextLength, half]), sin: g.float(sin, [shape.contextLength, half]) }
}

/** Standard ops: rotary, present = Concat(past, new rows), grouped heads, masked softmax. */
function standardAttention(
  g: GraphBuilder,
  shape: LlamaShape,
  rope: RopeInputs,
  bias: string,
  out: (name: string) => string,
): Attend {
  const { numHeads, numKvHeads, headDim } = shape
  return (layer, q, k, v) => {
    const query = applyRope(g, splitHeads(g, q, numHeads, headDim), rope)
    const newKey = applyRope(g, splitHeads(g, k, numKvHeads, headDim), rope)
    const newValue = splitHeads(g, v, numKvHeads, headDim)

    // present = Concat(past, new rows); the backend finds this Concat to read only the new rows.
    const key = g.op('Concat', [`past_key_values.${layer}.key`, newKey], { axis: 2 })
    const value = g.op('Concat', [`past_key_values.${layer}.value`, newValue], { axis: 2 })
    g.op('Identity', [key], {}, out(`present.${layer}.key`))
    g.op('Identity', [value], {}, out(`present.${layer}.value`))

    const keyT = g.op('Transpose', [repeatKv(g, key, shape)], { perm: [0, 1, 3, 2] })
    const scores = g.op('Mul', [g.op('MatMul', [query, keyT]), g.float([1 / Math.sqrt(headDim)], [])])
    const probs = g.op('Softmax', [g.op('Add', [scores, bias])], { axis: -1 })
    const context = g.op('MatMul', [probs, repeatKv(g, value, shape)])
    return g.op('Reshape', [g.op('Transpose', [context], { perm: [0, 2, 1, 3] }), g.int64([0, 0, numHeads * headDim])])
  }
}

interface RopeInputs {
  cos: string
  sin: string
}

/**
 * cos/sin of position_ids (never the column index) times the inverse frequencies, shaped
 * [batch, 1, seq, head_dim]. Computed in the graph like HF does in float32, so no
 * position table sits among the initializers.
 */
function rotaryCosSin(g: GraphBuilder, shape: LlamaShape, positionIds: string): RopeInputs {
  const { headDim, ropeTheta } = shape
  // HF layout: the same frequencies repeated for both halves (rotate_half convention).
  const inverseFrequencies = Array.from(
    { length: headDim },
    (_, i) => 1 / ropeTheta ** ((2 * (i % (headDim / 2))) / headDim),
  )
  const positions = g.op('Unsqueeze', [g.op('Cast', [positionIds], { to: g.floatType }), g.int64([2])])
  const angles = g.op('Mul', [positions, g.float(inverseFrequencies)])
  const table = (op: 'Cos' | 'Sin') => g.op('Unsqueeze', [g.op(op, [angles]), g.int64([1])])
  return { cos: table('Cos'), sin: table('Sin') }
}

/**
 * position_ids for exports that have no such input: the count of attended columns before each
 * one (cumsum(attention_mask) - 1, at least 0), for the last sequence_length columns.
 */
function positionsFromMask(g: GraphBuilder): string {
  const counted = g.op('Sub', [g.op('CumSum', ['attention_mask', g.int64([1], [])]), g.int64([1], [])])
  const positions = g.op('Max', [counted, g.int64([0], [])])
  const seqLen = g.op('Gather', [g.op('Shape', ['input_ids']), g.int64([1])], { axis: 0 })
  return g.op('Slice', [positions, g.op('Neg', [seqLen]), g.int64([Number.MAX_SAFE_INTEGER]), g.int64([1])])
}

/**
 * [batch, 1, seq, total] additive bias: key column j is visible to query i iff
 * attention_mask[b, j] == 1 and j <= past_len + i. Masked columns anywhere
 * (left padding or holes in the cache) therefore get exactly zero weight.
 */
function attentionBias(g: GraphBuilder): string {
  const one = g.int64([1], [])
  const seqLen = g.op('Gather', [g.op('Shape', ['input_ids']), one], { axis: 0 })
  const totalLen = g.op('Gather', [g.op('Shape', ['attention_mask']), one], { axis: 0 })
  const pastLen = g.op('Sub', [totalLen, seqLen])

  const queryPos = g.op('Unsqueeze', [g.op('Range', [pastLen, totalLen, one]), g.int64([1])])
  const keyPos = g.op('Unsqueeze', [g.op('Range', [g.int64([0], []), totalLen, one]), g.int64([0])])
  const causal = g.op('Not', [g.op('Greater', [keyPos, queryPos])])

  const attended = g.op('Cast', ['attention_mask'], { to: DataType.BOOL })
  const visible = g.op('And', [
    g.op('Unsqueeze', [causal, g.int64([0, 1])]),
    g.op('Unsqueeze', [attended, g.int64([1, 2])]),
  ])
  const masked = g.floatType === DataType.FLOAT16 ? MASKED_HALF : MASKED
  return g.op('Where', [visible, g.float([0], []), g.float([masked], [])])
}

function rmsNorm(g: GraphBuilder, x: string, weight: string, eps: number): string {
  const meanSquare = g.op('ReduceMean', [g.op('Mul', [x, x])], { axes: [-1], keepdims: 1 })
  const inverseRms = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [meanSquare, g.float([eps], [])])])])
  return g.op('Mul', [g.op('Mul', [x, inverseRms]), weight])
}

/** [batch, seq, heads*head_dim] -> [batch, heads, seq, head_dim] */
function splitHeads(g: GraphBuilder, x: string, heads: number, headDim: number): string {
  const reshaped = g.op('Reshape', [x, g.int64([0, 0, heads, headDim])])
  return g.op('Transpose', [reshaped], { perm: [0, 2, 1, 3] })
}

/** x * cos + rotate_half(x) * sin, with rotate_half(x) = [-x2, x1]. */
function applyRope(g: GraphBuilder, x: string, rope: RopeInputs): string {
  const [x1, x2] = g.opMulti('Split', [x], 2, { axis: -1 })
  const rotated = g.op('Concat', [g.op('Neg', [x2]), x1], { axis: -1 })
  return g.op('Add', [g.op('Mul', [x, rope.cos]), g.op('Mul', [rotated, rope.sin])])
}

/** Grouped-query attention: [batch, kv_heads, t, d] -> [batch, heads, t, d], kv head k serving query heads k*groups..k*groups+groups-1. */
function repeatKv(g: GraphBuilder, x: string, shape: LlamaShape): string {
  const groups = shape.numHeads / shape.numKvHeads
  if (groups === 1) return x
  const tiled = g.op('Tile', [g.op('Unsqueeze', [x, g.int64([2])]), g.int64([1, 1, groups, 1, 1])])
  return g.op('Reshape', [tiled, g.int64([0, shape.numHeads, -1, shape.headDim])])
}

/** SwiGLU: down(silu(gate(x)) * up(x)), SiLU written as x * Sigmoid(x). */
function mlp(g: GraphBuilder, shape: LlamaShape, format: Quantization, layer: number, x: string): string {
  const prefix = `model.layers.${layer}.mlp`
  const { hiddenSize: h, intermediateSize: ff } = shape
  const gate = projection(g, x, `${prefix}.gate_proj`, h, ff, format)
  const up = projection(g, x, `${prefix}.up_proj`, h, ff, format)
  const activated = g.op('Mul', [g.op('Mul', [gate, g.op('Sigmoid', [gate])]), up])
  return projection(g, activated, `${prefix}.down_proj`, ff, h, format)
}

function decoderLayer(
  g: GraphBuilder,
  shape: LlamaShape,
  format: Quantization,
  layer: number,
  hidden: string,
  attend: Attend,
): string {
  const prefix = `model.layers.${layer}`
  const { hiddenSize: h, numHeads, numKvHeads, headDim } = shape
  const x = rmsNorm(g, hidden, `${prefix}.input_layernorm.weight`, shape.rmsNormEps)
  const project = (name: string, outDim: number) => projection(g, x, `${prefix}.self_attn.${name}`, h, outDim, format)
  const context = attend(
    layer,
    project('q_proj', numHeads * headDim),
    project('k_proj', numKvHeads * headDim),
    project('v_proj', numKvHeads * headDim),
  )
  const afterAttn = g.op('Add', [
    hidden,
    projection(g, context, `${prefix}.self_attn.o_proj`, numHeads * headDim, h, format),
  ])
  const mlpIn = rmsNorm(g, afterAttn, `${prefix}.post_attention_layernorm.weight`, shape.rmsNormEps)
  return g.op('Add', [afterAttn, mlp(g, shape, format, layer, mlpIn)])
}
