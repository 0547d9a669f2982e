// Small helpers for writing ONNX graphs by hand with onnx-proto (protobufjs).
import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
type TensorProto = onnxProto.onnx.ITensorProto
type NodeProto = onnxProto.onnx.INodeProto

export const DataType = onnx.TensorProto.DataType

export const MS_DOMAIN = 'com.microsoft'

/** float32 → IEEE half (round to nearest even), as raw 16-bit words. */
export function toHalf(data: Float32Array): Uint16Array {
  const out = new Uint16Array(data.length)
  const f = new Float32Array(1)
  const u = new Uint32Array(f.buffer)
  for (let i = 0; i < data.length; i++) {
    f[0] = data[i]
    const x = u[0]
    const sign = (x >>> 16) & 0x8000
    const exp = (x >>> 23) & 0xff
    let mant = x & 0x7fffff
    if (exp === 0xff) {
      out[i] = sign | 0x7c00 | (mant ? 0x200 : 0)
      continue
    }
    const e = exp - 127 + 15
    if (e >= 31) {
      out[i] = sign | 0x7c00
      continue
    }
    if (e <= 0) {
      if (e < -10) {
        out[i] = sign
        continue
      }
      mant |= 0x800000
      const shift = 14 - e
      let half = mant >>> shift
      const rest = mant & ((1 << shift) - 1)
      const mid = 1 << (shift - 1)
      if (rest > mid || (rest === mid && half & 1)) half++
      out[i] = sign | half
      continue
    }
    let half = (e << 10) | (mant >>> 13)
    const rest = mant & 0x1fff
    if (rest > 0x1000 || (rest === 0x1000 && half & 1)) half++
    out[i] = sign | half
  }
  return out
}

/** A dimension is either fixed or a symbolic name such as "batch_size". */
export type Dim = number | string

/** Integer, float, integer-list and subgraph attributes: all this builder's ops need. */
export type Attributes = Record<string, number | number[] | { float: number } | { graph: onnxProto.onnx.IGraphProto }>

/** ONNX stores tensor bytes little-endian; x86 and ARM typed arrays already are. */
export function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
}

/** A weight as raw bytes of one element type, before it is placed inline or in a side file. */
export interface RawTensor {
  name: string
  dims: number[]
  dataType: number
  bytes: Uint8Array
}

export function inlineTensor({ name, dims, dataType, bytes }: RawTensor): TensorProto {
  return { name, dims, dataType, rawData: bytes }
}

/** A tensor whose bytes live in a side file next to the .onnx file. */
export function externalTensor(
  name: string,
  dims: number[],
  dataType: number,
  location: string,
  offset: number,
  length: number,
): TensorProto {
  return {
    name,
    dims,
    dataType,
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

  /**
   * `floatType`: element type of activations and float constants (FLOAT or FLOAT16). `prefix`
   * keeps node and constant names of a subgraph apart from its siblings'.
   */
  constructor(
    readonly floatType: number = DataType.FLOAT,
    private readonly prefix = '',
  ) {}

  /** Adds a node with a single output and returns that output's name. */
  op(opType: string, inputs: string[], attributes: Attributes = {}, output?: string): string {
    return this.opMulti(opType, inputs, 1, attributes, output ? [output] : undefined)[0]
  }

  opMulti(
    opType: string,
    inputs: string[],
    outputCount: number,
    attributes: Attributes = {},
    outputs?: string[],
    domain?: string,
  ): string[] {
    const name = `${this.prefix}/${opType}_${this.count++}`
    const names = outputs ?? Array.from({ length: outputCount }, (_, i) => `${name}_out${i}`)
    const attribute = Object.entries(attributes).map(([key, value]) =>
      Array.isArray(value)
        ? { name: key, type: onnx.AttributeProto.AttributeType.INTS, ints: value }
        : typeof value === 'object'
          ? 'graph' in value
            ? { name: key, type: onnx.AttributeProto.AttributeType.GRAPH, g: value.graph }
            : { name: key, type: onnx.AttributeProto.AttributeType.FLOAT, f: value.float }
          : { name: key, type: onnx.AttributeProto.AttributeType.INT, i: value },
    )
    this.nodes.push({ name, opType, input: inputs, output: names, attribute, ...(domain && { domain }) })
    return names
  }

  /** A com.microsoft contrib op (MatMulNBits, GroupQueryAttention). */
  msOp(
    opType: string,
    inputs: string[],
    outputCount: number,
    attributes: Attributes = {},
    outputs?: string[],
  ): string[] {
    return this.opMulti(opType, inputs, outputCount, attributes, outputs, MS_DOMAIN)
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

  /** A constant of the graph's float type (float32, or float16 in fp16 graphs). */
  float(values: number[], dims: number[] = [values.length]): string {
    const half = this.floatType === DataType.FLOAT16
    return this.constant(half ? 'f16' : 'f32', values, dims, () => ({
      dims,
      dataType: this.floatType,
      rawData: bytesOf(half ? toHalf(Float32Array.from(values)) : Float32Array.from(values)),
    }))
  }

  private constant(kind: string, values: number[], dims: number[], make: () => TensorProto): string {
    const key = `${kind}:${dims.join('x')}:${values.join(',')}`
    let name = this.constants.get(key)
    if (!name) {
      name = `${this.prefix}const_${kind}_${this.constants.size}`
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
  const usesMs = builder.nodes.some((n) => n.domain === MS_DOMAIN)
  return onnx.ModelProto.encode({
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }, ...(usesMs ? [{ domain: MS_DOMAIN, version: 1 }] : [])],
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
