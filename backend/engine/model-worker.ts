import { Worker } from 'node:worker_threads'

/** What a model worker posts while it loads: log lines, then `ready` with its info or `failed`. */
type LoadingMessage = { type: string; message?: string }

/**
 * Starts a model worker (decoder engine or encoder) and resolves once it has loaded and warmed
 * up its model, with the fields of its `ready` message; rejects with the worker's own reason.
 */
export function startModelWorker<Info>(
  kind: 'engine' | 'encoder',
  entry: URL,
  workerData: unknown,
  onLog?: (message: string) => void,
): Promise<{ worker: Worker; info: Info }> {
  const worker = startWorker(entry, workerData)
  return new Promise((resolve, reject) => {
    const onMessage = (message: LoadingMessage) => {
      if (message.type === 'log') onLog?.(message.message ?? '')
      else if (message.type === 'failed') {
        void worker.terminate()
        reject(new Error(message.message))
      } else if (message.type === 'ready') {
        worker.off('message', onMessage)
        worker.off('exit', onExit)
        const { type: _type, ...info } = message
        resolve({ worker, info: info as Info })
      }
    }
    const onExit = (code: number) => reject(new Error(`${kind} worker exited with code ${code} while loading`))
    worker.on('message', onMessage)
    worker.once('error', reject)
    worker.once('exit', onExit)
  })
}

/** Asks a model worker to stop (`stop` posts its stop message); terminates it if it has not exited within 5 s. */
export async function stopModelWorker(worker: Worker, stop: () => void): Promise<void> {
  const exited = new Promise((resolve) => worker.once('exit', resolve))
  stop()
  const timer = setTimeout(() => void worker.terminate(), 5000)
  await exited
  clearTimeout(timer)
}

/**
 * On Node 20 a worker does not inherit the TypeScript loader of a parent that runs from
 * source, so such a worker registers tsx itself before importing its entry.
 */
function startWorker(entry: URL, workerData: unknown): Worker {
  if (!entry.pathname.endsWith('.ts')) return new Worker(entry, { workerData })
  const bootstrap = `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(entry.href)}) })`
  return new Worker(bootstrap, { eval: true, workerData })
}
