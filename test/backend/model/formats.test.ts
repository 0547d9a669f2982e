import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { buildRandomLlama, resolveShape, type BuildOptions } from '../../../backend/model/builder/build-model.ts'
import { countParameters, llamaWeightSpecs } from '../../../backend/model/builder/llama-graph.ts'
import { loadModelFolder } from '../../../backend/model/folder.ts'
import { ModelRunner, type KvPath } from '../../../backend/model/runner.ts'
import { argmax } from '../../../backend/sampling/sampler.ts'

/**
 * Every graph style the builder writes, driven through the real runner: the KV path each takes,
 * the weight and KV types it reports, and that cached decoding, batching and rows leaving and
 * joining give exactly the greedy ids of recomputing each sequence from scratch.
 */
const execution = { device: 'cpu' as const, cudaDeviceId: 0, cpuThreads: 1, graphOptimization: 'all' as const }
const scratch = mkdtempSync(join(tmpdir(), 'switchyard-formats-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

interface Style {
  name: string
  build: Omit<BuildOptions, 'dir'>
  file: string
  weightType: string
  kvFloat16: boolean
  kvPath: KvPath
  /** int8 / uint8: DynamicQuantizeLinear takes one activation scale per tensor, so rows influence each other. */
  rowsIndependent?: false
}

const STYLES: Style[] = [
  { name: 'optimum fp32, untied head', build: { tieWordEmbeddings: false }, file: 'onnx/model.onnx', weightType: 'float32', kvFloat16: false, kvPath: 'new-rows' },
  { name: 'optimum fp16', build: { weights: 'fp16' }, file: 'onnx/model_fp16.onnx', weightType: 'float16', kvFloat16: true, kvPath: 'new-rows' },
  { name: 'optimum q4', build: { weights: 'q4', tieWordEmbeddings: false }, file: 'onnx/model_q4.onnx', weightType: 'int4', kvFloat16: false, kvPath: 'new-rows' },
  { name: 'optimum int8', build: { weights: 'int8' }, file: 'onnx/model_int8.onnx', weightType: 'int8', kvFloat16: false, kvPath: 'new-rows', rowsIndependent: false },
  { name: 'optimum uint8', build: { weights: 'uint8' }, file: 'onnx/model_uint8.onnx', weightType: 'uint8', kvFloat16: false, kvPath: 'new-rows', rowsIndependent: false },
  { name: 'optimum without position_ids (positions from the mask)', build: { positionIds: false }, file: 'onnx/model.onnx', weightType: 'float32', kvFloat16: false, kvPath: 'new-rows' },
  { name: 'optimum, Gemma-style head_dim', build: { size: { headDim: 32 }, modelType: 'gemma' }, file: 'onnx/model.onnx', weightType: 'float32', kvFloat16: false, kvPath: 'new-rows' },
  { name: 'genai fp32 (GroupQueryAttention)', build: { style: 'genai' }, file: 'model.onnx', weightType: 'float32', kvFloat16: false, kvPath: 'in-place' },
  { name: 'genai fp16', build: { style: 'genai', weights: 'fp16' }, file: 'model.onnx', weightType: 'float16', kvFloat16: true, kvPath: 'in-place' },
  { name: 'genai q4, untied head', build: { style: 'genai', weights: 'q4', tieWordEmbeddings: false }, file: 'model.onnx', weightType: 'int4', kvFloat16: false, kvPath: 'in-place' },
  { name: 'genai, Gemma-style head_dim, no config.json', build: { style: 'genai', size: { headDim: 32 }, hfConfig: false }, file: 'model.onnx', weightType: 'float32', kvFloat16: false, kvPath: 'in-place' },
]

const V = 512

async function solo(runner: ModelRunner, prompt: number[], steps: number): Promise<number[]> {
  return (await batch(runner, [prompt], steps))[0]
}

async function batch(runner: ModelRunner, prompts: number[][], steps: number): Promise<number[][]> {
  const first = await runner.prefill(prompts.map((tokens) => ({ row: runner.cache.addRow(), tokens })))
  const out = first.map((logits) => [argmax(logits)])
  for (let s = 1; s < steps; s++) {
    const logits = await runner.decode(out.map((o) => o[o.length - 1]))
    out.forEach((o, r) => o.push(argmax(logits.subarray(r * V, (r + 1) * V))))
  }
  for (let r = runner.cache.rows - 1; r >= 0; r--) runner.cache.removeRow(r)
  return out
}

/** Greedy ids from prefilling the whole sequence again at every step (no KV reuse). */
async function recompute(runner: ModelRunner, prompt: number[], steps: number): Promise<number[]> {
  const sequence = [...prompt]
  for (let s = 0; s < steps; s++) {
    const row = runner.cache.addRow()
    const [logits] = await runner.prefill([{ row, tokens: sequence }])
    runner.cache.removeRow(row)
    sequence.push(argmax(logits))
  }
  return sequence.slice(prompt.length)
}

for (const style of STYLES) {
  describe(`model style: ${style.name}`, () => {
    let runner: ModelRunner
    let dir: string
    before(async () => {
      dir = join(scratch, style.name.replace(/\W+/g, '-'))
      await buildRandomLlama({ dir, preset: 'tiny', seed: 11, ...style.build })
      const folder = loadModelFolder(dir)
      assert.equal(relative(dir, folder.onnxPath), style.file)
      runner = await ModelRunner.load(folder.onnxPath, execution, () => {}, folder)
    })
    after(async () => runner?.dispose())

    test('takes the expected KV path and reports the real weight and KV types', () => {
      assert.equal(runner.kvPath, style.kvPath)
      assert.equal(runner.shape.weightType, style.weightType)
      assert.equal(runner.shape.kvFloat16, style.kvFloat16)
      assert.equal(runner.shape.headDim, style.build.size?.headDim ?? 16)
      assert.equal(runner.shape.hasPositionIds, style.build.style !== 'genai' && style.build.positionIds !== false)
      // Packed 4-bit matrices count K × N; 8-bit ones add a scale and zero point each.
      const shape = { ...resolveShape('tiny', style.build.size), tieWordEmbeddings: style.build.tieWordEmbeddings ?? true }
      const expected = countParameters(llamaWeightSpecs(shape))
      assert.ok(Math.abs(runner.parameters - expected) <= expected * 0.001, `${runner.parameters} parameters, expected ~${expected}`)
    })

    test('cached greedy decoding equals recomputing the whole sequence', async () => {
      const prompt = [1, 300, 301, 302, 303]
      const cached = await solo(runner, prompt, 24)
      assert.ok(new Set(cached).size > 4, `greedy output should vary: ${cached}`)
      const full = await recompute(runner, prompt, 24)
      if (style.rowsIndependent === false) {
        // One activation scale per tensor: a 1-token step and a whole-prompt pass round differently.
        const same = cached.filter((t, i) => t === full[i]).length
        assert.ok(same >= 4 && cached[0] === full[0], `${same}/24 equal: ${cached} vs ${full}`)
      } else assert.deepEqual(cached, full)
    })

    test('a batch of different lengths, and rows leaving and joining, decode like each alone', async () => {
      const prompts = [[1, 310, 320, 330], [1, 400, 401, 402, 403, 404, 405, 406], [1, 7]]
      const alone: number[][] = []
      for (const p of prompts) alone.push(await solo(runner, p, 16))
      if (style.rowsIndependent === false) return
      assert.deepEqual(await batch(runner, prompts, 16), alone)

      // Prompt 0 starts, 1 joins at step 4, 0 leaves after 16 tokens (1 moves to row 0), 2 joins at step 8.
      const cache = runner.cache
      const out: number[][] = [[], [], []]
      const rows: number[] = []
      const join = async (i: number) => {
        const [logits] = await runner.prefill([{ row: cache.addRow(), tokens: prompts[i] }])
        out[i].push(argmax(logits))
        rows.push(i)
      }
      await join(0)
      for (let s = 1; rows.length > 0; s++) {
        if (s === 4) await join(1)
        if (s === 8) await join(2)
        for (let r = rows.length - 1; r >= 0; r--) {
          if (out[rows[r]].length < 16) continue
          const moved = cache.removeRow(r)
          if (moved !== -1) rows[r] = rows[moved]
          rows.pop()
        }
        if (rows.length === 0) break
        const logits = await runner.decode(rows.map((i) => out[i][out[i].length - 1]))
        rows.forEach((i, r) => out[i].push(argmax(logits.subarray(r * V, (r + 1) * V))))
      }
      assert.deepEqual(out, alone)
    })
  })
}

describe('external weight data', () => {
  const greedy = async (dir: string) => {
    const folder = loadModelFolder(dir)
    const runner = await ModelRunner.load(folder.onnxPath, execution, () => {}, folder)
    try {
      return { ids: await batch(runner, [[1, 5, 9, 20], [1, 7]], 12), kvPath: runner.kvPath }
    } finally {
      await runner.dispose()
    }
  }

  test('genai model.onnx.data and sharded Optimum model_q4.onnx_data{,_1,...} decode like inline weights', async () => {
    const build = (name: string, options: Omit<BuildOptions, 'dir'>) => buildRandomLlama({ dir: join(scratch, name), preset: 'tiny', seed: 4, ...options }).then(() => join(scratch, name))
    const genaiInline = await build('x-genai-inline', { style: 'genai', weights: 'fp16' })
    const genaiExternal = await build('x-genai-external', { style: 'genai', weights: 'fp16', externalData: true })
    assert.ok(readdirSync(genaiExternal).includes('model.onnx.data'))
    const q4Inline = await build('x-q4-inline', { weights: 'q4' })
    const q4Sharded = await build('x-q4-sharded', { weights: 'q4', externalData: true, shardBytes: 64 * 1024 })
    const shards = readdirSync(join(q4Sharded, 'onnx')).filter((f) => f.startsWith('model_q4.onnx_data'))
    assert.ok(shards.length >= 3 && shards.includes('model_q4.onnx_data_1'), `shards: ${shards}`)

    const [a, b] = [await greedy(genaiInline), await greedy(genaiExternal)]
    assert.deepEqual(b, a)
    assert.equal(b.kvPath, 'in-place')
    const [c, d] = [await greedy(q4Inline), await greedy(q4Sharded)]
    assert.deepEqual(d, c)
    assert.equal(d.kvPath, 'new-rows', 'the sharded files are linked beside the rewritten graph')
  })

  test('genai_config.json shapes that contradict the graph stop the load with one line', async () => {
    const dir = join(scratch, 'x-genai-wrong')
    await buildRandomLlama({ dir, preset: 'tiny', seed: 4, style: 'genai' })
    const folder = loadModelFolder(dir)
    await assert.rejects(ModelRunner.load(folder.onnxPath, execution, () => {}, { ...folder, expected: { ...folder.expected!, headDim: 8 } }), /^Error: genai_config\.json gives head size 8, but the ONNX graph has 16$/)
    await assert.rejects(ModelRunner.load(folder.onnxPath, execution, () => {}, { ...folder, expected: { ...folder.expected!, layers: 3 } }), /genai_config\.json gives 3 layers, but the ONNX graph has 4/)
  })
})
