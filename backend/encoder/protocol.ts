import type { ExecutionOptions } from '../model/session.ts'
import type { BatcherOptions, BatchStats } from './batcher.ts'
import type { EncoderRunnerOptions } from './runner.ts'

/** Messages between the encoder engine (main thread) and its worker (one per encoder model). */
export interface EncoderWorkerData {
  onnxPath: string
  execution: ExecutionOptions
  runner: EncoderRunnerOptions
  batching: BatcherOptions
  /** Heartbeat slot (engine/heartbeat.ts) and how often the worker beats while idle. */
  heartbeat: SharedArrayBuffer
  idleBeatIntervalMs: number
}

export type ToEncoderWorker = { type: 'encode'; id: number; ids: number[] } | { type: 'stop' }

export interface EncoderInfo {
  device: 'cpu' | 'cuda'
  parameters: number
  /** Length of each result vector: embedding dimensions, or the number of classes. */
  width: number
  loadMs: number
  warmupMs: number
}

export type FromEncoderWorker =
  | ({ type: 'ready' } & EncoderInfo)
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; vector: Float32Array }
  | { type: 'error'; id: number; message: string }
  | { type: 'batch'; stats: BatchStats }
  | { type: 'log'; message: string }
