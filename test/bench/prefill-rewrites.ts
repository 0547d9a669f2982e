import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import { decodeModel, encodeModel, exposeNewKvRows } from '../../backend/model/kv-outputs.ts'
import { gatherLogitRows, LOGIT_ROWS_INPUT } from '../../backend/model/logit-rows.ts'
import { REPO_ROOT } from '../helpers/paths.ts'

/**
 * What each load-time rewrite does to one prefill, in onnxruntime alone (no engine): the same
 * graph as shipped, with the new-KV-rows outputs, with the gathered LM head, and with both,
 * run in interleaved rounds on one prompt. Usage:
 *   node --import tsx test/bench/prefill-rewrites.ts [model.onnx] [prompt tokens] [rounds]
 * (default: .cache/bench-models/smollm2-135m-fp32/onnx/model.onnx, 1500, 2; one thread).
 */
const path = resolve(REPO_ROOT, process.argv[2] ?? join('.cache/bench-models/smollm2-135m-fp32/onnx/model.onnx'))
const length = Number(process.argv[3] ?? 1500)
const rounds = Number(process.argv[4] ?? 2)
const variants: Record<string, (model: ReturnType<typeof decodeModel>) => void> = {
  'as shipped': () => {},
  'new-rows outputs': (m) => void exposeNewKvRows(m),
  'gathered head': (m) => void gatherLogitRows(m),
  both: (m) => {
    gatherLogitRows(m)
    exposeNewKvRows(m)
  },
}
const options: ort.InferenceSession.SessionOptions = {
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
  graphOptimizationLevel: 'all',
  executionMode: 'sequential',
}
const sessions: Record<string, ort.InferenceSession> = {}
for (const [name, rewrite] of Object.entries(variants)) {
  const model = decodeModel(readFileSync(path))
  rewrite(model)
  sessions[name] = await ort.InferenceSession.create(encodeModel(model), options)
}
const base = sessions['as shipped']
const layers = base.inputNames.filter((n) => n.startsWith('past_key_values.') && n.endsWith('.key')).length
const past = base.inputMetadata.find((m) => m.name === 'past_key_values.0.key')!
const [heads, headDim] = past.isTensor ? [past.shape[1] as number, past.shape[3] as number] : [0, 0]
const ids = BigInt64Array.from({ length }, (_, i) => BigInt(3 + ((i * 7919) % 40000)))
const times: Record<string, number[]> = Object.fromEntries(Object.keys(variants).map((k) => [k, []]))
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? Object.keys(variants) : Object.keys(variants).reverse()
  for (const name of order) {
    const session = sessions[name]
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [1, length]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(length).fill(1n), [1, length]),
      position_ids: new ort.Tensor(
        'int64',
        BigInt64Array.from({ length }, (_, i) => BigInt(i)),
        [1, length],
      ),
    }
    if (session.inputNames.includes(LOGIT_ROWS_INPUT))
      feeds[LOGIT_ROWS_INPUT] = new ort.Tensor('int64', BigInt64Array.of(BigInt(length - 1)), [1])
    for (let l = 0; l < layers; l++)
      for (const kind of ['key', 'value'])
        feeds[`past_key_values.${l}.${kind}`] = new ort.Tensor('float32', new Float32Array(0), [1, heads, 0, headDim])
    const started = performance.now()
    await session.run(feeds)
    times[name].push(performance.now() - started)
  }
  console.log(
    `round ${round + 1}: ${Object.entries(times)
      .map(([k, v]) => `${k} ${v.at(-1)!.toFixed(0)} ms`)
      .join(', ')}`,
  )
}
const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor((v.length - 1) / 2)]
console.log(
  `median of ${rounds} (${length} tokens, ${path}): ${Object.entries(times)
    .map(([k, v]) => `${k} ${median(v).toFixed(0)} ms`)
    .join(', ')}`,
)
