import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { DynamicBatcher } from '../../../backend/encoder/batcher.ts'
import { EncoderEngine } from '../../../backend/encoder/encoder-engine.ts'
import { isEncoderFolder, loadEncoderFolder } from '../../../backend/encoder/folder.ts'
import { normalizeL2, poolRow, softmax } from '../../../backend/encoder/pooling.ts'
import { EncoderRunner, runnerOptionsOf } from '../../../backend/encoder/runner.ts'
import { EncoderTokenizer, InputTooLongError } from '../../../backend/encoder/served.ts'
import { buildRandomEncoder } from '../../../backend/model/builder/build-encoder.ts'
import { STORIES_DIR } from '../../helpers/paths.ts'

const execution = { device: 'cpu' as const, cudaDeviceId: 0, cpuThreads: 1, graphOptimization: 'all' as const }
const TEXTS = [
  'hello world',
  'the movie was good',
  'a',
  'once upon a time there was a little friend who could play all day',
  'numbers 1 2 3 and, punctuation!',
]

/** Largest absolute difference between two vectors. */
function maxDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length)
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0)
}

describe('encoder models', () => {
  let dir: string
  let embed: string
  let classify: string
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'switchyard-encoder-'))
    embed = join(dir, 'embed')
    classify = join(dir, 'classify')
    await buildRandomEncoder({ dir: embed, seed: 1 })
    await buildRandomEncoder({ dir: classify, seed: 2, labels: ['NEGATIVE', 'POSITIVE', 'NEUTRAL'], tokenTypes: false })
  })
  after(() => rmSync(dir, { recursive: true, force: true }))

  test('folders: encoders are recognised, decoders are not; sentence-transformers pooling is read', () => {
    assert.equal(isEncoderFolder(embed), true)
    assert.equal(isEncoderFolder(classify), true)
    assert.equal(isEncoderFolder(STORIES_DIR), false)
    const folder = loadEncoderFolder(embed)
    assert.deepEqual(
      [folder.task, folder.pooling, folder.normalize, folder.maxLength, folder.vocabSize],
      ['feature-extraction', 'mean', true, 128, 1024],
    )
    const classifier = loadEncoderFolder(classify)
    assert.deepEqual([classifier.task, classifier.labels], ['text-classification', ['NEGATIVE', 'POSITIVE', 'NEUTRAL']])
  })

  test('folders: CLS pooling without Normalize, and a pooling config that enables two modes is refused', async () => {
    const cls = join(dir, 'cls')
    await buildRandomEncoder({ dir: cls, pooling: 'cls', normalize: false })
    assert.deepEqual([loadEncoderFolder(cls).pooling, loadEncoderFolder(cls).normalize], ['cls', false])
    writeFileSync(
      join(cls, '1_Pooling', 'config.json'),
      JSON.stringify({ pooling_mode_cls_token: true, pooling_mode_mean_tokens: true }),
    )
    assert.throws(() => loadEncoderFolder(cls), /exactly one of/)
  })

  test('folders: RoBERTa-style configs keep 2 position rows for padding and take their pad id', async () => {
    const roberta = join(dir, 'roberta')
    await buildRandomEncoder({ dir: roberta, size: { maxPositions: 130 }, tokenTypes: false })
    const config = JSON.parse(readFileSync(join(roberta, 'config.json'), 'utf8'))
    writeFileSync(
      join(roberta, 'config.json'),
      JSON.stringify({ ...config, model_type: 'roberta', architectures: ['XLMRobertaModel'], pad_token_id: 1 }),
    )
    rmSync(join(roberta, 'sentence_bert_config.json'))
    writeFileSync(join(roberta, 'tokenizer_config.json'), JSON.stringify({ model_max_length: 1e30 }))
    const folder = loadEncoderFolder(roberta)
    assert.deepEqual([folder.maxLength, folder.padTokenId, isEncoderFolder(roberta)], [128, 1, true])
  })

  test('tokenizer: WordPiece with [CLS]/[SEP]; over-long input refused, or truncated keeping the special tokens', () => {
    const tokenizer = new EncoderTokenizer(loadEncoderFolder(embed))
    const ids = tokenizer.encode('Hello world', 128)
    assert.equal(ids[0], 101)
    assert.equal(ids.at(-1), 102)
    const long = 'word '.repeat(200)
    assert.throws(() => tokenizer.encode(long, 128), InputTooLongError)
    const cut = tokenizer.encode(long, 128, 10)
    assert.equal(cut.length, 10)
    assert.deepEqual([cut[0], cut.at(-1)], [101, 102])
    assert.equal(tokenizer.encode(long, 128, -1).length, 128)
  })

  test('pooling: mean over real tokens, CLS, last token, max; L2 normalisation; softmax', () => {
    const hidden = Float32Array.from([1, 2, 3, 4, 100, 100]) // 3 tokens × dim 2, the last is padding
    assert.deepEqual(Array.from(poolRow(hidden, 0, 2, 2, 'mean')), [2, 3])
    assert.deepEqual(Array.from(poolRow(hidden, 0, 2, 2, 'cls')), [1, 2])
    assert.deepEqual(Array.from(poolRow(hidden, 0, 2, 2, 'lasttoken')), [3, 4])
    assert.deepEqual(Array.from(poolRow(hidden, 0, 2, 2, 'max')), [3, 4])
    assert.deepEqual(Array.from(normalizeL2(Float32Array.from([3, 4]))), Array.from(Float32Array.of(0.6, 0.8)))
    const p = softmax(Float32Array.from([1000, 1000]))
    assert.deepEqual(Array.from(p), [0.5, 0.5])
  })

  test('runner: a padded batch gives the same vectors as each input alone (embeddings and classification)', async () => {
    for (const model of [embed, classify]) {
      const folder = loadEncoderFolder(model)
      const tokenizer = new EncoderTokenizer(folder)
      const runner = await EncoderRunner.load(folder.onnxPath, execution, runnerOptionsOf(folder), () => {})
      const rows = TEXTS.map((t) => tokenizer.encode(t, folder.maxLength))
      const batched = await runner.run(rows)
      for (const [i, row] of rows.entries()) {
        const [single] = await runner.run([row])
        assert.ok(
          maxDiff(single, batched[i]) < 1e-5,
          `row ${i} of ${folder.id} differs by ${maxDiff(single, batched[i])}`,
        )
      }
      if (folder.task === 'text-classification')
        for (const p of batched) assert.ok(Math.abs(p.reduce((a, b) => a + b, 0) - 1) < 1e-5)
      else for (const v of batched) assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-5)
      // Different inputs, different vectors: the graph does use its input.
      assert.ok(maxDiff(batched[0], batched[1]) > 1e-3)
      await runner.dispose()
    }
  })

  test('runner: a classifier needs a logits output; an embedding model one of token or sentence embeddings', async () => {
    const folder = loadEncoderFolder(embed)
    await assert.rejects(
      EncoderRunner.load(folder.onnxPath, execution, { ...runnerOptionsOf(folder), output: 'probabilities' }, () => {}),
      /no logits output \(it has last_hidden_state\)/,
    )
    const classifier = loadEncoderFolder(classify)
    await assert.rejects(
      EncoderRunner.load(
        classifier.onnxPath,
        execution,
        { ...runnerOptionsOf(classifier), output: 'embedding' },
        () => {},
      ),
      /no sentence_embedding or last_hidden_state or token_embeddings output/,
    )
  })

  test('dynamic batcher: concurrent inputs share forward passes within the token budget', async () => {
    const batches: number[][] = []
    const batcher = new DynamicBatcher(
      async (rows) => {
        batches.push(rows.map((r) => r.length))
        return rows.map((r) => Float32Array.of(r.length))
      },
      { windowMs: 5, maxBatchTokens: 12, maxBatchSize: 3 },
    )
    const lengths = [2, 3, 4, 4, 10, 1]
    const results = await Promise.all(lengths.map((n) => batcher.add(Array(n).fill(1))))
    assert.deepEqual(
      results.map((r) => r[0]),
      lengths,
    )
    // Padded size rows × longest stays within 12 tokens and 3 rows; a 10-token input runs with at most one other.
    assert.deepEqual(batches, [[2, 3, 4], [4], [10], [1]])
  })

  test('engine (worker thread): concurrent requests are batched, and equal the results of one request at a time', async () => {
    const folder = loadEncoderFolder(embed)
    const tokenizer = new EncoderTokenizer(folder)
    const rows = TEXTS.map((t) => tokenizer.encode(t, folder.maxLength))
    const batchRows: number[] = []
    const engine = await EncoderEngine.start(
      {
        onnxPath: folder.onnxPath,
        execution,
        runner: runnerOptionsOf(folder),
        batching: { windowMs: 20, maxBatchTokens: 16384, maxBatchSize: 64 },
        stallTimeoutMs: 60_000,
      },
      { onBatch: (stats) => batchRows.push(stats.rows) },
    )
    try {
      assert.equal(engine.info.width, 64)
      const alone: Float32Array[] = []
      for (const row of rows) alone.push(await engine.encode(row))
      const together = await Promise.all(rows.map((row) => engine.encode(row)))
      for (let i = 0; i < rows.length; i++) assert.ok(maxDiff(alone[i], together[i]) < 1e-5)
      assert.ok(Math.max(...batchRows) > 1, `no batch held more than one input: ${batchRows}`)
      // The worker beats its heartbeat (liveness) after batches and while idle.
      assert.ok(Number.isFinite(engine.msSinceProgress))
    } finally {
      await engine.close()
    }
    await assert.rejects(engine.encode([1, 2]), /closed/)
  })
})
