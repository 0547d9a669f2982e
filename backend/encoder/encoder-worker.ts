import { parentPort, workerData } from 'node:worker_threads'
import { errorMessage } from '../../lib/error-message.ts'
import { Heartbeat } from '../engine/heartbeat.ts'
import { DynamicBatcher } from './batcher.ts'
import type { EncoderWorkerData, FromEncoderWorker, ToEncoderWorker } from './protocol.ts'
import { EncoderRunner } from './runner.ts'

// Forward passes run here, off the main thread, so HTTP and health checks stay responsive while
// a batch computes; the dynamic batcher lives here too, beside the session it feeds.
const data = workerData as EncoderWorkerData
const port = parentPort!
const post = (message: FromEncoderWorker, transfer: ArrayBuffer[] = []) => port.postMessage(message, transfer)

try {
  const loadStart = performance.now()
  const runner = await EncoderRunner.load(data.onnxPath, data.execution, data.runner, (message) =>
    post({ type: 'log', message }),
  )
  const loadMs = performance.now() - loadStart
  // Warm-up, so onnxruntime's lazy initialisation is paid before /ready, and the output width is known.
  const warmupStart = performance.now()
  const [probe] = await runner.run([[1, 2, 3, 4]])
  await runner.run([
    [1, 2, 3, 4],
    [1, 2],
  ])
  const warmupMs = performance.now() - warmupStart

  // Progress for the liveness probe: every finished batch, and a timer while nothing is queued.
  const heartbeat = new Heartbeat(data.heartbeat)
  const batcher = new DynamicBatcher(
    (rows) => runner.run(rows),
    data.batching,
    (stats) => {
      heartbeat.beat()
      post({ type: 'batch', stats })
    },
  )
  heartbeat.beat()
  setInterval(() => {
    if (batcher.pending === 0 && !batcher.busy) heartbeat.beat()
  }, data.idleBeatIntervalMs).unref()
  port.on('message', (message: ToEncoderWorker) => {
    if (message.type === 'encode') {
      batcher.add(message.ids).then(
        (vector) => post({ type: 'result', id: message.id, vector }, [vector.buffer as ArrayBuffer]),
        (error: Error) =>
          post({ type: 'error', id: message.id, message: String(error?.message ?? error).split('\n')[0] }),
      )
    } else if (message.type === 'stop') {
      void batcher
        .idle()
        .then(() => runner.dispose())
        .then(() => port.close())
    }
  })
  post({ type: 'ready', device: runner.device, parameters: runner.parameters, width: probe.length, loadMs, warmupMs })
} catch (error) {
  post({ type: 'failed', message: errorMessage(error).split('\n')[0] })
}
