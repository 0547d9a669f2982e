import { errorMessage } from '../lib/error-message.ts'
import { createLogger } from '../lib/logger.ts'
import { type BackendConfig, loadBackendConfig } from './config.ts'
import { type BackendNode, BackendStartError, startBackendNode } from './server.ts'

// Node entry of a backend node: configuration, logging, signals and exit codes around
// startBackendNode (server.ts).
let config: BackendConfig
try {
  config = loadBackendConfig()
} catch (error) {
  console.error(`switchyard backend: invalid configuration: ${errorMessage(error)}`)
  process.exit(2)
}
const log = createLogger({ service: 'switchyard-backend', level: config.LOG_LEVEL, format: config.LOG_FORMAT })

/** One line naming what is wrong and where, then the error's exit code (never a stack trace). */
function fail(error: unknown): never {
  console.error(`switchyard backend: ${errorMessage(error)}`)
  process.exit(error instanceof BackendStartError ? error.exitCode : 1)
}

let node: BackendNode
try {
  node = await startBackendNode(config, log)
} catch (error) {
  fail(error)
}
const stop = (reason: string) => void node.shutdown(reason).then(() => process.exit(0))
process.on('SIGTERM', () => stop('SIGTERM'))
process.on('SIGINT', () => stop('SIGINT'))
// SIGHUP re-reads the gateway verify keys (rotation); the file's mtime is also checked every few seconds.
process.on('SIGHUP', () => void node.reloadKeys())
// Started by a launcher with an IPC channel (npm start): go when it goes, even if it was killed.
if (process.send) process.once('disconnect', () => stop('launcher exited'))
await node.ready.catch(fail)
