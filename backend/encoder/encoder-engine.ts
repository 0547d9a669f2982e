import type { Worker } from 'node:worker_threads'
import { Heartbeat, idleBeatIntervalMs } from '../engine/heartbeat.ts'
import { startModelWorker, stopModelWorker } from '../engine/model-worker.ts'
import type { BatchStats } from './batcher.ts'
import type { EncoderInfo, EncoderWorkerData, FromEncoderWorker, ToEncoderWorker } from './protocol.ts'

export interface EncoderEvents {
  onBatch?: (stats: BatchStats) => void
  onLog?: (message: string) => void
}

/** The encoder could not run an input (worker crashed or closed, or the forward pass failed). */
export class EncoderError extends Error {
  override name = 'EncoderError'
}

/** The main thread's handle on one encoder model's worker: submits inputs, resolves their vectors. */
export class EncoderEngine {
  readonly info: EncoderInfo
  private readonly pending = new Map<number, { resolve: (v: Float32Array) => void; reject: (e: Error) => void }>()
  private nextId = 1
  private closed = false

  private constructor(
    private readonly worker: Worker,
    info: EncoderInfo,
    events: EncoderEvents,
    private readonly heartbeat: Heartbeat,
  ) {
    this.info = info
    worker.on('message', (message: FromEncoderWorker) => {
      if (message.type === 'result') this.settle(message.id)?.resolve(message.vector)
      else if (message.type === 'error')
        this.settle(message.id)?.reject(new EncoderError(`encoder forward pass failed: ${message.message}`))
      else if (message.type === 'batch') events.onBatch?.(message.stats)
      else if (message.type === 'log') events.onLog?.(message.message)
    })
    worker.on('error', (error) => this.failAll(`encoder worker crashed: ${error.message}`))
    worker.on('exit', () => this.failAll('encoder worker exited'))
  }

  /** Starts the worker, loads and warms up the model; resolves once it can take inputs. */
  static async start(
    options: Omit<EncoderWorkerData, 'heartbeat' | 'idleBeatIntervalMs'> & { stallTimeoutMs: number },
    events: EncoderEvents = {},
  ): Promise<EncoderEngine> {
    const { stallTimeoutMs, ...rest } = options
    const heartbeat = new Heartbeat()
    const data: EncoderWorkerData = {
      ...rest,
      heartbeat: heartbeat.buffer,
      idleBeatIntervalMs: idleBeatIntervalMs(stallTimeoutMs),
    }
    const { worker, info } = await startModelWorker<EncoderInfo>(
      'encoder',
      new URL('./encoder-worker.ts', import.meta.url),
      data,
      events.onLog,
    )
    return new EncoderEngine(worker, info, events, heartbeat)
  }

  /** Milliseconds since the worker last showed progress (a finished batch, or idling). */
  get msSinceProgress(): number {
    return this.heartbeat.ageMs()
  }

  /** Inputs submitted and not yet answered. */
  get activeCount(): number {
    return this.pending.size
  }

  /** One input's vector: its pooled embedding or its class probabilities. */
  encode(ids: number[]): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new EncoderError('encoder is closed'))
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.post({ type: 'encode', id, ids })
    })
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await stopModelWorker(this.worker, () => this.post({ type: 'stop' }))
  }

  private post(message: ToEncoderWorker): void {
    this.worker.postMessage(message)
  }

  private settle(id: number) {
    const entry = this.pending.get(id)
    this.pending.delete(id)
    return entry
  }

  private failAll(message: string): void {
    const wasClosed = this.closed
    this.closed = true
    for (const { reject } of this.pending.values()) reject(new EncoderError(wasClosed ? 'encoder is closed' : message))
    this.pending.clear()
  }
}
