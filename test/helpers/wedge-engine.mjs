// Test-only preload (NODE_OPTIONS=--import=<this file>) for a backend process: SIGUSR2 wedges
// every engine worker thread for good, the way a forward pass that never returns (a hung GPU
// call) would. Nothing in the backend's own code knows about it: this file wraps
// worker_threads.Worker so each eval'd worker (the engine's bootstrap) first joins a
// BroadcastChannel, and the message blocks that thread in Atomics.wait, with no timeout.
import { createRequire, syncBuiltinESMExports } from 'node:module'

const CHANNEL = 'switchyard-test-wedge-engine'
const threads = createRequire(import.meta.url)('node:worker_threads')
const wedgeOnMessage = `{
  const channel = new (require('node:worker_threads').BroadcastChannel)(${JSON.stringify(CHANNEL)})
  channel.onmessage = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0)
  channel.unref()
}
`
const RealWorker = threads.Worker
threads.Worker = class extends RealWorker {
  constructor(code, options) {
    super(options?.eval ? wedgeOnMessage + code : code, options)
  }
}
syncBuiltinESMExports()

const channel = new threads.BroadcastChannel(CHANNEL)
channel.unref()
process.on('SIGUSR2', () => channel.postMessage('wedge'))
