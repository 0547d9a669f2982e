import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { Template } from '@huggingface/jinja'
import { Tokenizer } from '@huggingface/tokenizers'
import onnxProto from 'onnx-proto'
import * as ort from 'onnxruntime-node'
import { buildRandomLlama, resolveShape } from '../../../backend/model/builder/build-model.ts'
import { REPO_ROOT } from '../../helpers/paths.ts'

const { onnx } = onnxProto
const shape = resolveShape('tiny')
const SEED = 7

type Feeds = Record<string, ort.Tensor>

interface StepResult {
  /** Logits of the last position of each batch row. */
  lastLogits: Float32Array[]
  present: Feeds
}

function int64Tensor(rows: number[][]): ort.Tensor {
  return new ort.Tensor('int64', BigInt64Array.from(rows.flat(), BigInt), [rows.length, rows[0].length])
}

function emptyPast(batch: number): Feeds {
  const past: Feeds = {}
  for (let i = 0; i < shape.numLayers; i++) {
    for (const kind of ['key', 'value']) {
      past[`past_key_values.${i}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [
        batch,
        shape.numKvHeads,
        0,
        shape.headDim,
      ])
    }
  }
  return past
}

/** present.{i}.* of one step becomes past_key_values.{i}.* of the next. */
function presentAsPast(present: Feeds): Feeds {
  return Object.fromEntries(
    Object.entries(present).map(([name, value]) => [name.replace('present', 'past_key_values'), value]),
  )
}

async function step(
  session: ort.InferenceSession,
  ids: number[][],
  mask: number[][],
  positions: number[][],
  past: Feeds,
): Promise<StepResult> {
  const outputs = await session.run({
    input_ids: int64Tensor(ids),
    attention_mask: int64Tensor(mask),
    position_ids: int64Tensor(positions),
    ...past,
  })
  const logits = outputs.logits.data as Float32Array
  const seqLen = ids[0].length
  const lastLogits = ids.map((_, b) =>
    logits.slice(((b + 1) * seqLen - 1) * shape.vocabSize, (b + 1) * seqLen * shape.vocabSize),
  )
  const present: Feeds = {}
  for (const [name, value] of Object.entries(outputs))
    if (name.startsWith('present.')) present[name] = value as ort.Tensor
  return { lastLogits, present }
}

function argmax(values: Float32Array): number {
  let best = 0
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i
  return best
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  return a.reduce((max, value, i) => Math.max(max, Math.abs(value - b[i])), 0)
}

const range = (start: number, length: number) => Array.from({ length }, (_, i) => start + i)

/** Greedy decoding of one unpadded prompt with the KV cache. */
async function greedyWithCache(session: ort.InferenceSession, prompt: number[], steps: number): Promise<number[]> {
  let result = await step(session, [prompt], [prompt.map(() => 1)], [range(0, prompt.length)], emptyPast(1))
  const generated: number[] = []
  for (let i = 0; i < steps; i++) {
    const token = argmax(result.lastLogits[0])
    generated.push(token)
    const position = prompt.length + i
    result = await step(session, [[token]], [Array(position + 1).fill(1)], [[position]], presentAsPast(result.present))
  }
  return generated
}

describe('random Llama builder (tiny preset)', () => {
  let root: string
  let dir: string
  let session: ort.InferenceSession

  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'switchyard-builder-'))
    dir = join(root, 'tiny')
    await buildRandomLlama({ dir, preset: 'tiny', seed: SEED })
    session = await ort.InferenceSession.create(join(dir, 'onnx', 'model.onnx'), { intraOpNumThreads: 1 })
  })

  after(async () => {
    await session?.release()
    await rm(root, { recursive: true, force: true })
  })

  test('inputs, outputs and their shapes follow the Optimum decoder layout', async () => {
    const kv = shape.numKvHeads
    const d = shape.headDim
    const expectedInputs: Record<string, [string, (string | number)[]]> = {
      input_ids: ['int64', ['batch_size', 'sequence_length']],
      attention_mask: ['int64', ['batch_size', 'total_sequence_length']],
      position_ids: ['int64', ['batch_size', 'sequence_length']],
    }
    const expectedOutputs: Record<string, [string, (string | number)[]]> = {
      logits: ['float32', ['batch_size', 'sequence_length', shape.vocabSize]],
    }
    for (let i = 0; i < shape.numLayers; i++) {
      for (const kind of ['key', 'value']) {
        expectedInputs[`past_key_values.${i}.${kind}`] = ['float32', ['batch_size', kv, 'past_sequence_length', d]]
        expectedOutputs[`present.${i}.${kind}`] = ['float32', ['batch_size', kv, 'total_sequence_length', d]]
      }
    }
    const describeAll = (metadata: readonly ort.InferenceSession.ValueMetadata[]) =>
      Object.fromEntries(metadata.map((m) => [m.name, m.isTensor ? [m.type, [...m.shape]] : null]))
    assert.deepEqual(session.inputNames, Object.keys(expectedInputs))
    assert.deepEqual(session.outputNames, Object.keys(expectedOutputs))
    assert.deepEqual(describeAll(session.inputMetadata), expectedInputs)
    assert.deepEqual(describeAll(session.outputMetadata), expectedOutputs)

    // The backend finds present.{i}.key's Concat(past, new rows) to fetch only the new rows.
    const graph = onnx.ModelProto.decode(await readFile(join(dir, 'onnx', 'model.onnx'))).graph!
    const producer = (name: string) => graph.node!.find((node) => node.output!.includes(name))!
    for (let i = 0; i < shape.numLayers; i++) {
      let node = producer(`present.${i}.key`)
      if (node.opType === 'Identity') node = producer(node.input![0])
      assert.equal(node.opType, 'Concat')
      assert.equal(node.input![0], `past_key_values.${i}.key`)
    }

    const config = JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'))
    assert.equal(config.model_type, 'llama')
    assert.equal(config.switchyard_random_weights, true)
    assert.equal(config.switchyard_seed, SEED)
    assert.equal(config.num_key_value_heads, shape.numKvHeads)
    const generation = JSON.parse(await readFile(join(dir, 'generation_config.json'), 'utf8'))
    assert.deepEqual(
      [generation.bos_token_id, generation.eos_token_id, generation.max_length],
      [1, 2, shape.contextLength],
    )
  })

  test('greedy decoding with the KV cache equals recomputing the whole sequence', async () => {
    const prompt = [1, 300, 301, 302, 303]
    const cached = await greedyWithCache(session, prompt, 20)

    const sequence = [...prompt]
    for (let i = 0; i < 20; i++) {
      const n = sequence.length
      const { lastLogits } = await step(session, [sequence], [Array(n).fill(1)], [range(0, n)], emptyPast(1))
      sequence.push(argmax(lastLogits[0]))
    }
    assert.deepEqual(cached, sequence.slice(prompt.length))
    assert.ok(new Set(cached).size > 5, `greedy output should vary, got ${cached}`)
  })

  test('a left-padded batch decodes like each prompt alone', async () => {
    const prompts = [
      [1, 310, 320, 330],
      [1, 400, 401, 402, 403, 404, 405, 406],
    ]
    const alone = await Promise.all(prompts.map((prompt) => greedyWithCache(session, prompt, 10)))

    const width = Math.max(...prompts.map((p) => p.length))
    const pads = prompts.map((p) => width - p.length)
    const mask = prompts.map((p, b) => [...Array(pads[b]).fill(0), ...p.map(() => 1)])
    let result = await step(
      session,
      prompts.map((p, b) => [...Array(pads[b]).fill(0), ...p]),
      mask,
      prompts.map((p, b) => [...Array(pads[b]).fill(0), ...range(0, p.length)]),
      emptyPast(2),
    )
    const batched: number[][] = [[], []]
    for (let i = 0; i < 10; i++) {
      const tokens = result.lastLogits.map(argmax)
      tokens.forEach((token, b) => {
        batched[b].push(token)
      })
      mask.forEach((row) => {
        row.push(1)
      })
      const positions = prompts.map((p) => [p.length + i])
      result = await step(
        session,
        tokens.map((t) => [t]),
        mask,
        positions,
        presentAsPast(result.present),
      )
    }
    assert.deepEqual(batched, alone)
  })

  test('masked junk columns in the past cache are ignored', async () => {
    const prompt = [1, 350, 351, 352, 353, 354]
    const prefill = await step(session, [prompt], [prompt.map(() => 1)], [range(0, prompt.length)], emptyPast(1))
    const next = [[argmax(prefill.lastLogits[0])]]
    const position = [[prompt.length]]
    const clean = await step(
      session,
      next,
      [Array(prompt.length + 1).fill(1)],
      position,
      presentAsPast(prefill.present),
    )

    // Same cache plus 3 junk rows per head after the real ones, hidden by attention_mask = 0.
    const junkRows = 3
    const withJunk: Feeds = {}
    for (const [name, tensor] of Object.entries(presentAsPast(prefill.present))) {
      const [batch, heads, rows, dim] = tensor.dims
      const data = tensor.data as Float32Array
      const padded = new Float32Array(batch * heads * (rows + junkRows) * dim)
      for (let h = 0; h < heads; h++) {
        padded.set(data.subarray(h * rows * dim, (h + 1) * rows * dim), h * (rows + junkRows) * dim)
        for (let j = rows * dim; j < (rows + junkRows) * dim; j++)
          padded[h * (rows + junkRows) * dim + j] = 50 * Math.sin(j + h)
      }
      withJunk[name] = new ort.Tensor('float32', padded, [batch, heads, rows + junkRows, dim])
    }
    const holeMask = [[...prompt.map(() => 1), ...Array(junkRows).fill(0), 1]]
    const holed = await step(session, next, holeMask, position, withJunk)

    assert.ok(maxAbsDiff(clean.lastLogits[0], holed.lastLogits[0]) < 1e-4)
  })

  test('the same seed gives identical bytes, another seed different ones', async () => {
    const model = (name: string) => readFile(join(root, name, 'onnx', 'model.onnx'))
    await buildRandomLlama({ dir: join(root, 'same'), preset: 'tiny', seed: SEED })
    await buildRandomLlama({ dir: join(root, 'other'), preset: 'tiny', seed: SEED + 1 })
    assert.ok((await model('tiny')).equals(await model('same')))
    assert.ok(!(await model('tiny')).equals(await model('other')))
    await assert.rejects(buildRandomLlama({ dir: join(root, 'same'), preset: 'tiny' }), /not empty/)
  })

  test('external weight data gives the same logits as inline weights', async () => {
    const externalDir = join(root, 'external')
    await buildRandomLlama({ dir: externalDir, preset: 'tiny', seed: SEED, externalData: true })
    const external = await ort.InferenceSession.create(join(externalDir, 'onnx', 'model.onnx'), {
      intraOpNumThreads: 1,
    })
    const run = (target: ort.InferenceSession) =>
      step(target, [[1, 260, 270, 280]], [[1, 1, 1, 1]], [range(0, 4)], emptyPast(1))
    const [inline, fromExternal] = [await run(session), await run(external)]
    await external.release()
    assert.deepEqual(fromExternal.lastLogits, inline.lastLogits)
  })

  test('the tokenizer loads, has exactly vocab_size entries and round-trips text', async () => {
    const tokenizerJson = JSON.parse(await readFile(join(dir, 'tokenizer.json'), 'utf8'))
    const tokenizerConfig = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8'))
    const tokenizer = new Tokenizer(tokenizerJson, tokenizerConfig)

    const vocab = Object.values(tokenizerJson.model.vocab as Record<string, number>).sort((a, b) => a - b)
    assert.deepEqual(vocab, range(0, shape.vocabSize))
    assert.deepEqual(
      ['<unk>', '<s>', '</s>', '<0x00>', '<0xFF>'].map((token) => tokenizer.token_to_id(token)),
      [0, 1, 2, 3, 258],
    )

    for (const text of [
      'Once upon a time, the little dog said "hi!"',
      '  two  spaces\nand a newline',
      'héllo wörld 🎉 日本語',
      '',
    ]) {
      const { ids } = tokenizer.encode(text)
      assert.equal(ids[0], 1, 'encode adds <s>')
      assert.ok(ids.every((id: number) => id < shape.vocabSize))
      assert.equal(tokenizer.decode(ids, { skip_special_tokens: true }), text)
    }

    const rendered = new Template(tokenizerConfig.chat_template).render({
      messages: [{ role: 'user', content: 'Hello' }],
      add_generation_prompt: true,
      bos_token: '<s>',
      eos_token: '</s>',
    })
    assert.equal(rendered, '<|user|>\nHello</s>\n<|assistant|>\n')
  })
})

describe('builder styles', () => {
  let root: string
  before(async () => {
    root = await mkdtemp(join(tmpdir(), 'switchyard-builder-styles-'))
  })
  after(async () => rm(root, { recursive: true, force: true }))

  const graphOf = async (path: string) => onnx.ModelProto.decode(await readFile(path))
  const opCounts = (model: onnxProto.onnx.ModelProto) => {
    const counts: Record<string, number> = {}
    for (const node of model.graph!.node!)
      counts[`${node.domain ? `${node.domain}.` : ''}${node.opType}`] =
        (counts[`${node.domain ? `${node.domain}.` : ''}${node.opType}`] ?? 0) + 1
    return counts
  }

  test('q4: every projection is a 4-bit MatMulNBits (com.microsoft) with blocks of 32; the untied head too', async () => {
    const dir = join(root, 'q4')
    await buildRandomLlama({ dir, preset: 'tiny', weights: 'q4', tieWordEmbeddings: false })
    const model = await graphOf(join(dir, 'onnx', 'model_q4.onnx'))
    const counts = opCounts(model)
    assert.equal(counts['com.microsoft.MatMulNBits'], shape.numLayers * 7 + 1)
    assert.ok(model.opsetImport!.some((o) => o.domain === 'com.microsoft'))
    const head = model.graph!.node!.find((n) => n.opType === 'MatMulNBits' && n.input![1] === 'lm_head.weight_Q4')!
    const attrs = Object.fromEntries(head.attribute!.map((a) => [a.name, Number(a.i)]))
    assert.deepEqual(attrs, { K: shape.hiddenSize, N: shape.vocabSize, bits: 4, block_size: 32, accuracy_level: 0 })
    const packed = model.graph!.initializer!.find((t) => t.name === 'lm_head.weight_Q4')!
    assert.deepEqual(packed.dims!.map(Number), [shape.vocabSize, shape.hiddenSize / 32, 16])
  })

  test('int8 / uint8: DynamicQuantizeLinear + MatMulInteger with 8-bit weights, as onnxruntime quantize_dynamic writes', async () => {
    for (const weights of ['int8', 'uint8'] as const) {
      const dir = join(root, weights)
      await buildRandomLlama({ dir, preset: 'tiny', weights })
      const model = await graphOf(join(dir, 'onnx', `model_${weights}.onnx`))
      const counts = opCounts(model)
      assert.equal(counts.MatMulInteger, shape.numLayers * 7)
      assert.equal(counts.DynamicQuantizeLinear, shape.numLayers * 7)
      const weight = model.graph!.initializer!.find((t) => t.name === 'model.layers.0.mlp.up_proj.weight_quantized')!
      assert.equal(
        weight.dataType,
        weights === 'int8' ? onnx.TensorProto.DataType.INT8 : onnx.TensorProto.DataType.UINT8,
      )
    }
  })

  test('genai: GroupQueryAttention per layer, no position_ids, and a genai_config.json matching the graph', async () => {
    const dir = join(root, 'genai')
    await buildRandomLlama({
      dir,
      preset: 'tiny',
      style: 'genai',
      weights: 'fp16',
      size: { headDim: 32 },
      hfConfig: false,
    })
    const model = await graphOf(join(dir, 'model.onnx'))
    assert.equal(opCounts(model)['com.microsoft.GroupQueryAttention'], shape.numLayers)
    const gqa = model.graph!.node!.find((n) => n.opType === 'GroupQueryAttention')!
    assert.deepEqual(gqa.output!.slice(1), ['present.0.key', 'present.0.value'])
    assert.ok(!model.graph!.input!.some((i) => i.name === 'position_ids'))
    const config = JSON.parse(await readFile(join(dir, 'genai_config.json'), 'utf8'))
    assert.equal(config.model.decoder.head_size, 32)
    assert.equal(config.model.decoder.num_key_value_heads, shape.numKvHeads)
    assert.equal(config.model.decoder.inputs.past_key_names, 'past_key_values.%d.key')
    assert.equal(config.search.past_present_share_buffer, true)
    assert.deepEqual((await readdir(dir)).sort(), [
      'genai_config.json',
      'generation_config.json',
      'model.onnx',
      'special_tokens_map.json',
      'tokenizer.json',
      'tokenizer_config.json',
    ])
    const past = model.graph!.input!.find((i) => i.name === 'past_key_values.0.key')!
    assert.equal(past.type!.tensorType!.elemType, onnx.TensorProto.DataType.FLOAT16)
  })

  test('presets of the benchmark shapes and bad sizes', () => {
    assert.deepEqual(
      ['smollm2-135m', 'llama-3.2-1b'].map((p) => {
        const s = resolveShape(p as 'smollm2-135m')
        return [s.hiddenSize, s.numLayers, s.numHeads, s.numKvHeads, s.intermediateSize, s.vocabSize, s.headDim]
      }),
      [
        [576, 30, 9, 3, 1536, 49152, 64],
        [2048, 16, 32, 8, 8192, 128256, 64],
      ],
    )
    assert.throws(() => resolveShape('tiny', { headDim: 15 }), /head dim must be even, got 15/)
  })
})

describe('builder CLI', () => {
  const cli = (...args: string[]) =>
    spawnSync(process.execPath, ['--import', 'tsx', 'backend/model/builder/cli.ts', ...args], {
      cwd: REPO_ROOT,
      encoding: 'utf8',
    })

  test('style, weights, head dim and untied flags build the folder; bad values exit 1 with one line', async () => {
    const out = await mkdtemp(join(tmpdir(), 'switchyard-cli-'))
    try {
      const ok = cli(
        '--preset',
        'tiny',
        '--style',
        'genai',
        '--weights',
        'q4',
        '--head-dim',
        '32',
        '--untied',
        '--no-hf-config',
        '--out',
        out,
        '--force',
      )
      assert.equal(ok.status, 0, ok.stderr)
      const gqa = onnx.ModelProto.decode(await readFile(join(out, 'model.onnx'))).graph!
      assert.ok(!gqa.input!.some((i) => i.name === 'position_ids'), 'genai graphs keep rotary inside the op by default')
      assert.equal(ok.status, 0, ok.stderr)
      assert.match(ok.stdout, /918,656 parameters \(random weights\)/)
      assert.deepEqual((await readdir(out)).filter((f) => f.endsWith('.json') || f.endsWith('.onnx')).sort(), [
        'genai_config.json',
        'generation_config.json',
        'model.onnx',
        'special_tokens_map.json',
        'tokenizer.json',
        'tokenizer_config.json',
      ])
      for (const [args, message] of [
        [['--weights', 'q5'], /^unknown weights "q5"\nusage: /],
        [['--style', 'gguf'], /^unknown style "gguf"\nusage: /],
        [['--head-dim', 'x'], /^--head-dim must be a non-negative integer, got "x"\n$/],
      ] as [string[], RegExp][]) {
        const bad = cli('--out', join(out, 'bad'), ...args)
        assert.equal(bad.status, 1)
        assert.match(bad.stderr.replace(/^npm warn.*\n/gm, ''), message)
      }
    } finally {
      await rm(out, { recursive: true, force: true })
    }
  })
})
