import assert from 'node:assert/strict'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, test } from 'node:test'
import { ModelFolderError, findModelFolders, loadModelFolder } from '../../../backend/model/folder.ts'
import { STORIES_DIR } from '../../helpers/paths.ts'

const scratch = mkdtempSync(join(tmpdir(), 'switchyard-folder-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

/** A copy of the stories260K folder's small files, with the ONNX file linked, to break at will. */
function modelCopy(name: string, onnxName = 'onnx/model.onnx'): string {
  const dir = join(scratch, name)
  mkdirSync(join(dir, 'onnx'), { recursive: true })
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json']) cpSync(join(STORIES_DIR, f), join(dir, f))
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
    assert.match(loadModelFolder(modelCopy('merged', 'onnx/decoder_model_merged.onnx')).onnxPath, /decoder_model_merged\.onnx$/)
    assert.throws(() => loadModelFolder(modelCopy('only-fp32'), { variant: 'fp16' }), /no ONNX file for variant fp16/)
  })

  test('a folder of model folders lists each; an empty one is an error', () => {
    const parent = join(scratch, 'many')
    mkdirSync(parent)
    cpSync(modelCopy('m-a'), join(parent, 'a'), { recursive: true, dereference: false })
    cpSync(modelCopy('m-b'), join(parent, 'b'), { recursive: true, dereference: false })
    assert.deepEqual(findModelFolders(parent).map((d) => d.split('/').pop()), ['a', 'b'])
    const empty = join(scratch, 'empty')
    mkdirSync(empty)
    assert.throws(() => findModelFolders(empty), /no config\.json in it or in any subfolder/)
    assert.throws(() => findModelFolders(join(scratch, 'missing')), /no such folder/)
  })

  test('broken folders fail with one line naming the problem and the folder', () => {
    const noTokenizer = modelCopy('no-tokenizer')
    rmSync(join(noTokenizer, 'tokenizer.json'))
    const badJson = modelCopy('bad-json')
    writeFileSync(join(badJson, 'config.json'), '{ not json')
    const gptj = modelCopy('gptj')
    writeFileSync(join(gptj, 'config.json'), JSON.stringify({ ...JSON.parse(readFileSync(join(STORIES_DIR, 'config.json'), 'utf8')), model_type: 'gptj' }))
    const noOnnx = modelCopy('no-onnx')
    rmSync(join(noOnnx, 'onnx/model.onnx'))
    const cases: [string, RegExp][] = [
      [noTokenizer, /no-tokenizer: missing tokenizer\.json$/],
      [badJson, /bad-json: config\.json is not valid JSON/],
      [gptj, /gptj: unsupported architecture model_type "gptj"/],
      [noOnnx, /no-onnx: no ONNX file for variant auto/],
    ]
    for (const [dir, message] of cases) {
      assert.throws(() => loadModelFolder(dir), (error: Error) => error instanceof ModelFolderError && message.test(error.message) && !error.message.includes('\n'))
    }
  })
})
