import { parentPort, workerData } from 'node:worker_threads'
import { errorMessage } from '../../lib/error-message.ts'
import { GrammarAdmission } from '../grammar/admission.ts'
import { ModelRunner } from '../model/runner.ts'
import { NEUTRAL_SAMPLING } from '../sampling/sampler.ts'
import { Scheduler } from '../scheduler/scheduler.ts'
import { Heartbeat } from './heartbeat.ts'
import type { EngineWorkerData, FromWorker, ToWorker } from './protocol.ts'

// The decode loop runs here, off the main thread, so HTTP, health checks and SSE writes stay
// responsive however long a forward pass takes (onnxruntime-node runs sessions synchronously).
const data = workerData as EngineWorkerData
const port = parentPort!
const post = (message: FromWorker) => port.postMessage(message)
const WARMUP_TOKENS = 64

try {
  const loadStart = performance.now()
  const runner = await ModelRunner.load(data.onnxPath, data.execution, (message) => post({ type: 'log', message }), {
    io: data.io,
    expected: data.expected,
  })
  const loadMs = performance.now() - loadStart

  const heartbeat = new Heartbeat(data.heartbeat)
  const scheduler = new Scheduler(runner, data.scheduler, (events, stats) => {
    // Every step with sequences in it emits: each one is progress.
    heartbeat.beat()
    if (warmingUp) return
    post({ type: 'step', events, stats })
  })

  // Warm-up: a short generation through the real scheduler path, so onnxruntime's lazy
  // initialisation and V8's JIT are paid before /ready, not by the first requests.
  let warmingUp = true
  const warmupStart = performance.now()
  const sampling = { ...NEUTRAL_SAMPLING, temperature: 1, seed: 0 }
  for (let i = 0; i < 2; i++)
    scheduler.add({ id: -1 - i, promptIds: [0, 1, 2, 3], maxTokens: WARMUP_TOKENS, sampling, eosTokenIds: [] })
  while (scheduler.waitingCount + scheduler.runningCount > 0) await scheduler.step()
  const grammars = new GrammarAdmission(data.grammar, runner.shape.vocabSize, scheduler, post)
  await grammars.warm()
  warmingUp = false
  const warmupMs = performance.now() - warmupStart
  port.on('message', (message: ToWorker) => {
    if (message.type === 'add') grammars.add(message.request)
    else if (message.type === 'abort') grammars.abort(message.id)
    else if (message.type === 'compile') void grammars.compile(message.ticket, message.spec, message.replayIds)
    else if (message.type === 'stop')
      void scheduler
        .stop()
        .then(() => runner.dispose())
        .then(() => port.close())
  })
  scheduler.start()
  // With work queued or running only finished steps count; an idle engine has nothing to prove.
  heartbeat.beat()
  setInterval(() => {
    if (scheduler.waitingCount + scheduler.runningCount === 0) heartbeat.beat()
  }, data.idleBeatIntervalMs).unref()
  post({
    type: 'ready',
    shape: runner.shape,
    device: runner.device,
    parameters: runner.parameters,
    movesOnlyNewRows: runner.movesOnlyNewRows,
    kvPath: runner.kvPath,
    gathersLogitRows: runner.gathersLogitRows,
    loadMs,
    warmupMs,
  })
} catch (error) {
  post({ type: 'failed', message: errorMessage(error).split('\n')[0] })
}
