import type { Worker } from 'node:worker_threads'
import type { GrammarSpec } from '../grammar/spec.ts'
import type { SequenceRequest, StepStats, TokenEvent } from '../scheduler/types.ts'
import { Heartbeat, idleBeatIntervalMs } from './heartbeat.ts'
import { startModelWorker, stopModelWorker } from './model-worker.ts'
import type { CompileResult, EngineInfo, EngineWorkerData, FromWorker, ToWorker } from './protocol.ts'

export type EngineEvents = {
  onStep?: (stats: StepStats, events: TokenEvent[]) => void
  onLog?: (message: string) => void
}

/**
 * The main thread's handle on one model's engine worker: submits sequences, routes each
 * step's token events back to their listeners, and counts what is queued.
 */
export class Engine {
  readonly info: EngineInfo
  private readonly worker: Worker
  private readonly listeners = new Map<number, (event: TokenEvent) => void>()
  /** Submitted sequences that have not produced an event yet (still queued or prefilling). */
  private readonly queued = new Set<number>()
  private nextId = 1
  private nextTicket = 1
  private readonly compiles = new Map<number, (result: CompileResult) => void>()
  private closed = false

  private constructor(
    worker: Worker,
    info: EngineInfo,
    events: EngineEvents,
    private readonly heartbeat: Heartbeat,
  ) {
    this.worker = worker
    this.info = info
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'step') {
        for (const event of message.events) this.dispatch(event)
        events.onStep?.(message.stats, message.events)
      } else if (message.type === 'log') events.onLog?.(message.message)
      else if (message.type === 'ended')
        message.events.forEach((event) => {
          this.dispatch(event)
        })
      else if (message.type === 'compiled') {
        this.compiles.get(message.ticket)?.(message.result)
        this.compiles.delete(message.ticket)
      }
    })
    worker.on('error', (error) => this.failAll(`engine worker crashed: ${error.message}`))
    worker.on('exit', () => this.failAll('engine worker exited'))
  }

  /**
   * Starts the worker, loads and warms up the model; resolves once it can take requests.
   * `stallTimeoutMs` is how long the worker may show no progress before `stalledForMs` reports it.
   */
  static async start(
    options: Omit<EngineWorkerData, 'heartbeat' | 'idleBeatIntervalMs'> & { stallTimeoutMs: number },
    events: EngineEvents = {},
  ): Promise<Engine> {
    const { stallTimeoutMs, ...rest } = options
    const heartbeat = new Heartbeat()
    const data: EngineWorkerData = {
      ...rest,
      heartbeat: heartbeat.buffer,
      idleBeatIntervalMs: idleBeatIntervalMs(stallTimeoutMs),
    }
    const { worker, info } = await startModelWorker<EngineInfo>(
      'engine',
      new URL('./engine-worker.ts', import.meta.url),
      data,
      events.onLog,
    )
    return new Engine(worker, info, events, heartbeat)
  }

  /** Milliseconds since the worker last showed progress (a finished step, or idling). */
  get msSinceProgress(): number {
    return this.heartbeat.ageMs()
  }

  /** Sequences submitted but not yet started. */
  get queuedCount(): number {
    return this.queued.size
  }

  /** Sequences submitted and not yet finished. */
  get activeCount(): number {
    return this.listeners.size
  }

  /** Queues a sequence; `onEvent` receives its tokens and, last, its finish. Returns its id. */
  submit(request: Omit<SequenceRequest, 'id'>, onEvent: (event: TokenEvent) => void): number {
    const id = this.nextId++
    if (this.closed) {
      queueMicrotask(() => onEvent({ id, finish: 'error', message: 'engine is closed' }))
      return id
    }
    this.listeners.set(id, onEvent)
    this.queued.add(id)
    this.post({ type: 'add', request: { ...request, id } })
    return id
  }

  /**
   * Compiles a grammar in the worker (or finds it in its cache) so it can be refused before a
   * request starts, and so the sequences that use it are queued without compiling.
   */
  compileGrammar(spec: GrammarSpec, replayIds?: number[]): Promise<CompileResult> {
    if (this.closed) return Promise.resolve({ ok: false, invalid: false, message: 'engine is closed' })
    const ticket = this.nextTicket++
    return new Promise((resolve) => {
      this.compiles.set(ticket, resolve)
      this.post({ type: 'compile', ticket, spec, replayIds })
    })
  }

  /** Stops a sequence at the next step boundary; its listener still gets the `abort` finish. */
  abort(id: number): void {
    if (this.listeners.has(id)) this.post({ type: 'abort', id })
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await stopModelWorker(this.worker, () => this.post({ type: 'stop' }))
  }

  private post(message: ToWorker): void {
    this.worker.postMessage(message)
  }

  private dispatch(event: TokenEvent): void {
    this.queued.delete(event.id)
    const listener = this.listeners.get(event.id)
    if (!listener) return
    if (event.finish) this.listeners.delete(event.id)
    listener(event)
  }

  private failAll(message: string): void {
    const wasClosed = this.closed
    this.closed = true
    for (const [id, listener] of this.listeners)
      listener({ id, finish: 'error', message: wasClosed ? 'engine is closed' : message })
    this.listeners.clear()
    this.queued.clear()
    for (const resolve of this.compiles.values())
      resolve({ ok: false, invalid: false, message: wasClosed ? 'engine is closed' : message })
    this.compiles.clear()
  }
}
