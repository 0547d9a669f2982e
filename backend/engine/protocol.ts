import type { GrammarSpec } from '../grammar/spec.ts'
import type { GrammarVocabulary } from '../grammar/vocabulary.ts'
import type { IoNames } from '../model/genai-config.ts'
import type { ExpectedShape, KvPath, ModelShape } from '../model/runner.ts'
import type { ExecutionOptions } from '../model/session.ts'
import type { SchedulerOptions } from '../scheduler/scheduler.ts'
import type { SequenceRequest, StepStats, TokenEvent } from '../scheduler/types.ts'

/** Messages between the engine client (main thread) and the engine worker (one per model). */
export interface EngineWorkerData {
  onnxPath: string
  /** Graph input / output names (from genai_config.json); Optimum's when absent. */
  io?: IoNames
  /** Shapes from genai_config.json, for graphs whose dims are symbolic. */
  expected?: ExpectedShape
  execution: ExecutionOptions
  scheduler: SchedulerOptions
  /** Grammar-constrained decoding: the model's vocabulary and how many compiled grammars to keep. */
  grammar?: { vocabulary: GrammarVocabulary; cacheSize: number }
  /** Heartbeat slot (heartbeat.ts) and how often the worker beats while idle. */
  heartbeat: SharedArrayBuffer
  idleBeatIntervalMs: number
}

export type ToWorker =
  | { type: 'add'; request: SequenceRequest }
  | { type: 'abort'; id: number }
  | { type: 'stop' }
  /** Compile (or find cached) a grammar; answered with `compiled` and the same ticket. */
  /** `replayIds`: also check that a resumed choice's tokens follow the grammar. */
  | { type: 'compile'; ticket: number; spec: GrammarSpec; replayIds?: number[] }

/** Outcome of a `compile`: `invalid` is the client's grammar at fault; otherwise the engine's. */
export type CompileResult =
  | { ok: true; ms: number; cached: boolean }
  | { ok: false; invalid: boolean; message: string; param?: string }

export interface EngineInfo {
  shape: ModelShape
  device: 'cpu' | 'cuda'
  parameters: number
  movesOnlyNewRows: boolean
  kvPath: KvPath
  /** The LM head runs only on sampled positions (see backend/model/logit-rows.ts). */
  gathersLogitRows: boolean
  loadMs: number
  warmupMs: number
}

export type FromWorker =
  | ({ type: 'ready' } & EngineInfo)
  | { type: 'failed'; message: string }
  | { type: 'step'; events: TokenEvent[]; stats: StepStats }
  | { type: 'log'; message: string }
  | { type: 'compiled'; ticket: number; result: CompileResult }
  /** Sequences that ended before reaching the scheduler (their grammar failed, or an abort). */
  | { type: 'ended'; events: TokenEvent[] }
