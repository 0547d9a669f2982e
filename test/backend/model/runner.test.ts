import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { after, before, describe, test } from 'node:test'
import * as ort from 'onnxruntime-node'
import { loadModelFolder } from '../../../backend/model/folder.ts'
import { ModelRunner } from '../../../backend/model/runner.ts'
import { TextTokenizer } from '../../../backend/model/tokenizer.ts'
import { argmax } from '../../../backend/sampling/sampler.ts'
import { STORIES_DIR, STORIES_ONNX } from '../../helpers/paths.ts'
import { referenceContinuation } from '../../helpers/reference.ts'

const execution = { device: 'cpu' as const, cudaDeviceId: 0, cpuThreads: 1, graphOptimization: 'all' as const }
const folder = loadModelFolder(STORIES_DIR)
const tokenizer = new TextTokenizer(folder.tokenizerJson, folder.tokenizerConfig)

/** Greedy generation of several prompts together; `leaveAfter[i]` ends prompt i early. */
async function greedyBatch(runner: ModelRunner, prompts: number[][], steps: number): Promise<number[][]> {
  const rows = prompts.map((tokens) => ({ row: runner.cache.addRow(), tokens }))
  const first = await runner.prefill(rows)
  const out = first.map((l) => [argmax(l)])
  for (let s = 1; s < steps; s++) {
    const logits = await runner.decode(out.map((o) => o[o.length - 1]))
    const V = runner.shape.vocabSize
    out.forEach((o, r) => {
      o.push(argmax(logits.subarray(r * V, (r + 1) * V)))
    })
  }
  for (let r = runner.cache.rows - 1; r >= 0; r--) runner.cache.removeRow(r)
  return out
}

describe('ModelRunner on stories260K', () => {
  let runner: ModelRunner
  before(async () => {
    runner = await ModelRunner.load(STORIES_ONNX, execution, () => {})
  })
  after(async () => runner.dispose())

  test('reads the shape from the session and takes the new-rows fast path', () => {
    assert.deepEqual(runner.shape, {
      layers: 5,
      kvHeads: 4,
      headDim: 8,
      vocabSize: 512,
      kvFloat16: false,
      hasPositionIds: true,
      hasUseCacheBranch: false,
      weightType: 'float32',
    })
    assert.equal(runner.kvPath, 'new-rows')
    assert.equal(runner.movesOnlyNewRows, true)
    assert.ok(runner.parameters > 250_000 && runner.parameters < 400_000)
  })

  test('greedy continuation of "Once upon a time" equals the reference, token for token', async () => {
    const prompt = tokenizer.encode('Once upon a time')
    assert.deepEqual(prompt, [1, 403, 407, 261, 378])
    const expected = referenceContinuation()
    const expectedIds = tokenizer.encode(`Once upon a time${expected}`).slice(prompt.length)
    const [generated] = await greedyBatch(runner, [prompt], expectedIds.length)
    assert.deepEqual(generated, expectedIds)
    assert.equal(tokenizer.decode(generated), expected)
  })

  test('decoding with the KV cache equals recomputing the whole sequence each step', async () => {
    const session = await ort.InferenceSession.create(STORIES_ONNX, { intraOpNumThreads: 1 })
    const prompt = tokenizer.encode('The cat sat')
    const ids = [...prompt]
    for (let s = 0; s < 30; s++) {
      const n = ids.length
      const feeds: Record<string, ort.Tensor> = {
        input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, n]),
        attention_mask: new ort.Tensor('int64', new BigInt64Array(n).fill(1n), [1, n]),
        position_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map((_, i) => BigInt(i))), [1, n]),
      }
      for (let l = 0; l < 5; l++)
        for (const kind of ['key', 'value'])
          feeds[`past_key_values.${l}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 8])
      const out = await session.run(feeds)
      ids.push(argmax((out.logits.data as Float32Array).subarray((n - 1) * 512, n * 512)))
    }
    await session.release()
    const [cached] = await greedyBatch(runner, [prompt], 30)
    assert.deepEqual(cached, ids.slice(prompt.length))
  })

  test('batched rows of different lengths give the same tokens as each alone', async () => {
    const prompts = ['Once upon a time', 'Tom had a red', 'The sun', 'One day, a little bird flew over the'].map((t) =>
      tokenizer.encode(t),
    )
    const alone = []
    for (const p of prompts) alone.push((await greedyBatch(runner, [p], 40))[0])
    assert.deepEqual(await greedyBatch(runner, prompts, 40), alone)
  })

  test('rows that leave and join mid-generation do not disturb the others', async () => {
    const a = tokenizer.encode('Once upon a time')
    const b = tokenizer.encode('Lily and Ben')
    const [aloneA] = await greedyBatch(runner, [a], 60)
    const [aloneB] = await greedyBatch(runner, [b], 30)
    // a starts, b joins after 10 steps, a filler row leaves after 20, b ends after 30 steps.
    const cache = runner.cache
    const V = runner.shape.vocabSize
    const filler = tokenizer.encode('Zzz')
    const logits = await runner.prefill([
      { row: cache.addRow(), tokens: a },
      { row: cache.addRow(), tokens: filler },
    ])
    const outA = [argmax(logits[0])]
    let fillerNext = argmax(logits[1])
    let order = ['a', 'filler']
    const outB: number[] = []
    for (let s = 1; s < 60; s++) {
      if (s === 10) {
        const [lb] = await runner.prefill([{ row: cache.addRow(), tokens: b }])
        outB.push(argmax(lb))
        order.push('b')
      }
      if (s === 20) {
        const moved = cache.removeRow(order.indexOf('filler'))
        const idx = order.indexOf('filler')
        order =
          moved === -1
            ? order.filter((x) => x !== 'filler')
            : order.map((x, i) => (i === idx ? order[moved] : x)).slice(0, -1)
      }
      if (outB.length === 30 && order.includes('b')) {
        const idx = order.indexOf('b')
        const moved = cache.removeRow(idx)
        order =
          moved === -1
            ? order.filter((x) => x !== 'b')
            : order.map((x, i) => (i === idx ? order[moved] : x)).slice(0, -1)
      }
      const next = order.map((name) =>
        name === 'a' ? outA[outA.length - 1] : name === 'b' ? outB[outB.length - 1] : fillerNext,
      )
      const out = await runner.decode(next)
      order.forEach((name, r) => {
        const t = argmax(out.subarray(r * V, (r + 1) * V))
        if (name === 'a') outA.push(t)
        else if (name === 'b') outB.push(t)
        else fillerNext = t
      })
    }
    for (let r = cache.rows - 1; r >= 0; r--) cache.removeRow(r)
    assert.deepEqual(outA, aloneA)
    assert.deepEqual(outB.slice(0, 30), aloneB)
  })

  test('the fallback path (fetching present.*) gives the same tokens', async () => {
    const session = await ort.InferenceSession.create(readFileSync(STORIES_ONNX), { intraOpNumThreads: 1 })
    const slow = new ModelRunner({
      session,
      device: 'cpu',
      newRows: null,
      parameters: 0,
      facts: { weightType: 'float32', groupQueryAttention: false, parameters: 0 },
    })
    assert.equal(slow.movesOnlyNewRows, false)
    const prompts = [tokenizer.encode('Once upon a time'), tokenizer.encode('A dog')]
    assert.deepEqual(await greedyBatch(slow, prompts, 25), await greedyBatch(runner, prompts, 25))
    await slow.dispose()
  })
})

describe('ModelRunner on a model with external weight data', () => {
  test('loads it, keeps the fast path, and decodes like the inline copy', async () => {
    const { mkdtempSync, rmSync, existsSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const { buildRandomLlama } = await import('../../../backend/model/builder/build-model.ts')
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-external-'))
    try {
      await buildRandomLlama({ dir: join(dir, 'inline'), preset: 'tiny', seed: 3 })
      await buildRandomLlama({ dir: join(dir, 'external'), preset: 'tiny', seed: 3, externalData: true })
      assert.ok(existsSync(join(dir, 'external/onnx/model.onnx_data')))
      const inline = await ModelRunner.load(join(dir, 'inline/onnx/model.onnx'), execution, () => {})
      const external = await ModelRunner.load(join(dir, 'external/onnx/model.onnx'), execution, () => {})
      assert.equal(external.movesOnlyNewRows, true)
      const prompts = [
        [1, 5, 9, 20],
        [1, 7],
      ]
      assert.deepEqual(await greedyBatch(external, prompts, 12), await greedyBatch(inline, prompts, 12))
      await Promise.all([inline.dispose(), external.dispose()])
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
