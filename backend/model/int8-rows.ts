import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
const DataType = onnx.TensorProto.DataType
type Node = onnxProto.onnx.INodeProto

/**
 * Makes onnxruntime's dynamic quantization (Optimum's model_quantized / model_int8 /
 * model_uint8 files) quantize activations per row, so rows of a batch stop influencing each
 * other.
 *
 * Those files compute x @ W as DynamicQuantizeLinear(x) → MatMulInteger → Cast → Mul(x_scale ×
 * W_scale). DynamicQuantizeLinear takes one scale and zero point for the whole activation
 * tensor, so a sequence's logits depend on which other sequences share its batch and on whether
 * its tokens were prefilled together or decoded one at a time: batched ≠ alone, and a resumed
 * stream diverges. Each DynamicQuantizeLinear is replaced by standard ops computing, per row
 * (last axis), scale = max|x| / 127 and q = clip(round(x / scale) + 128, 0, 255) as uint8 with
 * the scalar zero point 128, under the same output names. MatMulInteger's integer products are
 * exact and the rest is elementwise, so each row's result no longer depends on the others;
 * weights and MatMulInteger (onnxruntime's fast u8 kernels) are untouched.
 *
 * Graphs with subgraphs (merged decoders' If branches) are left alone. Returns how many
 * DynamicQuantizeLinear nodes were replaced; mutates `model`.
 */
export function quantizeActivationsPerRow(model: onnxProto.onnx.ModelProto): number {
  const graph = model.graph
  if (!graph?.node || graph.node.some((node) => ['If', 'Loop', 'Scan'].includes(node.opType ?? ''))) return 0
  if (!graph.node.some((node) => node.opType === 'DynamicQuantizeLinear')) return 0
  const opset = Number(model.opsetImport?.find((o) => !o.domain)?.version ?? 0)

  const constants: onnxProto.onnx.ITensorProto[] = []
  const constant = (name: string, dataType: number, bytes: Uint8Array) => {
    constants.push({ name, dims: [], dataType, rawData: bytes })
    return name
  }
  const float = (name: string, value: number) =>
    constant(`switchyard_rows_${name}`, DataType.FLOAT, new Uint8Array(Float32Array.of(value).buffer))
  const c = {
    levels: float('127', 127),
    tiny: float('tiny', 1e-30),
    offset: float('128', 128),
    low: float('0', 0),
    high: float('255', 255),
    zero: constant('switchyard_rows_zero_point', DataType.UINT8, Uint8Array.of(128)),
  }
  // ReduceMax takes axes as a 1-D input from opset 18, as an attribute before.
  const axes =
    opset >= 18 ? constant('switchyard_rows_axes', DataType.INT64, new Uint8Array(BigInt64Array.of(-1n).buffer)) : ''
  if (axes) constants[constants.length - 1].dims = [1]

  let replaced = 0
  graph.node = graph.node.flatMap((node) => {
    if (node.opType !== 'DynamicQuantizeLinear' || node.output?.length !== 3) return [node]
    replaced++
    const x = node.input![0]
    const [q, scale, zeroPoint] = node.output
    const name = (step: string) => `${node.name || x}_rows_${step}`
    const op = (
      opType: string,
      input: string[],
      output: string,
      attribute: onnxProto.onnx.IAttributeProto[] = [],
    ): Node => ({ name: `${output}_node`, opType, input, output: [output], attribute })
    const int = (key: string, i: number) => ({ name: key, type: onnx.AttributeProto.AttributeType.INT, i })
    const reduce =
      opset >= 18
        ? op('ReduceMax', [name('abs'), axes], name('absmax'), [int('keepdims', 1)])
        : op('ReduceMax', [name('abs')], name('absmax'), [
            int('keepdims', 1),
            { name: 'axes', type: onnx.AttributeProto.AttributeType.INTS, ints: [-1] },
          ])
    return [
      op('Abs', [x], name('abs')),
      reduce,
      op('Max', [name('absmax'), c.tiny], name('safe')),
      op('Div', [name('safe'), c.levels], scale),
      op('Div', [x, scale], name('scaled')),
      op('Round', [name('scaled')], name('rounded')),
      op('Add', [name('rounded'), c.offset], name('shifted')),
      op('Clip', [name('shifted'), c.low, c.high], name('clipped')),
      op('Cast', [name('clipped')], q, [int('to', DataType.UINT8)]),
      op('Identity', [c.zero], zeroPoint),
    ]
  })
  if (replaced === 0) return 0
  graph.initializer = [...(graph.initializer ?? []), ...constants]
  return replaced
}
