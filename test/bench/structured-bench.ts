import { existsSync, mkdirSync, writeFileSync } from 'node:fs'
import { cpus, loadavg } from 'node:os'
import { relative, resolve } from 'node:path'
import type { ServedModel } from '../../backend/engine/text-generation.ts'
import { GrammarCache } from '../../backend/grammar/compiler.ts'
import type { GrammarSpec } from '../../backend/grammar/spec.ts'
import { grammarVocabulary } from '../../backend/grammar/vocabulary.ts'
import { buildRandomLlama, type PresetName } from '../../backend/model/builder/build-model.ts'
import type { SamplingParams } from '../../backend/sampling/sampler.ts'
import { REPO_ROOT } from '../helpers/paths.ts'
import { startServedModel } from '../helpers/served-model.ts'

/**
 * Structured-output benchmark (npm run bench:structured): decode tokens/s with a JSON schema
 * against the same requests unconstrained, at 1 and 16 streams, and time to first token with
 * grammar compilation (a schema never seen: cold; the same schema again: cached). Random-weight
 * builder models (built into .cache/models/<preset> when missing). Knobs (environment):
 *   BENCH_PRESETS=15m,100m  BENCH_STREAMS=1,16  BENCH_TOKENS=128  BENCH_REPS=3  BENCH_TTFT_REPS=5
 *   BENCH_TEMPERATURE=0
 *   BENCH_OUT=docs/bench/structured.json (written with every figure)
 */
const env = (name: string, fallback: string) => process.env[name] ?? fallback
const PRESETS = env('BENCH_PRESETS', '15m,100m')
  .split(',')
  .map((s) => s.trim()) as PresetName[]
const STREAMS = env('BENCH_STREAMS', '1,16').split(',').map(Number)
const TOKENS = Number(env('BENCH_TOKENS', '128'))
const REPS = Number(env('BENCH_REPS', '3'))
const TTFT_REPS = Number(env('BENCH_TTFT_REPS', '5'))
const OUT = resolve(REPO_ROOT, env('BENCH_OUT', 'docs/bench/structured.json'))
const TARGET_AT_16 = 0.85

/**
 * Records of mixed JSON (integers, bounded strings, booleans, enums), more of them than any run
 * can finish, so every stream generates exactly TOKENS tokens in both modes.
 */
const schemaFor = (salt: string): GrammarSpec => ({
  type: 'json_schema',
  schema: JSON.stringify({
    type: 'array',
    minItems: 1000,
    items: {
      type: 'object',
      properties: {
        id: { type: 'integer' },
        [`name${salt}`]: { type: 'string', maxLength: 12 },
        ok: { type: 'boolean' },
        kind: { enum: ['a', 'b', 'c'] },
      },
      required: ['id', `name${salt}`, 'ok', 'kind'],
      additionalProperties: false,
    },
  }),
})
/**
 * Greedy, so both modes pay the same O(vocabulary) argmax. Sampling at temperature 1 on the flat
 * logits of random weights makes the sampler sort nearly the whole vocabulary per token, and a
 * grammar that leaves a few hundred candidates then looks several times *faster* than free
 * text (BENCH_TEMPERATURE=1 shows it); that measures the sampler, not the grammar.
 */
const sampling: SamplingParams = {
  temperature: Number(env('BENCH_TEMPERATURE', '0')),
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: 1,
  logprobs: -1,
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const started = performance.now()
const log = (message: string) =>
  console.log(`[${((performance.now() - started) / 1000).toFixed(0).padStart(4)} s] ${message}`)

async function modelFor(preset: PresetName): Promise<ServedModel> {
  const dir = resolve(REPO_ROOT, '.cache/models', preset)
  if (!existsSync(resolve(dir, 'onnx/model.onnx'))) {
    log(`building the ${preset} preset into ${relative(REPO_ROOT, dir)}`)
    await buildRandomLlama({ dir, preset, seed: 1, force: true })
  }
  return startServedModel(dir)
}

/**
 * Generates `streams` × TOKENS tokens on the engine itself (its worker's step loop, where the
 * masks are computed and applied), without the API layer's text decoding: random-weight
 * tokens are often invalid UTF-8, which makes free text far dearer to decode than JSON and
 * would credit the grammar with the decoder's cost. Returns aggregate tokens/s and the first token's delay.
 */
async function run(
  model: ServedModel,
  prompt: number[],
  streams: number,
  grammar?: GrammarSpec,
  maxTokens = TOKENS,
): Promise<{ tokensPerSecond: number; ttftMs: number; tokens: number }> {
  const start = performance.now()
  if (grammar) {
    const compiled = await model.engine.compileGrammar(grammar)
    if (!compiled.ok) throw new Error(compiled.message)
  }
  let tokens = 0
  let ttftMs = 0
  await new Promise<void>((resolve, reject) => {
    let finished = 0
    for (let i = 0; i < streams; i++) {
      model.engine.submit(
        { promptIds: prompt, maxTokens, sampling: { ...sampling, seed: i }, eosTokenIds: [], grammar },
        (event) => {
          if (event.token !== undefined && tokens++ === 0) ttftMs = performance.now() - start
          if (event.finish === 'error') reject(new Error(event.message))
          else if (event.finish && ++finished === streams) resolve()
        },
      )
    }
  })
  return { tokensPerSecond: tokens / ((performance.now() - start) / 1000), ttftMs, tokens }
}

/**
 * What the grammar adds per token, measured alone (no model, in this thread): the next-token
 * mask (xgrammar plus this project's UTF-8 and control-character guards) and accepting the
 * token, over `steps` tokens of the benchmark's schema, picking allowed tokens pseudo-randomly.
 */
async function maskCostPerToken(model: ServedModel, steps = 300): Promise<number> {
  const vocabulary = grammarVocabulary(
    model.folder.tokenizerJson,
    model.engine.info.shape.vocabSize,
    model.folder.eosTokenIds,
  )
  const cache = new GrammarCache(vocabulary, 2)
  await cache.warm()
  const constraint = await cache.constraint(schemaFor(''))
  const V = vocabulary.vocabSize
  let state = 1
  const start = performance.now()
  for (let step = 0; step < steps; step++) {
    const mask = await constraint.nextTokenMask()
    const allowed: number[] = []
    for (let id = 0; id < V; id++) if ((mask[id >> 5] >>> (id & 31)) & 1) allowed.push(id)
    state = (state * 1103515245 + 12345) % 2147483648
    constraint.accept(allowed[state % allowed.length])
  }
  const perToken = (performance.now() - start) / steps
  constraint.dispose()
  return perToken
}

interface PresetResult {
  preset: string
  parameters: number
  /** Milliseconds of grammar work per constrained token (mask + accept), measured alone. */
  maskMsPerToken: number
  throughput: { streams: number; unconstrained: number; constrained: number; ratio: number }[]
  ttft: { unconstrainedMs: number; coldMs: number; cachedMs: number; coldCompileMs: number }
}

async function benchPreset(preset: PresetName): Promise<PresetResult> {
  const model = await modelFor(preset)
  const prompt = model.tokenizer.encode('Once upon a time')
  log(
    `${preset}: ${model.engine.info.parameters.toLocaleString('en')} parameters, vocabulary ${model.engine.info.shape.vocabSize}`,
  )
  try {
    const grammar = schemaFor('')
    await run(model, prompt, 2, grammar) // warm-up: JIT, onnxruntime, the grammar cached
    await run(model, prompt, 2)
    const throughput: PresetResult['throughput'] = []
    for (const streams of STREAMS) {
      const free: number[] = []
      const constrained: number[] = []
      // Interleaved, so a burst of outside load hits both modes alike.
      for (let rep = 0; rep < REPS; rep++) {
        free.push((await run(model, prompt, streams)).tokensPerSecond)
        constrained.push((await run(model, prompt, streams, grammar)).tokensPerSecond)
      }
      const row = {
        streams,
        unconstrained: median(free),
        constrained: median(constrained),
        ratio: median(constrained) / median(free),
      }
      throughput.push(row)
      log(
        `${preset}, ${streams} stream(s): unconstrained ${row.unconstrained.toFixed(1)} tok/s, JSON schema ${row.constrained.toFixed(1)} tok/s (${(row.ratio * 100).toFixed(1)}%)`,
      )
    }
    const cold: number[] = []
    const cached: number[] = []
    const free: number[] = []
    const compile: number[] = []
    for (let rep = 0; rep < TTFT_REPS; rep++) {
      const fresh = schemaFor(`_${rep}_${Date.now()}`)
      const t = performance.now()
      const result = await model.engine.compileGrammar(schemaFor(`_c${rep}_${Date.now()}`))
      if (result.ok) compile.push(performance.now() - t)
      cold.push((await runFirstToken(model, prompt, fresh)).ttftMs)
      cached.push((await runFirstToken(model, prompt, fresh)).ttftMs)
      free.push((await runFirstToken(model, prompt)).ttftMs)
    }
    const ttft = {
      unconstrainedMs: median(free),
      coldMs: median(cold),
      cachedMs: median(cached),
      coldCompileMs: median(compile),
    }
    log(
      `${preset} time to first token: unconstrained ${ttft.unconstrainedMs.toFixed(1)} ms, schema cold ${ttft.coldMs.toFixed(1)} ms (compile alone ${ttft.coldCompileMs.toFixed(1)} ms), cached ${ttft.cachedMs.toFixed(1)} ms`,
    )
    const maskMsPerToken = await maskCostPerToken(model)
    log(
      `${preset}: grammar work per constrained token (mask + accept, measured alone): ${maskMsPerToken.toFixed(3)} ms`,
    )
    return { preset, parameters: model.engine.info.parameters, maskMsPerToken, throughput, ttft }
  } finally {
    await model.engine.close()
  }
}

const runFirstToken = (model: ServedModel, prompt: number[], grammar?: GrammarSpec) => run(model, prompt, 1, grammar, 1)

log(
  `structured-output benchmark: presets ${PRESETS.join(', ')}, streams ${STREAMS.join(', ')}, temperature ${sampling.temperature}, ${TOKENS} tokens per stream, ${REPS} reps (medians), ${cpus().length} cores, load ${loadavg()[0].toFixed(1)}`,
)
const results: PresetResult[] = []
for (const preset of PRESETS) results.push(await benchPreset(preset))
for (const r of results) {
  const at16 = r.throughput.find((t) => t.streams === 16)
  if (at16)
    log(
      `${r.preset}: constrained keeps ${(at16.ratio * 100).toFixed(1)}% of unconstrained tokens/s at 16 streams (target ≥ ${TARGET_AT_16 * 100}%): ${at16.ratio >= TARGET_AT_16 ? 'met' : 'NOT met'}`,
    )
}
mkdirSync(resolve(OUT, '..'), { recursive: true })
writeFileSync(
  OUT,
  `${JSON.stringify({ date: new Date().toISOString(), temperature: sampling.temperature, tokensPerStream: TOKENS, reps: REPS, ttftReps: TTFT_REPS, loadAverage: loadavg()[0], cores: cpus().length, results }, null, 2)}\n`,
)
log(`figures written to ${relative(REPO_ROOT, OUT)}`)
