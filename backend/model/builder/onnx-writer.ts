// Small helpers for writing ONNX graphs by hand with onnx-proto (protobufjs).
import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
type TensorProto = onnxProto.onnx.ITensorProto
type NodeProto = onnxProto.onnx.INodeProto

export const DataType = onnx.TensorProto.DataType

/** A dimension is either fixed or a symbolic name such as "batch_size". */
export type Dim = number | string

/** Integer and integer-list attributes: all this builder's ops need. */
export type Attributes = Record<string, number | number[]>

/** ONNX stores tensor bytes little-endian; x86 and ARM typed arrays already are. */
export function bytesOf(data: Float32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
}

export function floatTensor(name: string, dims: number[], data: Float32Array): TensorProto {
  return { name, dims, dataType: DataType.FLOAT, rawData: bytesOf(data) }
}

/** A float tensor whose bytes live in a side file next to model.onnx. */
export function externalFloatTensor(
  name: string,
  dims: number[],
  location: string,
  offset: number,
  length: number,
): TensorProto {
  return {
    name,
    dims,
    dataType: DataType.FLOAT,
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      { key: 'length', value: String(length) },
    ],
  }
}

export function valueInfo(name: string, elemType: number, dims: Dim[]): onnxProto.onnx.IValueInfoProto {
  const dim = dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }))
  return { name, type: { tensorType: { elemType, shape: { dim } } } }
}

/** Collects nodes and initializers; each op call returns its output name(s). */
export class GraphBuilder {
  readonly nodes: NodeProto[] = []
  readonly initializers: TensorProto[] = []
  private readonly constants = new Map<string, string>()
  private count = 0

  /** Adds a node with a single output and returns that output's name. */
  op(opType: string, inputs: string[], attributes: Attributes = {}, output?: string): string {
    return this.opMulti(opType, inputs, 1, attributes, output ? [output] : undefined)[0]
  }

  opMulti(opType: string, inputs: string[], outputCount: number, attributes: Attributes = {}, outputs?: string[]): string[] {
    const name = `/${opType}_${this.count++}`
    const names = outputs ?? Array.from({ length: outputCount }, (_, i) => `${name}_out${i}`)
    const attribute = Object.entries(attributes).map(([key, value]) =>
      Array.isArray(value)
        ? { name: key, type: onnx.AttributeProto.AttributeType.INTS, ints: value }
        : { name: key, type: onnx.AttributeProto.AttributeType.INT, i: value },
    )
    this.nodes.push({ name, opType, input: inputs, output: names, attribute })
    return names
  }

  initializer(tensor: TensorProto): string {
    this.initializers.push(tensor)
    return tensor.name!
  }

  /** int64 constant, shared between all uses of the same value. Scalars when dims is []. */
  int64(values: number[], dims: number[] = [values.length]): string {
    return this.constant('i64', values, dims, () => ({
      dims,
      dataType: DataType.INT64,
      rawData: bytesOf(BigInt64Array.from(values, BigInt)),
    }))
  }

  float(values: number[], dims: number[] = [values.length]): string {
    return this.constant('f32', values, dims, () => ({
      dims,
      dataType: DataType.FLOAT,
      rawData: bytesOf(Float32Array.from(values)),
    }))
  }

  private constant(kind: string, values: number[], dims: number[], make: () => TensorProto): string {
    const key = `${kind}:${dims.join('x')}:${values.join(',')}`
    let name = this.constants.get(key)
    if (!name) {
      name = `const_${kind}_${this.constants.size}`
      this.constants.set(key, name)
      this.initializer({ ...make(), name })
    }
    return name
  }
}

export interface ModelParts {
  graphName: string
  builder: GraphBuilder
  inputs: onnxProto.onnx.IValueInfoProto[]
  outputs: onnxProto.onnx.IValueInfoProto[]
  opset: number
  producer: string
}

export function encodeModel({ graphName, builder, inputs, outputs, opset, producer }: ModelParts): Uint8Array {
  return onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    producerName: producer,
    graph: {
      name: graphName,
      node: builder.nodes,
      initializer: builder.initializers,
      input: inputs,
      output: outputs,
    },
  }).finish()
}
