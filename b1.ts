import * as ort from 'onnxruntime-node'
import { ModelRunner } from './backend/model/runner.ts'
import { argmax } from './backend/sampling/sampler.ts'
const path = '/work/shared/models/stories260K/onnx/model.onnx'
const prompt = [1, 403, 407, 261, 378]
async function plain(level: any) {
  const s = await ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: level })
  const mk = (ids: number[], pos0: number, past: any, total: number) => {
    const f: any = { input_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map(BigInt)), [1, ids.length]),
      attention_mask: new ort.Tensor('int64', new BigInt64Array(total).fill(1n), [1, total]),
      position_ids: new ort.Tensor('int64', BigInt64Array.from(ids.map((_, i) => BigInt(pos0 + i))), [1, ids.length]) }
    for (let l = 0; l < 5; l++) for (const kv of ['key', 'value']) f[`past_key_values.${l}.${kv}`] = past ? past[`present.${l}.${kv}`] : new ort.Tensor('float32', new Float32Array(0), [1, 4, 0, 8])
    return f
  }
  const best = []
  for (let rep = 0; rep < 5; rep++) {
    const t0 = performance.now()
    let out = await s.run(mk(prompt, 0, null, 5)); let len = 5
    for (let i = 0; i < 200; i++) { const t = argmax(out.logits.data.subarray(out.logits.data.length - 512) as Float32Array); out = await s.run(mk([t], len, out, len + 1)); len++ }
    best.push(200 / (performance.now() - t0) * 1000)
  }
  return Math.max(...best)
}
async function ours(level: any) {
  const r = await ModelRunner.load(path, { device: 'cpu', cudaDeviceId: 0, cpuThreads: 1, graphOptimization: level }, console.log)
  const best = []
  for (let rep = 0; rep < 5; rep++) {
    const t0 = performance.now()
    const row = r.cache.addRow(); let l = (await r.prefill([{ row, tokens: prompt }]))[0]
    for (let i = 0; i < 200; i++) { const t = argmax(l); l = await r.decode([t]) }
    r.cache.removeRow(row)
    best.push(200 / (performance.now() - t0) * 1000)
  }
  return Math.max(...best)
}
for (const level of ['all', 'extended', 'basic']) console.log(level, 'plain', (await plain(level)).toFixed(0), 'ours', (await ours(level)).toFixed(0))
