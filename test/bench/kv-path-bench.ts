import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { buildRandomLlama } from '../../backend/model/builder/build-model.ts'
import type { GraphStyle } from '../../backend/model/builder/llama-graph.ts'
import { loadModelFolder } from '../../backend/model/folder.ts'
import { ModelRunner } from '../../backend/model/runner.ts'

/**
 * node --import tsx test/bench/kv-path-bench.ts — decode step time of the two fast KV paths on
 * the same random weights: `new-rows` (Optimum graph, Concat rewritten to expose new rows) and
 * `in-place` (the model builder's GroupQueryAttention graph, past and present bound to one
 * buffer). Same preset and seed, so both graphs compute the same function. Rows of `PROMPT`
 * tokens are prefilled, then `STEPS` decode steps are timed; the two styles alternate round by
 * round and the median per-step time of each is printed with the ratio in-place / new-rows.
 *
 * Env: KV_BENCH_PRESET (default 15m), KV_BENCH_BATCHES (default 1,16), KV_BENCH_PROMPT (default
 * 256), KV_BENCH_STEPS (default 32), KV_BENCH_ROUNDS (default 5), KV_BENCH_THREADS (default 1).
 */
const preset = (process.env.KV_BENCH_PRESET ?? '15m') as '15m'
const batches = (process.env.KV_BENCH_BATCHES ?? '1,16').split(',').map(Number)
const promptLength = Number(process.env.KV_BENCH_PROMPT ?? 256)
const steps = Number(process.env.KV_BENCH_STEPS ?? 32)
const rounds = Number(process.env.KV_BENCH_ROUNDS ?? 5)
const threads = Number(process.env.KV_BENCH_THREADS ?? 1)

const scratch = mkdtempSync(join(tmpdir(), 'switchyard-kv-bench-'))
try {
  const runners = new Map<GraphStyle, ModelRunner>()
  for (const style of ['optimum', 'genai'] as const) {
    const dir = join(scratch, style)
    await buildRandomLlama({ dir, preset, seed: 1, style })
    const folder = loadModelFolder(dir)
    runners.set(
      style,
      await ModelRunner.load(
        folder.onnxPath,
        { device: 'cpu', cudaDeviceId: 0, cpuThreads: threads, graphOptimization: 'all' },
        () => {},
        folder,
      ),
    )
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
  console.log(
    `preset ${preset}, prompt ${promptLength} tokens, ${steps} decode steps, ${rounds} rounds, ${threads} thread(s)`,
  )
  for (const batch of batches) {
    const times = new Map<GraphStyle, number[]>([
      ['optimum', []],
      ['genai', []],
    ])
    for (let round = 0; round < rounds; round++) {
      for (const [style, runner] of runners) {
        const prompt = Array.from({ length: promptLength }, (_, i) => 3 + ((i * 7) % 500))
        await runner.prefill(Array.from({ length: batch }, () => ({ row: runner.cache.addRow(), tokens: prompt })))
        const tokens = new Array(batch).fill(5)
        const start = performance.now()
        for (let s = 0; s < steps; s++) await runner.decode(tokens)
        times.get(style)!.push((performance.now() - start) / steps)
        for (let r = runner.cache.rows - 1; r >= 0; r--) runner.cache.removeRow(r)
      }
    }
    const [concat, inPlace] = [median(times.get('optimum')!), median(times.get('genai')!)]
    console.log(
      `batch ${batch}: new-rows ${concat.toFixed(2)} ms/step, in-place ${inPlace.toFixed(2)} ms/step, in-place / new-rows ${(inPlace / concat).toFixed(2)}`,
    )
  }
  for (const runner of runners.values()) await runner.dispose()
} finally {
  rmSync(scratch, { recursive: true, force: true })
}
