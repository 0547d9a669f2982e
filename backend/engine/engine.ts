import { Worker } from 'node:worker_threads'
import type { SequenceRequest, StepStats, TokenEvent } from '../scheduler/types.ts'
import { Heartbeat, idleBeatIntervalMs } from './heartbeat.ts'
import type { EngineInfo, EngineWorkerData, FromWorker, ToWorker } from './protocol.ts'

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
  private closed = false

  private constructor(worker: Worker, info: EngineInfo, events: EngineEvents, private readonly heartbeat: Heartbeat) {
    this.worker = worker
    this.info = info
    worker.on('message', (message: FromWorker) => {
      if (message.type === 'step') {
        for (const event of message.events) this.dispatch(event)
        events.onStep?.(message.stats, message.events)
      } else if (message.type === 'log') events.onLog?.(message.message)
    })
    worker.on('error', (error) => this.failAll(`engine worker crashed: ${error.message}`))
    worker.on('exit', () => this.failAll('engine worker exited'))
  }

  /**
   * Starts the worker, loads and warms up the model; resolves once it can take requests.
   * `stallTimeoutMs` is how long the worker may show no progress before `stalledForMs` reports it.
   */
  static start(options: Omit<EngineWorkerData, 'heartbeat' | 'idleBeatIntervalMs'> & { stallTimeoutMs: number }, events: EngineEvents = {}): Promise<Engine> {
    const { stallTimeoutMs, ...rest } = options
    const heartbeat = new Heartbeat()
    const data: EngineWorkerData = { ...rest, heartbeat: heartbeat.buffer, idleBeatIntervalMs: idleBeatIntervalMs(stallTimeoutMs) }
    const worker = startWorker(new URL('./engine-worker.ts', import.meta.url), data)
    return new Promise((resolve, reject) => {
      const onMessage = (message: FromWorker) => {
        if (message.type === 'log') events.onLog?.(message.message)
        else if (message.type === 'failed') {
          void worker.terminate()
          reject(new Error(message.message))
        } else if (message.type === 'ready') {
          worker.off('message', onMessage)
          worker.off('exit', onExit)
          const { type: _type, ...info } = message
          resolve(new Engine(worker, info, events, heartbeat))
        }
      }
      const onExit = (code: number) => reject(new Error(`engine worker exited with code ${code} while loading`))
      worker.on('message', onMessage)
      worker.once('error', reject)
      worker.once('exit', onExit)
    })
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

  /** Stops a sequence at the next step boundary; its listener still gets the `abort` finish. */
  abort(id: number): void {
    if (this.listeners.has(id)) this.post({ type: 'abort', id })
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const exited = new Promise((resolve) => this.worker.once('exit', resolve))
    this.post({ type: 'stop' })
    const timer = setTimeout(() => void this.worker.terminate(), 5000)
    await exited
    clearTimeout(timer)
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
    for (const [id, listener] of this.listeners) listener({ id, finish: 'error', message: wasClosed ? 'engine is closed' : message })
    this.listeners.clear()
    this.queued.clear()
  }
}

/**
 * On Node 20 a worker does not inherit the TypeScript loader of a parent that runs from
 * source, so such a worker registers tsx itself before importing its entry.
 */
function startWorker(entry: URL, workerData: EngineWorkerData): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, { workerData })
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}) })`
  return new Worker(bootstrap, { eval: true, workerData })
}
