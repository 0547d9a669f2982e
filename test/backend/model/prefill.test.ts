import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import onnxProto from 'onnx-proto'
import * as ort from 'onnxruntime-node'
import { buildRandomLlama, OPTIMUM_FILE_NAMES } from '../../../backend/model/builder/build-model.ts'
import { loadModelFolder } from '../../../backend/model/folder.ts'
import { decodeModel } from '../../../backend/model/kv-outputs.ts'
import { gatherLogitRows, LOGIT_ROWS_INPUT } from '../../../backend/model/logit-rows.ts'
import { halfToFloat, ModelRunner } from '../../../backend/model/runner.ts'
import { argmax } from '../../../backend/sampling/sampler.ts'
import { STORIES_ONNX } from '../../helpers/paths.ts'

const execution = { device: 'cpu' as const, cudaDeviceId: 0, cpuThreads: 1, graphOptimization: 'all' as const }

/** Logits of every position from the untouched graph, one prompt, empty past. */
async function fullLogits(
  session: ort.InferenceSession,
  ids: number[],
  layers: number,
  heads: number,
  headDim: number,
  float16 = false,
): Promise<ort.Tensor> {
  const n = ids.length
  const feeds: Record<string, ort.Tensor> = {
    input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, n]),
    attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
    position_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map((_, i) => BigInt(i))), [1, n]),
  }
  for (let l = 0; l < layers; l++)
    for (const kind of ['key', 'value'])
      feeds[`past_key_values.${l}.${kind}`] = float16
        ? new ort.Tensor('float16', new Uint16Array(0), [1, heads, 0, headDim])
        : new ort.Tensor('float32', new Float32Array(0), [1, heads, 0, headDim])
  return (await session.run(feeds)).logits
}

const toFloats = (tensor: ort.Tensor) =>
  tensor.type === 'float16' ? Float32Array.from(tensor.data as Uint16Array, halfToFloat) : (tensor.data as Float32Array)

function assertClose(actual: Float32Array, expected: Float32Array, tolerance = 1e-4): void {
  assert.equal(actual.length, expected.length)
  let worst = 0
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]))
  assert.ok(worst < tolerance, `largest difference ${worst}`)
}

/** Greedy ids after prefilling `prompt` in chunks of `chunk` tokens (Infinity: one pass). */
async function greedyChunked(runner: ModelRunner, prompt: number[], chunk: number, steps: number): Promise<number[]> {
  let last: Float32Array
  if (chunk >= prompt.length) {
    ;[last] = await runner.prefill([{ row: runner.cache.addRow(), tokens: prompt }])
  } else {
    const staging = runner.startChunkedPrefill(prompt.length)
    for (let at = 0; at < prompt.length; at += chunk) {
      const part = prompt.slice(at, at + chunk)
      const final = at + chunk >= prompt.length
      last = await runner.prefillChunk(staging, part, final ? [part.length - 1] : [])
    }
    runner.finishChunkedPrefill(staging)
  }
  const out = [argmax(last!)]
  for (let s = 1; s < steps; s++) out.push(argmax(await runner.decode([out[out.length - 1]])))
  runner.cache.removeRow(0)
  return out
}

describe('LM head on sampled positions only (stories260K, Optimum layout)', () => {
  let runner: ModelRunner
  let plain: ort.InferenceSession
  before(async () => {
    runner = await ModelRunner.load(STORIES_ONNX, execution, () => {})
    plain = await ort.InferenceSession.create(STORIES_ONNX, { intraOpNumThreads: 1 })
  })
  after(async () => Promise.all([runner.dispose(), plain.release()]))

  test('the graph is rewritten: logits become [1, rows, vocab] fed by the rows input', () => {
    const model = decodeModel(readFileSync(STORIES_ONNX))
    assert.equal(gatherLogitRows(model), true)
    assert.ok(model.graph!.input!.some((i) => i.name === LOGIT_ROWS_INPUT))
    assert.equal(
      model.graph!.output!.find((o) => o.name === 'logits')!.type!.tensorType!.shape!.dim![1].dimParam,
      'logit_rows',
    )
    assert.equal(runner.gathersLogitRows, true)
  })

  test("prefill returns exactly the asked positions, equal to the full graph's logits there", async () => {
    const prompt = [1, 403, 407, 261, 378, 300, 42]
    const full = toFloats(await fullLogits(plain, prompt, 5, 4, 8))
    const V = 512
    const positions = [0, 3, 6]
    // Batched beside a shorter prompt, so left padding shifts this row's flat indices.
    const [rows, other] = await runner.prefill([
      { row: runner.cache.addRow(), tokens: prompt, logitPositions: positions },
      { row: runner.cache.addRow(), tokens: [1, 9, 10] },
    ])
    assert.equal(rows.length, positions.length * V)
    positions.forEach((p, j) => {
      assertClose(rows.subarray(j * V, (j + 1) * V), full.subarray(p * V, (p + 1) * V))
    })
    assertClose(other, toFloats(await fullLogits(plain, [1, 9, 10], 5, 4, 8)).subarray(2 * V, 3 * V))
    runner.cache.removeRow(1)
    runner.cache.removeRow(0)
  })

  test('a chunk may ask for no logits at all', async () => {
    const staging = runner.startChunkedPrefill(4)
    assert.equal((await runner.prefillChunk(staging, [1, 403], [])).length, 0)
    assert.equal((await runner.prefillChunk(staging, [407, 261], [1])).length, 512)
  })

  test('chunked prefill gives the same greedy ids as one pass (chunks of 1, 3, 7)', async () => {
    const prompt = [1, 403, 407, 261, 378, 29, 350, 300, 42, 9, 17, 261, 378, 403, 88, 12, 300]
    const whole = await greedyChunked(runner, prompt, Infinity, 24)
    for (const chunk of [1, 3, 7])
      assert.deepEqual(await greedyChunked(runner, prompt, chunk, 24), whole, `chunk ${chunk}`)
  })

  test('a chunked prompt joins rows that are already decoding without disturbing them', async () => {
    const a = [1, 403, 407, 261, 378]
    const b = [1, 300, 42, 9, 17, 261, 378, 403, 88]
    const aloneA = await greedyChunked(runner, a, Infinity, 20)
    const aloneB = await greedyChunked(runner, b, Infinity, 10)
    const [first] = await runner.prefill([{ row: runner.cache.addRow(), tokens: a }])
    const outA = [argmax(first)]
    const staging = runner.startChunkedPrefill(b.length)
    const outB: number[] = []
    for (let s = 1; s < 20; s++) {
      if (s <= 3) {
        const part = b.slice((s - 1) * 3, s * 3)
        const logits = await runner.prefillChunk(staging, part, s === 3 ? [2] : [])
        if (s === 3) {
          runner.finishChunkedPrefill(staging)
          outB.push(argmax(logits))
        }
      }
      const next = runner.cache.rows === 2 ? [outA[outA.length - 1], outB[outB.length - 1]] : [outA[outA.length - 1]]
      const logits = await runner.decode(next)
      outA.push(argmax(logits.subarray(0, 512)))
      if (runner.cache.rows === 2 && outB.length < 10) outB.push(argmax(logits.subarray(512, 1024)))
      if (outB.length === 10 && runner.cache.rows === 2) runner.cache.removeRow(1)
    }
    runner.cache.removeRow(0)
    assert.deepEqual(outA, aloneA)
    assert.deepEqual(outB, aloneB)
  })
})

describe("LM head gather on the project builder's graphs", () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'switchyard-prefill-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  const styles = [
    { weights: 'fp32', tied: true },
    { weights: 'fp32', tied: false },
    { weights: 'fp16', tied: true },
    { weights: 'q4', tied: false },
    { weights: 'q4', tied: true },
    { weights: 'uint8', tied: true },
  ] as const
  for (const { weights, tied } of styles) {
    test(`${weights}, ${tied ? 'tied' : 'untied'} head: gathered; last-position logits match the full graph; chunked ids equal`, async () => {
      const folder = join(dir, `${weights}-${tied}`)
      const built = await buildRandomLlama({ dir: folder, preset: 'tiny', seed: 5, weights, tieWordEmbeddings: tied })
      const path = join(folder, 'onnx', OPTIMUM_FILE_NAMES[weights])
      const runner = await ModelRunner.load(path, execution, () => {})
      const plain = await ort.InferenceSession.create(path, { intraOpNumThreads: 1 })
      assert.equal(runner.gathersLogitRows, true, `${built.dir}`)
      const { layers, kvHeads, headDim, vocabSize: V, kvFloat16 } = runner.shape
      const prompt = [1, 5, 9, 20, 3, 7]
      const full = toFloats(await fullLogits(plain, prompt, layers, kvHeads, headDim, kvFloat16))
      const [last] = await runner.prefill([{ row: runner.cache.addRow(), tokens: prompt }])
      // The runner quantizes 8-bit activations per row (int8-rows.ts), the plain graph per
      // tensor: only the other formats can be compared with the untouched graph.
      if (weights !== 'uint8') assertClose(last, full.subarray(5 * V, 6 * V), weights === 'fp32' ? 1e-4 : 1e-2)
      runner.cache.removeRow(0)
      assert.deepEqual(await greedyChunked(runner, prompt, 2, 12), await greedyChunked(runner, prompt, Infinity, 12))
      await Promise.all([runner.dispose(), plain.release()])
    })
  }
})

describe('LM head gather and chunked prefill on GroupQueryAttention graphs (genai style, in-place KV)', () => {
  let dir: string
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'switchyard-prefill-gqa-'))
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  for (const weights of ['fp32', 'fp16'] as const) {
    test(`${weights}: gathered, in place; chunked prefill gives the same greedy ids as one pass`, async () => {
      const folderDir = join(dir, weights)
      await buildRandomLlama({ dir: folderDir, preset: 'tiny', seed: 9, style: 'genai', weights })
      const folder = loadModelFolder(folderDir)
      const runner = await ModelRunner.load(folder.onnxPath, execution, () => {}, {
        io: folder.io,
        expected: folder.expected,
      })
      assert.equal(runner.kvPath, 'in-place')
      assert.equal(runner.gathersLogitRows, true)
      const prompt = [1, 5, 9, 20, 3, 7, 11, 40, 2, 8]
      const whole = await greedyChunked(runner, prompt, Infinity, 12)
      for (const chunk of [3, 4])
        assert.deepEqual(await greedyChunked(runner, prompt, chunk, 12), whole, `chunks of ${chunk}`)
      await runner.dispose()
    })
  }
})

describe('gatherLogitRows fallback and fp16 conversion', () => {
  test('an 8-bit head (DynamicQuantizeLinear + MatMulInteger, untied) is left untouched, and still decodes', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-prefill-int8-'))
    try {
      await buildRandomLlama({ dir, preset: 'tiny', seed: 5, weights: 'int8', tieWordEmbeddings: false })
      const path = join(dir, 'onnx', OPTIMUM_FILE_NAMES.int8)
      assert.equal(gatherLogitRows(decodeModel(readFileSync(path))), false)
      const runner = await ModelRunner.load(path, execution, () => {})
      assert.equal(runner.gathersLogitRows, false)
      const prompt = [1, 5, 9, 20, 3, 7]
      assert.deepEqual(await greedyChunked(runner, prompt, 2, 8), await greedyChunked(runner, prompt, Infinity, 8))
      await runner.dispose()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  test('a merged decoder (logits from an If node) is left untouched', () => {
    const { onnx } = onnxProto
    const model = onnx.ModelProto.create({
      graph: {
        input: [{ name: 'use_cache_branch' }, { name: 'hidden' }],
        output: [{ name: 'logits' }],
        node: [{ opType: 'If', input: ['use_cache_branch'], output: ['logits'] }],
      },
    })
    assert.equal(gatherLogitRows(model), false)
    assert.equal(model.graph!.input!.length, 2)
  })

  test('the half → float table agrees with the definition on every bit pattern', () => {
    const half = new Uint16Array(65536).map((_, i) => i)
    const tensor = new ort.Tensor('float16', half, [1, 65536])
    const runnerLike = Object.create(ModelRunner.prototype) as {
      splitLogits: (t: ort.Tensor, w: number[][]) => Float32Array[]
      shape: { vocabSize: number }
      logitRows: string
    }
    Object.assign(runnerLike, { shape: { vocabSize: 65536 }, logitRows: LOGIT_ROWS_INPUT })
    const [row] = runnerLike.splitLogits(tensor, [[0]])
    for (let h = 0; h < 65536; h++)
      assert.ok(
        Object.is(row[h], Math.fround(halfToFloat(h))) || (Number.isNaN(row[h]) && Number.isNaN(halfToFloat(h))),
        `pattern ${h}`,
      )
  })
})
