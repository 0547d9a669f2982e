// A BERT encoder as an ONNX graph in the Hugging Face Optimum layout: inputs input_ids /
// attention_mask [/ token_type_ids], output last_hidden_state [batch, seq, hidden], or, for the
// sequence-classification variant, logits [batch, labels] (BERT pooler on [CLS] + classifier).
// Opset 14, fp32, standard ops only; post-LayerNorm blocks with exact (erf) GELU, as in BERT.
import type onnxProto from 'onnx-proto'
import { DataType, encodeModel, GraphBuilder, valueInfo } from './onnx-writer.ts'

export interface BertShape {
  hiddenSize: number
  intermediateSize: number
  numLayers: number
  numHeads: number
  vocabSize: number
  maxPositions: number
  /** 0: no token_type_ids input (DistilBERT-style); BERT has 2. */
  typeVocabSize: number
  layerNormEps: number
  /** Set: a classification head with this many labels replaces last_hidden_state by logits. */
  numLabels?: number
}

export interface EncoderWeightSpec {
  name: string
  dims: number[]
  init: 'embedding' | 'projection' | 'ones' | 'zeros'
}

const OPSET = 14
/** Additive mask value: exp() underflows to exactly 0 without ever reaching -inf. */
const MASKED = -3.4e38

export function bertWeightSpecs(shape: BertShape): EncoderWeightSpec[] {
  const { hiddenSize: h, intermediateSize: ff } = shape
  const linear = (name: string, inDim: number, outDim: number): EncoderWeightSpec[] => [
    { name: `${name}.weight_T`, dims: [inDim, outDim], init: 'projection' },
    { name: `${name}.bias`, dims: [outDim], init: 'zeros' },
  ]
  const norm = (name: string): EncoderWeightSpec[] => [
    { name: `${name}.weight`, dims: [h], init: 'ones' },
    { name: `${name}.bias`, dims: [h], init: 'zeros' },
  ]
  const specs: EncoderWeightSpec[] = [
    { name: 'embeddings.word_embeddings.weight', dims: [shape.vocabSize, h], init: 'embedding' },
    { name: 'embeddings.position_embeddings.weight', dims: [shape.maxPositions, h], init: 'embedding' },
  ]
  if (shape.typeVocabSize > 0)
    specs.push({ name: 'embeddings.token_type_embeddings.weight', dims: [shape.typeVocabSize, h], init: 'embedding' })
  specs.push(...norm('embeddings.LayerNorm'))
  for (let i = 0; i < shape.numLayers; i++) {
    const layer = `encoder.layer.${i}`
    specs.push(
      ...linear(`${layer}.attention.self.query`, h, h),
      ...linear(`${layer}.attention.self.key`, h, h),
      ...linear(`${layer}.attention.self.value`, h, h),
      ...linear(`${layer}.attention.output.dense`, h, h),
      ...norm(`${layer}.attention.output.LayerNorm`),
      ...linear(`${layer}.intermediate.dense`, h, ff),
      ...linear(`${layer}.output.dense`, ff, h),
      ...norm(`${layer}.output.LayerNorm`),
    )
  }
  if (shape.numLabels) specs.push(...linear('pooler.dense', h, h), ...linear('classifier', h, shape.numLabels))
  return specs
}

export function buildBertModel(shape: BertShape, weights: onnxProto.onnx.ITensorProto[]): Uint8Array {
  const g = new GraphBuilder()
  for (const weight of weights) g.initializer(weight)

  let hidden = embeddings(g, shape)
  const bias = attentionBias(g)
  for (let i = 0; i < shape.numLayers; i++) hidden = encoderLayer(g, shape, i, hidden, bias)

  const inputs = [
    valueInfo('input_ids', DataType.INT64, ['batch_size', 'sequence_length']),
    valueInfo('attention_mask', DataType.INT64, ['batch_size', 'sequence_length']),
  ]
  if (shape.typeVocabSize > 0)
    inputs.push(valueInfo('token_type_ids', DataType.INT64, ['batch_size', 'sequence_length']))
  let outputs: ReturnType<typeof valueInfo>[]
  if (shape.numLabels) {
    const first = g.op('Gather', [hidden, g.int64([0], [])], { axis: 1 })
    const pooled = g.op('Tanh', [linear(g, first, 'pooler.dense')])
    g.op('Identity', [linear(g, pooled, 'classifier')], {}, 'logits')
    outputs = [valueInfo('logits', DataType.FLOAT, ['batch_size', shape.numLabels])]
  } else {
    g.op('Identity', [hidden], {}, 'last_hidden_state')
    outputs = [valueInfo('last_hidden_state', DataType.FLOAT, ['batch_size', 'sequence_length', shape.hiddenSize])]
  }
  return encodeModel({
    graphName: 'bert',
    builder: g,
    inputs,
    outputs,
    opset: OPSET,
    producer: 'switchyard-model-builder',
  })
}

/** word + position (+ token type) embeddings, then LayerNorm. */
function embeddings(g: GraphBuilder, shape: BertShape): string {
  const seqLen = g.op('Gather', [g.op('Shape', ['input_ids']), g.int64([1], [])], { axis: 0 })
  const positions = g.op('Range', [g.int64([0], []), seqLen, g.int64([1], [])])
  let sum = g.op('Add', [
    g.op('Gather', ['embeddings.word_embeddings.weight', 'input_ids'], { axis: 0 }),
    g.op('Gather', ['embeddings.position_embeddings.weight', positions], { axis: 0 }),
  ])
  if (shape.typeVocabSize > 0)
    sum = g.op('Add', [sum, g.op('Gather', ['embeddings.token_type_embeddings.weight', 'token_type_ids'], { axis: 0 })])
  return layerNorm(g, sum, 'embeddings.LayerNorm', shape.layerNormEps)
}

/** [batch, 1, 1, seq]: 0 where attention_mask is 1, MASKED where it is 0 (padding). */
function attentionBias(g: GraphBuilder): string {
  const attended = g.op('Unsqueeze', [g.op('Cast', ['attention_mask'], { to: DataType.BOOL }), g.int64([1, 2])])
  return g.op('Where', [attended, g.float([0], []), g.float([MASKED], [])])
}

/** Written out (ORT fuses it into LayerNormalization); opset 14 has no LayerNormalization op. */
function layerNorm(g: GraphBuilder, x: string, name: string, eps: number): string {
  const centred = g.op('Sub', [x, g.op('ReduceMean', [x], { axes: [-1], keepdims: 1 })])
  const variance = g.op('ReduceMean', [g.op('Mul', [centred, centred])], { axes: [-1], keepdims: 1 })
  const normed = g.op('Div', [centred, g.op('Sqrt', [g.op('Add', [variance, g.float([eps], [])])])])
  return g.op('Add', [g.op('Mul', [normed, `${name}.weight`]), `${name}.bias`])
}

function linear(g: GraphBuilder, x: string, name: string): string {
  return g.op('Add', [g.op('MatMul', [x, `${name}.weight_T`]), `${name}.bias`])
}

/** [batch, seq, heads*head_dim] -> [batch, heads, seq, head_dim] */
function splitHeads(g: GraphBuilder, x: string, heads: number, headDim: number): string {
  return g.op('Transpose', [g.op('Reshape', [x, g.int64([0, 0, heads, headDim])])], { perm: [0, 2, 1, 3] })
}

function selfAttention(g: GraphBuilder, shape: BertShape, layer: number, x: string, bias: string): string {
  const { numHeads, hiddenSize } = shape
  const headDim = hiddenSize / numHeads
  const prefix = `encoder.layer.${layer}.attention`
  const heads = (name: string) => splitHeads(g, linear(g, x, `${prefix}.self.${name}`), numHeads, headDim)
  const keyT = g.op('Transpose', [heads('key')], { perm: [0, 1, 3, 2] })
  const scores = g.op('Mul', [g.op('MatMul', [heads('query'), keyT]), g.float([1 / Math.sqrt(headDim)], [])])
  const probs = g.op('Softmax', [g.op('Add', [scores, bias])], { axis: -1 })
  const context = g.op('MatMul', [probs, heads('value')])
  const merged = g.op('Reshape', [g.op('Transpose', [context], { perm: [0, 2, 1, 3] }), g.int64([0, 0, hiddenSize])])
  return linear(g, merged, `${prefix}.output.dense`)
}

/** GELU(x) = 0.5 x (1 + erf(x / sqrt 2)). */
function gelu(g: GraphBuilder, x: string): string {
  const erf = g.op('Erf', [g.op('Mul', [x, g.float([Math.SQRT1_2], [])])])
  return g.op('Mul', [g.op('Mul', [x, g.float([0.5], [])]), g.op('Add', [erf, g.float([1], [])])])
}

function encoderLayer(g: GraphBuilder, shape: BertShape, layer: number, hidden: string, bias: string): string {
  const prefix = `encoder.layer.${layer}`
  const attended = layerNorm(
    g,
    g.op('Add', [hidden, selfAttention(g, shape, layer, hidden, bias)]),
    `${prefix}.attention.output.LayerNorm`,
    shape.layerNormEps,
  )
  const inner = gelu(g, linear(g, attended, `${prefix}.intermediate.dense`))
  return layerNorm(
    g,
    g.op('Add', [attended, linear(g, inner, `${prefix}.output.dense`)]),
    `${prefix}.output.LayerNorm`,
    shape.layerNormEps,
  )
}
