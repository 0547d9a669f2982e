import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
type Graph = onnxProto.onnx.IGraphProto
type Node = onnxProto.onnx.INodeProto

/** The int64 [rows] input added by gatherLogitRows: flat indices into batch × sequence. */
export const LOGIT_ROWS_INPUT = 'switchyard_logit_rows'

/** Ops the LM head is built of: its data input is the final hidden state. */
const HEAD_OPS = new Set(['MatMul', 'MatMulNBits', 'Gemm', 'FusedMatMul', 'MatMulInteger'])
/** Row-wise ops that may follow the head (casts, Gemma's soft-capping, scaling). */
const ROW_WISE_OPS = new Set(['Identity', 'Cast', 'Mul', 'Div', 'Add', 'Sub', 'Tanh'])

/**
 * Makes the LM head run only on the hidden-state rows the caller asks for.
 *
 * Decoders compute `logits` for every position ([batch, seq, vocab]) although sampling needs
 * the last one (and `echo` + `logprobs` a few more). This rewrite flattens the head's input to
 * [batch × seq, hidden] and gathers the rows named by a new input (LOGIT_ROWS_INPUT), so the
 * head and everything after it see [rows, hidden] and `logits` becomes [rows, vocab]. An
 * 8-bit head's DynamicQuantizeLinear is gathered too. Returns false, leaving the graph
 * untouched, when `logits` is not reached that way (merged decoders' If nodes, for example).
 */
export function gatherLogitRows(model: onnxProto.onnx.ModelProto): boolean {
  const graph = model.graph
  if (!graph) return false
  const producer = new Map<string, Node>()
  const consumers = new Map<string, Node[]>()
  for (const node of graph.node ?? []) {
    for (const out of node.output ?? []) producer.set(out, node)
    for (const input of node.input ?? []) consumers.set(input, [...(consumers.get(input) ?? []), node])
  }
  const isConstant = constantTest(graph, producer)
  const dataInput = (node: Node) => {
    const inputs = (node.input ?? []).filter((name) => name !== '' && !isConstant(name))
    return inputs.length === 1 ? inputs[0] : null
  }

  // Walk back from logits over row-wise ops to the head.
  const path: string[] = ['logits']
  let node = producer.get('logits')
  while (node && ROW_WISE_OPS.has(node.opType ?? '')) {
    const next = dataInput(node)
    if (!next) return false
    path.push(next)
    node = producer.get(next)
  }
  if (!node || !HEAD_OPS.has(node.opType ?? '')) return false
  let target = node
  let hidden = dataInput(node)
  if (!hidden) return false
  const quantizer = producer.get(hidden)
  if (quantizer?.opType === 'DynamicQuantizeLinear') {
    // Only gather there if that quantizer feeds the head alone.
    if (quantizer.output!.some((out) => (consumers.get(out) ?? []).some((c) => c !== node))) return false
    path.push(...quantizer.output!)
    target = quantizer
    hidden = quantizer.input![0]
  }
  path.push(hidden)

  const flat = `${LOGIT_ROWS_INPUT}/flat`
  const gathered = `${LOGIT_ROWS_INPUT}/gathered`
  const added = [
    onnx.NodeProto.create({ name: flat, opType: 'Flatten', input: [hidden], output: [flat], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: -1 }] }),
    onnx.NodeProto.create({ name: gathered, opType: 'Gather', input: [flat, LOGIT_ROWS_INPUT], output: [gathered], attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }] }),
  ]
  target.input = target.input!.map((name) => (name === hidden ? gathered : name))
  // Nodes stay topologically sorted: the new ones go right before the one they feed.
  graph.node!.splice(graph.node!.indexOf(target), 0, ...added)
  graph.input!.push(onnx.ValueInfoProto.create({ name: LOGIT_ROWS_INPUT, type: { tensorType: { elemType: onnx.TensorProto.DataType.INT64, shape: { dim: [{ dimParam: 'logit_rows' }] } } } }))

  // Shapes recorded for the old [batch, seq, ...] tensors on the path no longer hold.
  const stale = new Set(path.slice(0, -1))
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !stale.has(v.name ?? ''))
  const logits = graph.output!.find((o) => o.name === 'logits')!
  const dims = logits.type?.tensorType?.shape?.dim ?? []
  const vocab = dims[dims.length - 1]
  if (logits.type?.tensorType) logits.type.tensorType.shape = { dim: [{ dimParam: 'logit_rows' }, vocab ?? { dimParam: 'vocab_size' }] }
  return true
}

/** True for tensors computed from initializers and constants only (a tied head's Transpose). */
function constantTest(graph: Graph, producer: Map<string, Node>): (name: string) => boolean {
  const initializers = new Set((graph.initializer ?? []).map((i) => i.name ?? ''))
  const inputs = new Set((graph.input ?? []).map((i) => i.name ?? ''))
  const memo = new Map<string, boolean>()
  const test = (name: string, depth: number): boolean => {
    if (initializers.has(name)) return true
    if (inputs.has(name) || depth > 8) return false
    const cached = memo.get(name)
    if (cached !== undefined) return cached
    const node = producer.get(name)
    const constant = !!node && (node.opType === 'Constant' || (node.input ?? []).every((i) => i === '' || test(i, depth + 1)))
    memo.set(name, constant)
    return constant
  }
  return (name) => test(name, 0)
}
