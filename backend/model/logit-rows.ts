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
 * head and everything after it see [1, rows, hidden] and `logits` becomes [1, rows, vocab].
 * Returns false, leaving the graph
 * untouched, when `logits` is not reached that way (merged decoders' If nodes, for example).
 */
export function gatherLogitRows(model: onnxProto.onnx.ModelProto, logitsName = 'logits'): boolean {
  const graph = model.graph
  if (!graph) return false
  const producer = new Map<string, Node>()
  for (const node of graph.node ?? []) {
    for (const out of node.output ?? []) producer.set(out, node)
  }
  const isConstant = constantTest(graph, producer)
  const dataInputs = (node: Node) => (node.input ?? []).filter((name) => name !== '' && !isConstant(name))

  // Walk back from logits over row-wise ops to the head. An 8-bit head's output is scaled by
  // its activation scale (a second, non-constant input), so every branch is tried.
  const path: string[] = []
  const findHead = (tensor: string, depth: number): Node | null => {
    const node = producer.get(tensor)
    if (!node || depth > 8) return null
    if (HEAD_OPS.has(node.opType ?? '')) {
      path.push(tensor)
      return node
    }
    if (!ROW_WISE_OPS.has(node.opType ?? '')) return null
    for (const input of dataInputs(node)) {
      const head = findHead(input, depth + 1)
      if (head) {
        path.push(tensor)
        return head
      }
    }
    return null
  }
  const head = findHead(logitsName, 0)
  if (!head) return false
  // The activations are input 0; MatMulInteger's zero point (input 2) comes with them.
  const hidden = head.input![0]
  const others = dataInputs(head).filter(
    (name) => name !== hidden && !(head.opType === 'MatMulInteger' && name === head.input![2]),
  )
  if (isConstant(hidden) || others.length > 0) return false
  // An 8-bit head quantizes its input with DynamicQuantizeLinear, which int8-rows.ts turns into
  // per-row ops; gathering in front of that fails in onnxruntime's MatMulIntegerToFloat fusion
  // (broadcast error on the untied head), so such heads keep computing every position.
  if (producer.get(hidden)?.opType === 'DynamicQuantizeLinear') return false
  path.push(hidden)

  const flat = `${LOGIT_ROWS_INPUT}/flat`
  const rows = `${LOGIT_ROWS_INPUT}/rows`
  const gathered = `${LOGIT_ROWS_INPUT}/gathered`
  // Back to rank 3 ([1, rows, hidden]) so the head and what follows see the layout they were
  // exported for (8-bit heads' per-row scales and onnxruntime's fusions broadcast on it).
  const opset = Number(model.opsetImport?.find((o) => !o.domain)?.version ?? 13)
  const axes = `${LOGIT_ROWS_INPUT}/axes`
  if (opset >= 13)
    graph.initializer!.push(
      onnx.TensorProto.create({ name: axes, dims: [1], dataType: onnx.TensorProto.DataType.INT64, int64Data: [0] }),
    )
  const int = (name: string, i: number) => ({ name, type: onnx.AttributeProto.AttributeType.INT, i })
  const added = [
    onnx.NodeProto.create({
      name: flat,
      opType: 'Flatten',
      input: [hidden],
      output: [flat],
      attribute: [int('axis', -1)],
    }),
    onnx.NodeProto.create({
      name: rows,
      opType: 'Gather',
      input: [flat, LOGIT_ROWS_INPUT],
      output: [rows],
      attribute: [int('axis', 0)],
    }),
    opset >= 13
      ? onnx.NodeProto.create({ name: gathered, opType: 'Unsqueeze', input: [rows, axes], output: [gathered] })
      : onnx.NodeProto.create({
          name: gathered,
          opType: 'Unsqueeze',
          input: [rows],
          output: [gathered],
          attribute: [{ name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [0] }],
        }),
  ]
  head.input = head.input!.map((name) => (name === hidden ? gathered : name))
  // Nodes stay topologically sorted: the new ones go right before the one they feed.
  graph.node!.splice(graph.node!.indexOf(head), 0, ...added)
  graph.input!.push(
    onnx.ValueInfoProto.create({
      name: LOGIT_ROWS_INPUT,
      type: { tensorType: { elemType: onnx.TensorProto.DataType.INT64, shape: { dim: [{ dimParam: 'logit_rows' }] } } },
    }),
  )

  // Shapes recorded for the old [batch, seq, ...] tensors on the path no longer hold.
  const stale = new Set(path.slice(0, -1))
  graph.valueInfo = (graph.valueInfo ?? []).filter((v) => !stale.has(v.name ?? ''))
  const logits = graph.output!.find((o) => o.name === logitsName)!
  const dims = logits.type?.tensorType?.shape?.dim ?? []
  const vocab = dims[dims.length - 1]
  if (logits.type?.tensorType)
    logits.type.tensorType.shape = {
      dim: [{ dimValue: 1 }, { dimParam: 'logit_rows' }, vocab ?? { dimParam: 'vocab_size' }],
    }
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
    const constant =
      !!node && (node.opType === 'Constant' || (node.input ?? []).every((i) => i === '' || test(i, depth + 1)))
    memo.set(name, constant)
    return constant
  }
  return (name) => test(name, 0)
}
