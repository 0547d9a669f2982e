import { linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import * as ort from 'onnxruntime-node'
import { errorMessage } from '../../lib/error-message.ts'
import { missingCudaProvider } from './cuda-provider.ts'
import { type IoNames, layerName } from './genai-config.ts'
import { type GraphFacts, readGraphFacts } from './graph-facts.ts'
import { quantizeActivationsPerRow } from './int8-rows.ts'
import { decodeModel, encodeModel, exposeNewKvRows, externalFiles } from './kv-outputs.ts'
import { gatherLogitRows, LOGIT_ROWS_INPUT } from './logit-rows.ts'

export type Device = 'cpu' | 'cuda' | 'auto'
export type GraphOptimization = 'disabled' | 'basic' | 'extended' | 'all'

export interface ExecutionOptions {
  device: Device
  /** CUDA device ordinal (DEVICE=cuda or auto). */
  cudaDeviceId: number
  /** Intra-op threads on CPU; tiny models run fastest on one. */
  cpuThreads: number
  graphOptimization: GraphOptimization
}

export interface LoadedSession {
  session: ort.InferenceSession
  device: 'cpu' | 'cuda'
  /** present.* output name → output holding only that step's new rows, when the graph allows it. */
  newRows: Map<string, string> | null
  /** Name of the input that picks the rows the LM head runs on (see logit-rows.ts); null: every position. */
  logitRows?: string | null
  parameters: number
  facts: GraphFacts
}

type Log = (message: string) => void

/** A decoder gets the KV and LM-head rewrites; an encoder (backend/encoder) only the per-row 8-bit one. */
export type GraphKind = 'decoder' | 'encoder'

/** Creates the onnxruntime session on the configured device; `auto` tries CUDA, then CPU. */
export async function createSession(
  onnxPath: string,
  options: ExecutionOptions,
  log: Log,
  io?: IoNames,
  kind: GraphKind = 'decoder',
): Promise<LoadedSession> {
  const { source, newRows, logitRows, parameters, facts, cleanup } = prepareModel(onnxPath, log, io, kind)
  // auto: look for the CUDA provider first, so its absence is one line, not onnxruntime's loader error.
  const noCuda = options.device === 'auto' ? missingCudaProvider() : null
  if (noCuda) log(`CUDA unavailable: ${noCuda}; running on CPU`)
  const devices: ('cpu' | 'cuda')[] =
    options.device === 'auto' ? (noCuda ? ['cpu'] : ['cuda', 'cpu']) : [options.device]
  let lastError: unknown
  for (const device of devices) {
    try {
      const settings = sessionOptions(device, options)
      const session =
        typeof source === 'string'
          ? await ort.InferenceSession.create(source, settings)
          : await ort.InferenceSession.create(source, settings)
      cleanup()
      return { session, device, newRows, logitRows, parameters, facts }
    } catch (error) {
      lastError = error
      if (options.device === 'auto' && device === 'cuda')
        log(`CUDA execution provider unavailable (${firstLine(error)}); falling back to CPU`)
    }
  }
  cleanup()
  throw new Error(`cannot create an onnxruntime session on ${options.device} for ${onnxPath}: ${firstLine(lastError)}`)
}

function sessionOptions(device: 'cpu' | 'cuda', options: ExecutionOptions): ort.InferenceSession.SessionOptions {
  const common: ort.InferenceSession.SessionOptions = {
    graphOptimizationLevel: options.graphOptimization,
    interOpNumThreads: 1,
    executionMode: 'sequential',
    logSeverityLevel: 3,
  }
  if (device === 'cuda') {
    // CPU stays listed for the few ops the CUDA provider lacks; ORT places them itself.
    return { ...common, executionProviders: [{ name: 'cuda', deviceId: options.cudaDeviceId }, 'cpu'] }
  }
  return { ...common, executionProviders: ['cpu'], intraOpNumThreads: options.cpuThreads, enableCpuMemArena: true }
}

/**
 * Rewrites the graph to expose new KV rows and to run the LM head on chosen rows only. A model with external weight files is written to a
 * temporary folder beside hard links to those files: onnxruntime resolves them relative to the
 * model's path and refuses symbolic links that lead out of its folder. Where no hard link can be
 * made (another file system), the original graph is served, fetching present.* (slower).
 */
interface PreparedModel {
  source: string | Uint8Array
  newRows: Map<string, string> | null
  logitRows: string | null
  parameters: number
  facts: GraphFacts
  /** Removes the temporary folder once the session holds the weights. */
  cleanup: () => void
}

function prepareModel(onnxPath: string, log: Log, io: IoNames | undefined, kind: GraphKind): PreparedModel {
  const cleanup = () => {}
  let model: ReturnType<typeof decodeModel>
  try {
    model = decodeModel(readFileSync(onnxPath))
  } catch (error) {
    throw new Error(`${onnxPath} is not a readable ONNX model: ${firstLine(error)}`)
  }
  const facts = readGraphFacts(model, (layer) => layerName(io?.presentKey ?? 'present.%d.key', layer))
  const { parameters } = facts
  // The LM head runs on the sampled rows only (logit-rows.ts); gathered before the 8-bit rewrite, which then quantizes those rows.
  const decoder = kind === 'decoder'
  const logitRows = decoder && gatherLogitRows(model, io?.logits) ? LOGIT_ROWS_INPUT : null
  if (decoder && !logitRows)
    log(
      `${onnxPath}: the LM head's input was not found (merged decoder or unknown layout); logits are computed for every prompt position`,
    )
  // 8-bit dynamic quantization becomes per row, so batch rows stay independent (int8-rows.ts).
  const requantized = quantizeActivationsPerRow(model) > 0
  // GroupQueryAttention graphs need no KV rewrite: the runner binds past and present to one buffer.
  const newRowsRewrite = !decoder || facts.groupQueryAttention ? null : exposeNewKvRows(model)
  if (!newRowsRewrite && !requantized && !logitRows)
    return { source: onnxPath, newRows: null, logitRows, parameters, facts, cleanup }
  const rewritten = newRowsRewrite ?? { model: encodeModel(model), newRows: null, external: externalFiles(model) }
  if (rewritten.external.length === 0)
    return { source: rewritten.model, newRows: rewritten.newRows, logitRows, parameters, facts, cleanup }
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-model-'))
  try {
    for (const file of rewritten.external) linkSync(resolve(dirname(onnxPath), file), join(dir, file))
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    log(
      `cannot link the external weights of ${onnxPath} into ${tmpdir()} (${firstLine(error)}); serving the graph as stored (no KV fast path, no per-row 8-bit rewrite, logits for every position)`,
    )
    return { source: onnxPath, newRows: null, logitRows: null, parameters, facts, cleanup }
  }
  const path = join(dir, 'model.onnx')
  writeFileSync(path, rewritten.model)
  return {
    source: path,
    newRows: rewritten.newRows,
    logitRows,
    parameters,
    facts,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  }
}

function firstLine(error: unknown): string {
  return errorMessage(error).split('\n')[0]
}
