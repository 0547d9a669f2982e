import assert from 'node:assert/strict'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { loadBackendConfig } from '../../../backend/config.ts'
import { type BuildOptions, buildRandomLlama } from '../../../backend/model/builder/build-model.ts'
import { findModelFolders, loadModelFolder, ModelFolderError, relativeOnnxPath } from '../../../backend/model/folder.ts'
import { STORIES_DIR } from '../../helpers/paths.ts'

const scratch = mkdtempSync(join(tmpdir(), 'switchyard-folder-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

/** A copy of the stories260K folder's small files, with the ONNX file linked, to break at will. */
function modelCopy(name: string, onnxName = 'onnx/model.onnx'): string {
  const dir = join(scratch, name)
  mkdirSync(join(dir, 'onnx'), { recursive: true })
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json'])
    cpSync(join(STORIES_DIR, f), join(dir, f))
  symlinkSync(join(STORIES_DIR, 'onnx/model.onnx'), join(dir, onnxName))
  return dir
}

describe('model folders', () => {
  test('reads the standard layout: id, context, EOS list, variant', () => {
    const folder = loadModelFolder(STORIES_DIR)
    assert.equal(folder.id, 'stories260K')
    assert.equal(folder.contextLength, 512)
    assert.deepEqual(folder.eosTokenIds, [2, 1])
    assert.equal(folder.variant, 'fp32')
    assert.equal(folder.modelType, 'llama')
    assert.equal(loadModelFolder(STORIES_DIR, { id: 'stories' }).id, 'stories')
  })

  test('accepts model.onnx at the root and the fp16 / quantized / merged names', () => {
    assert.match(loadModelFolder(modelCopy('root', 'model.onnx')).onnxPath, /root\/model\.onnx$/)
    const q = loadModelFolder(modelCopy('quant', 'onnx/model_quantized.onnx'))
    assert.equal(q.variant, 'quantized')
    assert.equal(loadModelFolder(modelCopy('half', 'onnx/model_fp16.onnx'), { device: 'cuda' }).variant, 'fp16')
    assert.match(
      loadModelFolder(modelCopy('merged', 'onnx/decoder_model_merged.onnx')).onnxPath,
      /decoder_model_merged\.onnx$/,
    )
    assert.throws(() => loadModelFolder(modelCopy('only-fp32'), { variant: 'fp16' }), /no ONNX file for variant fp16/)
  })

  test('a folder of model folders lists each; an empty one is an error', () => {
    const parent = join(scratch, 'many')
    mkdirSync(parent)
    cpSync(modelCopy('m-a'), join(parent, 'a'), { recursive: true, dereference: false })
    cpSync(modelCopy('m-b'), join(parent, 'b'), { recursive: true, dereference: false })
    assert.deepEqual(
      findModelFolders(parent).map((d) => d.split('/').pop()),
      ['a', 'b'],
    )
    const empty = join(scratch, 'empty')
    mkdirSync(empty)
    assert.throws(() => findModelFolders(empty), /no config\.json or genai_config\.json in it or in any subfolder/)
    assert.throws(() => findModelFolders(join(scratch, 'missing')), /no such folder/)
  })

  test('broken folders fail with one line naming the problem and the folder', () => {
    const noTokenizer = modelCopy('no-tokenizer')
    rmSync(join(noTokenizer, 'tokenizer.json'))
    const badJson = modelCopy('bad-json')
    writeFileSync(join(badJson, 'config.json'), '{ not json')
    const gptj = modelCopy('gptj')
    writeFileSync(
      join(gptj, 'config.json'),
      JSON.stringify({ ...JSON.parse(readFileSync(join(STORIES_DIR, 'config.json'), 'utf8')), model_type: 'gptj' }),
    )
    const noOnnx = modelCopy('no-onnx')
    rmSync(join(noOnnx, 'onnx/model.onnx'))
    const cases: [string, RegExp][] = [
      [noTokenizer, /no-tokenizer: missing tokenizer\.json$/],
      [badJson, /bad-json: config\.json is not valid JSON/],
      [gptj, /gptj: unsupported architecture config\.json model_type "gptj" \(supported: llama, /],
      [noOnnx, /no-onnx: no ONNX file for variant auto/],
    ]
    for (const [dir, message] of cases) {
      assert.throws(
        () => loadModelFolder(dir),
        (error: Error) =>
          error instanceof ModelFolderError && message.test(error.message) && !error.message.includes('\n'),
      )
    }
  })
})

describe('file variants', () => {
  const variants = ['fp32', 'fp16', 'int8', 'uint8', 'quantized', 'q4', 'q4f16', 'bnb4'] as const
  const fileOf = (v: string) => (v === 'fp32' ? 'model.onnx' : `model_${v}.onnx`)

  test('MODEL_VARIANT picks each transformers.js file name, in onnx/ or at the root, merged or not', () => {
    for (const variant of variants) {
      const plain = loadModelFolder(modelCopy(`v-${variant}`, `onnx/${fileOf(variant)}`), { variant })
      assert.deepEqual(
        [plain.variant, plain.onnxPath.split('/').slice(-2).join('/')],
        [variant, `onnx/${fileOf(variant)}`],
      )
      const merged = variant === 'fp32' ? 'decoder_model_merged.onnx' : `decoder_model_merged_${variant}.onnx`
      const root = loadModelFolder(modelCopy(`m-${variant}`, merged), { variant })
      assert.deepEqual([root.variant, root.onnxPath.split('/').pop()], [variant, merged])
    }
    assert.throws(
      () => loadModelFolder(modelCopy('only-fp32-b'), { variant: 'q4' }),
      /no ONNX file for variant q4 \(looked for model_q4\.onnx, decoder_model_merged_q4\.onnx/,
    )
  })

  test('auto prefers fp32, then 8-bit, then 4-bit, then fp16 on CPU, and fp16 first on CUDA', () => {
    const dir = modelCopy('auto', 'onnx/model_fp16.onnx')
    for (const name of ['model_q4.onnx', 'model_int8.onnx', 'model_q4f16.onnx'])
      symlinkSync(join(STORIES_DIR, 'onnx/model.onnx'), join(dir, 'onnx', name))
    assert.equal(loadModelFolder(dir).variant, 'int8')
    assert.equal(loadModelFolder(dir, { device: 'cuda' }).variant, 'fp16')
    rmSync(join(dir, 'onnx/model_int8.onnx'))
    assert.equal(loadModelFolder(dir).variant, 'q4')
    rmSync(join(dir, 'onnx/model_fp16.onnx'))
    assert.equal(loadModelFolder(dir, { device: 'cuda' }).variant, 'q4f16')
    symlinkSync(join(STORIES_DIR, 'onnx/model.onnx'), join(dir, 'onnx/model.onnx'))
    assert.equal(loadModelFolder(dir).variant, 'fp32')
  })

  test('the MODEL_VARIANT setting takes exactly these names', () => {
    assert.equal(loadBackendConfig({ MODEL_VARIANT: 'q4f16' }).MODEL_VARIANT, 'q4f16')
    assert.throws(() => loadBackendConfig({ MODEL_VARIANT: 'int4' }), /MODEL_VARIANT: /)
  })
})

describe('onnxruntime-genai model-builder folders', () => {
  const genai = (name: string, options: Partial<BuildOptions> = {}) => {
    const dir = join(scratch, name)
    return buildRandomLlama({ dir, preset: 'tiny', seed: 5, style: 'genai', hfConfig: false, ...options }).then(
      () => dir,
    )
  }
  const editConfig = (dir: string, edit: (config: any) => void) => {
    const config = JSON.parse(readFileSync(join(dir, 'genai_config.json'), 'utf8'))
    edit(config)
    writeFileSync(join(dir, 'genai_config.json'), JSON.stringify(config))
  }

  test('loads without config.json: type, context, EOS, shapes and names come from genai_config.json', async () => {
    const dir = await genai('genai-plain', { size: { contextLength: 300 } })
    editConfig(dir, (c) => {
      c.model.eos_token_id = [2, 7]
      c.model.decoder.inputs.past_key_names = 'past_key_values.%d.key'
    })
    assert.deepEqual(findModelFolders(dir), [dir])
    const folder = loadModelFolder(dir)
    assert.equal(folder.variant, 'genai')
    assert.equal(relativeOnnxPath(folder), 'model.onnx')
    assert.equal(folder.modelType, 'llama')
    assert.equal(folder.contextLength, 300)
    assert.deepEqual(folder.eosTokenIds, [2, 7])
    assert.deepEqual(folder.expected, { layers: 4, kvHeads: 4, headDim: 16, vocabSize: 512 })
    assert.equal(folder.io.presentKey, 'present.%d.key')
    assert.equal(folder.randomWeights, false, 'without config.json the random-weights marker is absent')
    const parent = join(scratch, 'genai-parent')
    mkdirSync(parent)
    cpSync(dir, join(parent, 'child'), { recursive: true })
    assert.deepEqual(findModelFolders(parent), [join(parent, 'child')])
  })

  test('with config.json beside it, model_type comes from there and the shapes from genai_config.json', async () => {
    const dir = await genai('genai-hf', { hfConfig: true, modelType: 'qwen2', weights: 'q4' })
    const folder = loadModelFolder(dir)
    assert.equal(folder.modelType, 'qwen2')
    assert.equal(folder.randomWeights, true)
    assert.equal(folder.expected?.headDim, 16)
  })

  test('bad genai folders fail with one line naming the problem', async () => {
    const dir = await genai('genai-base')
    const broken = (name: string, edit: (config: any) => void) => {
      const copy = join(scratch, name)
      cpSync(dir, copy, { recursive: true })
      editConfig(copy, edit)
      return copy
    }
    const cases: [string, RegExp][] = [
      [
        broken('g-no-head', (c) => delete c.model.decoder.head_size),
        /g-no-head: genai_config\.json: model\.decoder\.head_size: /,
      ],
      [
        broken('g-pattern', (c) => (c.model.decoder.outputs.present_key_names = 'present.key')),
        /g-pattern: genai_config\.json: model\.decoder\.outputs\.present_key_names: must contain %d/,
      ],
      [
        broken('g-file', (c) => (c.model.decoder.filename = 'decoder.onnx')),
        /g-file: genai_config\.json names decoder file decoder\.onnx, which does not exist$/,
      ],
      [
        broken('g-outside', (c) => (c.model.decoder.filename = '../genai-base/model.onnx')),
        /g-outside: genai_config\.json decoder\.filename "\.\.\/genai-base\/model\.onnx" points outside the folder$/,
      ],
      [
        broken('g-whisper', (c) => (c.model.type = 'whisper')),
        /g-whisper: unsupported architecture genai_config\.json model\.type "whisper" \(supported: /,
      ],
    ]
    for (const [folder, message] of cases) {
      assert.throws(
        () => loadModelFolder(folder),
        (error: Error) =>
          error instanceof ModelFolderError && message.test(error.message) && !error.message.includes('\n'),
        folder,
      )
    }
    assert.throws(
      () => loadModelFolder(dir, { variant: 'q4' }),
      /MODEL_VARIANT=q4 does not apply: a genai_config\.json folder holds one model file \(model\.onnx\)/,
    )
  })
})
