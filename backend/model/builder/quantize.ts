// Weight formats of the published ONNX variants, written from float32 weights:
// - fp16: every float tensor in half precision (Optimum's model_fp16.onnx).
// - q4: 4-bit MatMulNBits (com.microsoft), symmetric blocks of 32 along K with one float scale
//   each and the default zero point 8: what onnxruntime's MatMul4BitsQuantizer writes for
//   transformers.js' model_q4.onnx and what the onnxruntime-genai model builder writes for int4.
// - q4f16: the same in a half-precision graph (fp16 scales, activations, KV and logits), as
//   transformers.js' model_q4f16.onnx.
// - int8 / uint8: onnxruntime's dynamic quantization (Optimum `quantize`, transformers.js'
//   model_int8 / model_uint8 / model_quantized): weights stored as 8-bit with a scale and zero
//   point, activations quantized at run time by DynamicQuantizeLinear, products by MatMulInteger.
import { bytesOf, DataType, type GraphBuilder, type RawTensor, toHalf } from './onnx-writer.ts'

export type WeightFormat = 'fp32' | 'fp16' | 'q4' | 'q4f16' | 'int8' | 'uint8'

export const WEIGHT_FORMATS: readonly WeightFormat[] = ['fp32', 'fp16', 'q4', 'q4f16', 'int8', 'uint8']

/** Formats whose activations, KV cache and logits are half precision. */
export const isHalf = (format: WeightFormat) => format === 'fp16' || format === 'q4f16'

export const Q4_BLOCK_SIZE = 32

/**
 * MatMulNBits accuracy_level: 4 lets the CPU kernel quantize activations to int8 per block (what
 * the genai model builder writes for CPU int4 models); 0 (onnxruntime's MatMul4BitsQuantizer
 * default, so transformers.js' q4 files) keeps float activations.
 */
export type Q4AccuracyLevel = 0 | 4

/** How projections are stored: the weight format, and for q4 the accuracy level. */
export interface Quantization {
  format: WeightFormat
  q4AccuracyLevel: Q4AccuracyLevel
}

/** A float tensor (embedding, norm weight) in the graph's float type. */
export function floatWeight(name: string, dims: number[], data: Float32Array, format: WeightFormat): RawTensor {
  return isHalf(format)
    ? { name, dims, dataType: DataType.FLOAT16, bytes: bytesOf(toHalf(data)) }
    : { name, dims, dataType: DataType.FLOAT, bytes: bytesOf(data) }
}

/** The tensors that hold projection `prefix` ([K, N] row-major weights) in `format`. */
export function projectionWeights(
  prefix: string,
  k: number,
  n: number,
  data: Float32Array,
  format: WeightFormat,
): RawTensor[] {
  switch (format) {
    case 'fp32':
    case 'fp16':
      return [floatWeight(`${prefix}.weight_T`, [k, n], data, format)]
    case 'q4':
    case 'q4f16':
      return quantize4(prefix, k, n, data, format === 'q4f16')
    case 'int8':
    case 'uint8':
      return quantize8(prefix, k, n, data, format === 'uint8')
  }
}

/** Emits x @ W for projection `prefix` in the graph; returns the output name. */
export function projection(
  g: GraphBuilder,
  x: string,
  prefix: string,
  k: number,
  n: number,
  { format, q4AccuracyLevel }: Quantization,
): string {
  switch (format) {
    case 'fp32':
    case 'fp16':
      return g.op('MatMul', [x, `${prefix}.weight_T`])
    case 'q4':
    case 'q4f16':
      return g.msOp('MatMulNBits', [x, `${prefix}.weight_Q4`, `${prefix}.weight_scales`], 1, {
        K: k,
        N: n,
        bits: 4,
        block_size: Q4_BLOCK_SIZE,
        accuracy_level: q4AccuracyLevel,
      })[0]
    case 'int8':
    case 'uint8': {
      const [xq, xScale, xZero] = g.opMulti('DynamicQuantizeLinear', [x], 3)
      const product = g.op('MatMulInteger', [xq, `${prefix}.weight_quantized`, xZero, `${prefix}.weight_zero_point`])
      const scale = g.op('Mul', [xScale, `${prefix}.weight_scale`])
      return g.op('Mul', [g.op('Cast', [product], { to: DataType.FLOAT }), scale])
    }
  }
}

/** B as [N, K/32, 16] bytes (two 4-bit values per byte, low nibble first) and scales [N * K/32]. */
function quantize4(prefix: string, k: number, n: number, data: Float32Array, halfScales: boolean): RawTensor[] {
  const blocks = Math.ceil(k / Q4_BLOCK_SIZE)
  const blob = Q4_BLOCK_SIZE / 2
  const packed = new Uint8Array(n * blocks * blob)
  const scales = new Float32Array(n * blocks)
  // Block-major: the 32 rows of one block stay in cache while every column reads them.
  for (let b = 0; b < blocks; b++) {
    for (let col = 0; col < n; col++) {
      const start = b * Q4_BLOCK_SIZE
      const end = Math.min(k, start + Q4_BLOCK_SIZE)
      let absMax = 0
      for (let r = start; r < end; r++) absMax = Math.max(absMax, Math.abs(data[r * n + col]))
      const scale = absMax / 7 || 1
      scales[col * blocks + b] = scale
      for (let r = start; r < end; r++) {
        const q = Math.min(15, Math.max(0, Math.round(data[r * n + col] / scale) + 8))
        const i = r - start
        const at = (col * blocks + b) * blob + (i >> 1)
        packed[at] |= i & 1 ? q << 4 : q
      }
      // Padding past K keeps the zero point (8), i.e. a zero weight.
      for (let i = end - start; i < Q4_BLOCK_SIZE; i++)
        packed[(col * blocks + b) * blob + (i >> 1)] |= i & 1 ? 8 << 4 : 8
    }
  }
  return [
    { name: `${prefix}.weight_Q4`, dims: [n, blocks, blob], dataType: DataType.UINT8, bytes: packed },
    halfScales
      ? {
          name: `${prefix}.weight_scales`,
          dims: [n * blocks],
          dataType: DataType.FLOAT16,
          bytes: bytesOf(toHalf(scales)),
        }
      : { name: `${prefix}.weight_scales`, dims: [n * blocks], dataType: DataType.FLOAT, bytes: bytesOf(scales) },
  ]
}

/** Per-tensor 8-bit weights: symmetric int8 (zero point 0), or uint8 with zero point 128. */
function quantize8(prefix: string, k: number, n: number, data: Float32Array, unsigned: boolean): RawTensor[] {
  let absMax = 0
  for (let i = 0; i < data.length; i++) absMax = Math.max(absMax, Math.abs(data[i]))
  const scale = absMax / 127 || 1
  const zero = unsigned ? 128 : 0
  const values = unsigned ? new Uint8Array(data.length) : new Int8Array(data.length)
  for (let i = 0; i < data.length; i++) values[i] = Math.min(127, Math.max(-127, Math.round(data[i] / scale))) + zero
  const type = unsigned ? DataType.UINT8 : DataType.INT8
  return [
    { name: `${prefix}.weight_quantized`, dims: [k, n], dataType: type, bytes: bytesOf(values) },
    { name: `${prefix}.weight_scale`, dims: [], dataType: DataType.FLOAT, bytes: bytesOf(Float32Array.of(scale)) },
    {
      name: `${prefix}.weight_zero_point`,
      dims: [],
      dataType: type,
      bytes: unsigned ? Uint8Array.of(zero) : bytesOf(Int8Array.of(0)),
    },
  ]
}
