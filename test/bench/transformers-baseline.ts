import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { basename, dirname, join } from 'node:path'
import { AutoModelForCausalLM, BaseStreamer, env, Tensor } from '@huggingface/transformers'

/**
 * The baseline side of the backend benchmark: transformers.js (`@huggingface/transformers`)
 * running the same model folder on the same onnxruntime-node build and thread count.
 */

export interface StreamRun {
  streams: number
  tokensPerStream: number
  /** Generated tokens counted on the output (checked: streams × tokensPerStream). */
  tokens: number
  seconds: number
  tokensPerSecond: number
  /** Per stream: ms from the start of the run to that stream's first generated token. */
  ttftMs: number[]
}

// transformers.js loads onnxruntime-node with require() (dist/transformers.node.mjs,
// src/backends/onnx-node.js); resolving it from the package's own folder yields the very same
// CJS module instance, so wrapping InferenceSession.create there sees the options it passes.
const transformersRequire = createRequire(createRequire(import.meta.url).resolve('@huggingface/transformers'))
const ortForTransformers = transformersRequire('onnxruntime-node') as {
  InferenceSession: { create: (...args: unknown[]) => Promise<unknown> }
}
const createdWith: Record<string, unknown>[] = []
const originalCreate = ortForTransformers.InferenceSession.create
ortForTransformers.InferenceSession.create = function (this: unknown, ...args: unknown[]) {
  const options = args.find((a, i) => i > 0 && a !== null && typeof a === 'object' && !ArrayBuffer.isView(a)) as
    | Record<string, unknown>
    | undefined
  createdWith.push({ ...(options ?? {}) })
  return originalCreate.apply(this, args)
}

/**
 * The version of package `name` as `req` resolves it. Some packages do not export their
 * package.json, so this walks up from the resolved entry to the folder holding it.
 */
export function packageVersion(req: NodeJS.Require, name: string): string {
  let dir = dirname(req.resolve(name))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8'))
      if (pkg.name === name) return String(pkg.version)
    }
    const parent = dirname(dir)
    if (parent === dir) return 'unknown'
    dir = parent
  }
}

/** Versions of the libraries the baseline runs on, as resolved from its own package folder. */
export function transformersVersions(): { transformers: string; onnxruntimeNode: string; onnxruntimeCommon: string } {
  return {
    transformers: packageVersion(createRequire(import.meta.url), '@huggingface/transformers'),
    onnxruntimeNode: packageVersion(transformersRequire, 'onnxruntime-node'),
    onnxruntimeCommon: packageVersion(
      createRequire(transformersRequire.resolve('onnxruntime-node')),
      'onnxruntime-common',
    ),
  }
}

const osThreads = () => readdirSync('/proc/self/task').length

export interface ThreadCheck {
  /** intraOpNumThreads / interOpNumThreads that reached InferenceSession.create. */
  intraOpNumThreads: unknown
  interOpNumThreads: unknown
  executionProviders: unknown
  /** OS threads the process gained while the session was created (an intra-op pool of n adds n - 1). */
  osThreadsAdded: number
  /** The options carry the requested thread count and no extra pool thread appeared. */
  ok: boolean
}

export interface Baseline {
  model: any
  threadCheck: ThreadCheck
  loadMs: number
  dispose(): Promise<void>
}

/** `dtype` picks the file as transformers.js names them: fp32 → onnx/model.onnx, q4 → onnx/model_q4.onnx, ... */
export async function loadBaseline(dir: string, threads: number, dtype = 'fp32'): Promise<Baseline> {
  env.allowRemoteModels = false
  env.allowLocalModels = true
  env.localModelPath = `${dirname(dir)}/`
  const before = createdWith.length
  const threadsBefore = osThreads()
  const started = performance.now()
  const model = await AutoModelForCausalLM.from_pretrained(basename(dir), {
    device: 'cpu',
    dtype,
    session_options: { intraOpNumThreads: threads, interOpNumThreads: 1 },
  } as any)
  const loadMs = performance.now() - started
  const added = osThreads() - threadsBefore
  const sessions = createdWith.slice(before)
  if (sessions.length !== 1)
    throw new Error(`transformers.js created ${sessions.length} onnxruntime sessions for ${dir}, expected 1`)
  const options = sessions[0]
  const threadCheck: ThreadCheck = {
    intraOpNumThreads: options.intraOpNumThreads,
    interOpNumThreads: options.interOpNumThreads,
    executionProviders: options.executionProviders,
    osThreadsAdded: added,
    ok: options.intraOpNumThreads === threads && options.interOpNumThreads === 1 && added <= threads - 1,
  }
  return { model, threadCheck, loadMs, dispose: async () => void (await model.dispose()) }
}

/** Times the first generated token: generate() put()s the prompt first, then each new token. */
class TimingStreamer extends BaseStreamer {
  private calls = 0
  firstTokenAt = Number.NaN
  constructor(private readonly started: number) {
    super()
  }
  override put(): void {
    this.calls++
    if (this.calls === 2) this.firstTokenAt = performance.now() - this.started
  }
  override end(): void {}
}

const ids = (promptIds: number[]) =>
  new Tensor('int64', BigInt64Array.from(promptIds.map(BigInt)), [1, promptIds.length])

/**
 * `streams` concurrent greedy generate() calls of exactly `tokens` new tokens each
 * (min_new_tokens = max_new_tokens masks EOS). Returns the run and stream 0's tokens.
 */
export async function runTransformers(
  baseline: Baseline,
  promptIds: number[],
  streams: number,
  tokens: number,
): Promise<{ run: StreamRun; firstStream: number[] }> {
  const started = performance.now()
  const streamers = Array.from({ length: streams }, () => new TimingStreamer(started))
  const outputs = await Promise.all(
    streamers.map(
      (streamer) =>
        baseline.model.generate({
          input_ids: ids(promptIds),
          attention_mask: new Tensor('int64', new BigInt64Array(promptIds.length).fill(1n), [1, promptIds.length]),
          max_new_tokens: tokens,
          min_new_tokens: tokens,
          do_sample: false,
          streamer,
        }) as Promise<Tensor>,
    ),
  )
  const seconds = (performance.now() - started) / 1000
  let produced = 0
  for (const output of outputs) {
    if (output.dims[0] !== 1) throw new Error(`transformers.js returned batch ${output.dims[0]}`)
    produced += output.dims[1] - promptIds.length
  }
  if (produced !== streams * tokens)
    throw new Error(`transformers.js produced ${produced} tokens, expected ${streams * tokens}`)
  const ttftMs = streamers.map((s) => s.firstTokenAt)
  if (ttftMs.some(Number.isNaN)) throw new Error('transformers.js streamer saw no generated token')
  const firstStream = Array.from(outputs[0].data as BigInt64Array, Number).slice(promptIds.length)
  return {
    run: { streams, tokensPerStream: tokens, tokens: produced, seconds, tokensPerSecond: produced / seconds, ttftMs },
    firstStream,
  }
}
