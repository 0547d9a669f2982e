import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
const DataType = onnx.TensorProto.DataType

/** What the graph itself says about how it stores weights and computes attention. */
export interface GraphFacts {
  /** Element type of the bulk of the weights: float32, float16, bfloat16, int8, uint8, int4, nf4, fp4. */
  weightType: string
  /** present.N.* come straight out of GroupQueryAttention nodes (model-builder style). */
  groupQueryAttention: boolean
  /** Weights in the initializers; a MatMulNBits matrix counts K × N, not its packed bytes. */
  parameters: number
}

const FLOAT_NAMES: Record<number, string> = {
  [DataType.FLOAT]: 'float32',
  [DataType.FLOAT16]: 'float16',
  [DataType.BFLOAT16]: 'bfloat16',
}

export function readGraphFacts(model: onnxProto.onnx.ModelProto, presentKey: (layer: number) => string): GraphFacts {
  const graph = model.graph
  const nodes = graph ? allNodes(graph) : []
  const initializers = new Map((graph?.initializer ?? []).map((t) => [t.name ?? '', t]))
  const attribute = (node: onnxProto.onnx.INodeProto, name: string) => node.attribute?.find((a) => a.name === name)

  const producer = nodes.find((n) => n.output?.includes(presentKey(0)))
  return {
    weightType: quantizedType(nodes, initializers, attribute) ?? dominantFloatType(graph?.initializer ?? []),
    groupQueryAttention: producer?.opType === 'GroupQueryAttention',
    parameters: countParameters(nodes, graph?.initializer ?? [], attribute),
  }
}

function quantizedType(
  nodes: onnxProto.onnx.INodeProto[],
  initializers: Map<string, onnxProto.onnx.ITensorProto>,
  attribute: (node: onnxProto.onnx.INodeProto, name: string) => onnxProto.onnx.IAttributeProto | undefined,
): string | undefined {
  for (const node of nodes) {
    if (node.opType === 'MatMulNBits') return `int${Number(attribute(node, 'bits')?.i ?? 4)}`
    if (node.opType === 'MatMulBnb4') return Number(attribute(node, 'quant_type')?.i ?? 1) === 1 ? 'nf4' : 'fp4'
    if (node.opType === 'MatMulInteger') {
      const weight = initializers.get(node.input?.[1] ?? '')
      if (weight) return weight.dataType === DataType.INT8 ? 'int8' : 'uint8'
    }
  }
  return undefined
}

function countParameters(
  nodes: onnxProto.onnx.INodeProto[],
  initializers: onnxProto.onnx.ITensorProto[],
  attribute: (node: onnxProto.onnx.INodeProto, name: string) => onnxProto.onnx.IAttributeProto | undefined,
): number {
  const packed = new Map<string, number>()
  for (const node of nodes) {
    // Rotary cos / sin tables are not weights.
    if (node.opType === 'GroupQueryAttention') for (const table of node.input?.slice(7, 9) ?? []) packed.set(table, 0)
    if (node.opType !== 'MatMulNBits') continue
    packed.set(node.input?.[1] ?? '', Number(attribute(node, 'K')?.i ?? 0) * Number(attribute(node, 'N')?.i ?? 0))
    for (const side of node.input?.slice(2) ?? []) packed.set(side, 0) // scales, zero points
  }
  let total = 0
  for (const t of initializers)
    total += packed.get(t.name ?? '') ?? (t.dims ?? []).reduce((n: number, d) => n * Number(d), 1)
  return total
}

/** The float type holding the most weight elements. */
function dominantFloatType(initializers: onnxProto.onnx.ITensorProto[]): string {
  const elements = new Map<number, number>()
  for (const t of initializers) {
    if (!(Number(t.dataType) in FLOAT_NAMES)) continue
    const n = (t.dims ?? []).reduce((a: number, d) => a * Number(d), 1)
    elements.set(Number(t.dataType), (elements.get(Number(t.dataType)) ?? 0) + n)
  }
  const [top] = [...elements].sort((a, b) => b[1] - a[1])
  return top ? FLOAT_NAMES[top[0]] : 'float32'
}

/** The graph's nodes and those of its subgraphs (merged decoders keep their decoder in If branches). */
function allNodes(graph: onnxProto.onnx.IGraphProto): onnxProto.onnx.INodeProto[] {
  return (graph.node ?? []).flatMap((node) => [
    node,
    ...(node.attribute ?? []).flatMap((a) => [...(a.g ? [a.g] : []), ...(a.graphs ?? [])]).flatMap(allNodes),
  ])
}
