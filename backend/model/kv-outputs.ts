import onnxProto from 'onnx-proto'

const { onnx } = onnxProto

/**
 * Exposes each layer's new key/value rows as extra graph outputs.
 *
 * Decoder exports build `present.N.key` as Concat(past_key_values.N.key, new rows). Fetching
 * `present.*` makes onnxruntime copy the whole cache back to JavaScript every step; fetching the
 * Concat's second input moves only the new rows. Returns the rewritten model and, per present
 * output, the name of its new-rows output; null when the graph is not of that shape (the runner
 * then falls back to fetching `present.*`).
 */
export function exposeNewKvRows(
  model: onnxProto.onnx.ModelProto,
): { model: Uint8Array; newRows: Map<string, string>; external: string[] } | null {
  const graph = model.graph
  if (!graph) return null
  const producer = new Map<string, onnxProto.onnx.INodeProto>()
  for (const node of graph.node ?? []) for (const out of node.output ?? []) producer.set(out, node)

  const newRows = new Map<string, string>()
  const added: onnxProto.onnx.IValueInfoProto[] = []
  for (const output of graph.output ?? []) {
    const name = output.name ?? ''
    const match = /^present\.(\d+)\.(key|value)$/.exec(name)
    if (!match) continue
    const pastName = `past_key_values.${match[1]}.${match[2]}`
    let node = producer.get(name)
    while (node?.opType === 'Identity') node = producer.get(node.input![0])
    const axis = node?.attribute?.find((a) => a.name === 'axis')?.i
    const axisValue = axis === undefined || axis === null ? undefined : Number(axis)
    if (
      node?.opType !== 'Concat' ||
      node.input?.length !== 2 ||
      node.input[0] !== pastName ||
      (axisValue !== 2 && axisValue !== -2)
    ) {
      return null
    }
    newRows.set(name, node.input[1])
    // Same type as present.*, but its own name for the sequence dim (it is not total_sequence_length).
    const dims = output.type?.tensorType?.shape?.dim ?? []
    const shape =
      dims.length === 4 ? { dim: [dims[0], dims[1], { dimParam: 'new_sequence_length' }, dims[3]] } : undefined
    added.push({ name: node.input[1], type: { tensorType: { elemType: output.type?.tensorType?.elemType, shape } } })
  }
  if (newRows.size === 0) return null
  graph.output!.push(...added.map((v) => onnx.ValueInfoProto.create(v)))

  return { model: onnx.ModelProto.encode(model).finish(), newRows, external: externalFiles(model) }
}

/** The side files holding the model's external weights. */
export function externalFiles(model: onnxProto.onnx.ModelProto): string[] {
  const external = new Set<string>()
  for (const init of model.graph?.initializer ?? []) {
    if (init.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL) {
      const location = init.externalData?.find((e) => e.key === 'location')?.value
      if (location) external.add(location)
    }
  }
  return [...external]
}

export function encodeModel(model: onnxProto.onnx.ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish()
}

export function decodeModel(bytes: Uint8Array): onnxProto.onnx.ModelProto {
  return onnx.ModelProto.decode(bytes)
}
