import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { after, before, describe, test } from 'node:test'
import * as ort from 'onnxruntime-node'
import { type BuildOptions, buildRandomLlama, resolveShape } from '../../../backend/model/builder/build-model.ts'
import { countParameters, llamaWeightSpecs } from '../../../backend/model/builder/llama-graph.ts'
import { loadModelFolder } from '../../../backend/model/folder.ts'
import { type KvPath, ModelRunner } from '../../../backend/model/runner.ts'
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
}

const STYLES: Style[] = [
  {
    name: 'optimum fp32, untied head',
    build: { tieWordEmbeddings: false },
    file: 'onnx/model.onnx',
    weightType: 'float32',
    kvFloat16: false,
    kvPath: 'new-rows',
  },
  {
    name: 'optimum fp16',
    build: { weights: 'fp16' },
    file: 'onnx/model_fp16.onnx',
    weightType: 'float16',
    kvFloat16: true,
    kvPath: 'new-rows',
  },
  {
    name: 'optimum q4',
    build: { weights: 'q4', tieWordEmbeddings: false },
    file: 'onnx/model_q4.onnx',
    weightType: 'int4',
    kvFloat16: false,
    kvPath: 'new-rows',
  },
  {
    name: 'optimum q4f16',
    build: { weights: 'q4f16' },
    file: 'onnx/model_q4f16.onnx',
    weightType: 'int4',
    kvFloat16: true,
    kvPath: 'new-rows',
  },
  {
    name: 'genai q4f16',
    build: { style: 'genai', weights: 'q4f16' },
    file: 'model.onnx',
    weightType: 'int4',
    kvFloat16: true,
    kvPath: 'in-place',
  },
  {
    name: 'optimum int8',
    build: { weights: 'int8' },
    file: 'onnx/model_int8.onnx',
    weightType: 'int8',
    kvFloat16: false,
    kvPath: 'new-rows',
  },
  {
    name: 'optimum uint8',
    build: { weights: 'uint8' },
    file: 'onnx/model_uint8.onnx',
    weightType: 'uint8',
    kvFloat16: false,
    kvPath: 'new-rows',
  },
  {
    name: 'optimum without position_ids (positions from the mask)',
    build: { positionIds: false },
    file: 'onnx/model.onnx',
    weightType: 'float32',
    kvFloat16: false,
    kvPath: 'new-rows',
  },
  {
    name: 'optimum merged decoder (If on use_cache_branch)',
    build: { merged: true, weights: 'q4' },
    file: 'onnx/decoder_model_merged_q4.onnx',
    weightType: 'int4',
    kvFloat16: false,
    kvPath: 'whole-cache',
  },
  {
    name: 'optimum, Gemma-style head_dim',
    build: { size: { headDim: 32 }, modelType: 'gemma' },
    file: 'onnx/model.onnx',
    weightType: 'float32',
    kvFloat16: false,
    kvPath: 'new-rows',
  },
  {
    name: 'genai fp32 (GroupQueryAttention)',
    build: { style: 'genai' },
    file: 'model.onnx',
    weightType: 'float32',
    kvFloat16: false,
    kvPath: 'in-place',
  },
  {
    name: 'genai fp16',
    build: { style: 'genai', weights: 'fp16' },
    file: 'model.onnx',
    weightType: 'float16',
    kvFloat16: true,
    kvPath: 'in-place',
  },
  {
    name: 'genai q4, untied head',
    build: { style: 'genai', weights: 'q4', tieWordEmbeddings: false },
    file: 'model.onnx',
    weightType: 'int4',
    kvFloat16: false,
    kvPath: 'in-place',
  },
  {
    name: 'genai with position_ids (rotary before GroupQueryAttention)',
    build: { style: 'genai', positionIds: true },
    file: 'model.onnx',
    weightType: 'float32',
    kvFloat16: false,
    kvPath: 'in-place',
  },
  {
    name: 'genai, Gemma-style head_dim, no config.json',
    build: { style: 'genai', size: { headDim: 32 }, hfConfig: false },
    file: 'model.onnx',
    weightType: 'float32',
    kvFloat16: false,
    kvPath: 'in-place',
  },
]

const V = 512

/** Builds a tiny model into the scratch folder and loads it through the folder and runner, as a node does. */
async function buildAndLoad(name: string, options: Omit<BuildOptions, 'dir'>) {
  const dir = join(scratch, name)
  await buildRandomLlama({ dir, preset: 'tiny', ...options })
  const folder = loadModelFolder(dir)
  return { dir, folder, runner: await ModelRunner.load(folder.onnxPath, execution, () => {}, folder) }
}

async function solo(runner: ModelRunner, prompt: number[], steps: number): Promise<number[]> {
  return (await batch(runner, [prompt], steps))[0]
}

async function batch(runner: ModelRunner, prompts: number[][], steps: number): Promise<number[][]> {
  const first = await runner.prefill(prompts.map((tokens) => ({ row: runner.cache.addRow(), tokens })))
  const out = first.map((logits) => [argmax(logits)])
  for (let s = 1; s < steps; s++) {
    const logits = await runner.decode(out.map((o) => o[o.length - 1]))
    out.forEach((o, r) => {
      o.push(argmax(logits.subarray(r * V, (r + 1) * V)))
    })
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
    before(async () => {
      const loaded = await buildAndLoad(style.name.replace(/\W+/g, '-'), { seed: 11, ...style.build })
      assert.equal(relative(loaded.dir, loaded.folder.onnxPath), style.file)
      runner = loaded.runner
    })
    after(async () => runner?.dispose())

    test('takes the expected KV path and reports the real weight and KV types', () => {
      assert.equal(runner.kvPath, style.kvPath)
      assert.equal(runner.shape.weightType, style.weightType)
      assert.equal(runner.shape.kvFloat16, style.kvFloat16)
      assert.equal(runner.shape.headDim, style.build.size?.headDim ?? 16)
      assert.equal(
        runner.shape.hasPositionIds,
        style.build.style === 'genai' ? style.build.positionIds === true : style.build.positionIds !== false,
      )
      assert.equal(runner.shape.hasUseCacheBranch, style.build.merged === true)
      // Packed 4-bit matrices count K × N; 8-bit ones add a scale and zero point each.
      const shape = {
        ...resolveShape('tiny', style.build.size),
        tieWordEmbeddings: style.build.tieWordEmbeddings ?? true,
      }
      const expected = countParameters(llamaWeightSpecs(shape))
      assert.ok(
        Math.abs(runner.parameters - expected) <= expected * 0.001,
        `${runner.parameters} parameters, expected ~${expected}`,
      )
    })

    test('cached greedy decoding equals recomputing the whole sequence', async () => {
      const prompt = [1, 300, 301, 302, 303]
      const cached = await solo(runner, prompt, 24)
      assert.ok(new Set(cached).size > 4, `greedy output should vary: ${cached}`)
      const full = await recompute(runner, prompt, 24)
      assert.deepEqual(cached, full)
    })

    test('a batch of different lengths, and rows leaving and joining, decode like each alone', async () => {
      const prompts = [
        [1, 310, 320, 330],
        [1, 400, 401, 402, 403, 404, 405, 406],
        [1, 7],
      ]
      const alone: number[][] = []
      for (const p of prompts) alone.push(await solo(runner, p, 16))
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
        rows.forEach((i, r) => {
          out[i].push(argmax(logits.subarray(r * V, (r + 1) * V)))
        })
      }
      assert.deepEqual(out, alone)
    })
  })
}

describe('external weight data', () => {
  /** Builds, loads and decodes two prompts greedily; returns the folder too. */
  const greedy = async (name: string, options: Omit<BuildOptions, 'dir'>) => {
    const { dir, runner } = await buildAndLoad(name, { seed: 4, ...options })
    try {
      return {
        dir,
        ids: await batch(
          runner,
          [
            [1, 5, 9, 20],
            [1, 7],
          ],
          12,
        ),
        kvPath: runner.kvPath,
      }
    } finally {
      await runner.dispose()
    }
  }

  test('genai model.onnx.data and sharded Optimum model_q4.onnx_data{,_1,...} decode like inline weights', async () => {
    const genaiInline = await greedy('x-genai-inline', { style: 'genai', weights: 'fp16' })
    const genaiExternal = await greedy('x-genai-external', { style: 'genai', weights: 'fp16', externalData: true })
    assert.ok(readdirSync(genaiExternal.dir).includes('model.onnx.data'))
    assert.deepEqual([genaiExternal.ids, genaiExternal.kvPath], [genaiInline.ids, 'in-place'])
    const q4Inline = await greedy('x-q4-inline', { weights: 'q4' })
    const q4Sharded = await greedy('x-q4-sharded', { weights: 'q4', externalData: true, shardBytes: 64 * 1024 })
    const shards = readdirSync(join(q4Sharded.dir, 'onnx')).filter((f) => f.startsWith('model_q4.onnx_data'))
    assert.ok(shards.length >= 3 && shards.includes('model_q4.onnx_data_1'), `shards: ${shards}`)
    // The sharded files are linked beside the rewritten graph, so the fast path stays on.
    assert.deepEqual([q4Sharded.ids, q4Sharded.kvPath], [q4Inline.ids, 'new-rows'])
  })

  test('genai_config.json shapes that contradict the graph stop the load with one line', async () => {
    const { folder, runner } = await buildAndLoad('x-genai-wrong', { seed: 4, style: 'genai' })
    await runner.dispose()
    await assert.rejects(
      ModelRunner.load(folder.onnxPath, execution, () => {}, {
        ...folder,
        expected: { ...folder.expected!, headDim: 8 },
      }),
      /^Error: genai_config\.json gives head size 8, but the ONNX graph has 16$/,
    )
    await assert.rejects(
      ModelRunner.load(folder.onnxPath, execution, () => {}, {
        ...folder,
        expected: { ...folder.expected!, layers: 3 },
      }),
      /genai_config\.json gives 3 layers, but the ONNX graph has 4/,
    )
  })
})

describe('8-bit dynamic quantization files', () => {
  test('served with per-row activation quantization: logits stay close to the file as stored', async () => {
    const { folder, runner } = await buildAndLoad('x-int8', { seed: 11, weights: 'int8' })
    const stored = await ort.InferenceSession.create(folder.onnxPath, { intraOpNumThreads: 1 })
    const prompt = [1, 300, 301, 302, 303, 304]
    const n = prompt.length
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', BigInt64Array.from(prompt.map(BigInt)), [1, n]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(prompt.map((_, i) => BigInt(i))), [1, n]),
    }
    for (let l = 0; l < 4; l++)
      for (const kind of ['key', 'value'])
        feeds[`past_key_values.${l}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 16])
    const expected = ((await stored.run(feeds)).logits.data as Float32Array).slice((n - 1) * V)
    const [served] = await runner.prefill([{ row: runner.cache.addRow(), tokens: prompt }])
    const spread = Math.max(...expected) - Math.min(...expected)
    const worst = expected.reduce((max, x, i) => Math.max(max, Math.abs(x - served[i])), 0)
    assert.ok(worst < 0.1 * spread, `largest logit difference ${worst} of a spread of ${spread}`)
    assert.notEqual(worst, 0, 'the served graph is the rewritten one')
    await stored.release()
    await runner.dispose()
  })
})

describe('GroupQueryAttention prompts in chunks', () => {
  test('a row prefilled in three chunks continues exactly like one prefilled whole', async () => {
    const { runner } = await buildAndLoad('x-genai-chunks', { seed: 13, style: 'genai' })
    const prompt = Array.from({ length: 40 }, (_, i) => 3 + ((i * 37) % 500))
    const whole = await solo(runner, prompt, 12)
    const row = runner.cache.addRow()
    const chunks = [prompt.slice(0, 15), prompt.slice(15, 16), prompt.slice(16)]
    let logits: Float32Array[] = []
    for (const chunk of chunks) logits = await runner.prefill([{ row, tokens: chunk }])
    assert.equal(runner.cache.lengths[row], 40)
    const out = [argmax(logits[0])]
    for (let s = 1; s < 12; s++) out.push(argmax(await runner.decode([out[s - 1]])))
    runner.cache.removeRow(row)
    assert.deepEqual(out, whole)
    await runner.dispose()
  })
})

describe('one seed, three graphs', () => {
  test('Optimum, genai with rotary inside GroupQueryAttention and genai with position_ids compute the same model', async () => {
    const ids: number[][][] = []
    for (const [name, options] of [
      ['s-optimum', {}],
      ['s-genai', { style: 'genai' }],
      ['s-genai-positions', { style: 'genai', positionIds: true }],
    ] as const) {
      const { runner } = await buildAndLoad(name, { seed: 17, ...options })
      ids.push(
        await batch(
          runner,
          [
            [1, 300, 301, 302],
            [1, 9],
          ],
          16,
        ),
      )
      await runner.dispose()
    }
    assert.deepEqual(ids[1], ids[0])
    assert.deepEqual(ids[2], ids[0])
  })
})
