import { serve } from '@hono/node-server'
import pino from 'pino'
import { createBackendApp } from './api/app.ts'
import { gatewayAuth, openVerifyKeyFile, type GatewayTokenRefusal, type VerifyKeyFile } from './api/gateway-auth.ts'
import { type BackendConfig, loadBackendConfig } from './config.ts'
import { ensureDefaultModel } from './default-model.ts'
import { Engine } from './engine/engine.ts'
import type { ServedModel } from './engine/text-generation.ts'
import { BackendMetrics } from './metrics.ts'
import { findModelFolders, loadModelFolder } from './model/folder.ts'
import { TextTokenizer } from './model/tokenizer.ts'

// Node entry of a backend node: configuration, logging, model loading, HTTP server, signals.
let config: BackendConfig
try {
  config = loadBackendConfig()
} catch (error) {
  console.error(`switchyard backend: invalid configuration: ${(error as Error).message}`)
  process.exit(2)
}
const log = pino({ level: config.LOG_LEVEL, base: { service: 'switchyard-backend' } })

// Gateway keys are read before listening: a node that should be closed must never be open, not even briefly.
let keyFile: VerifyKeyFile | undefined
if (config.GATEWAY_VERIFY_KEYS_FILE) {
  try {
    keyFile = await openVerifyKeyFile(config.GATEWAY_VERIFY_KEYS_FILE, {
      onReload: (keys) => log.info({ file: config.GATEWAY_VERIFY_KEYS_FILE, kids: keys.kids }, 'gateway verify keys reloaded'),
      onReloadError: (error, kept) => log.error({ file: config.GATEWAY_VERIFY_KEYS_FILE, kids: kept.kids, error: error.message }, 'gateway verify keys NOT reloaded: the file is invalid, keeping the previous keys'),
    })
  } catch (error) {
    console.error(`switchyard backend: invalid configuration: GATEWAY_VERIFY_KEYS_FILE: ${(error as Error).message}`)
    process.exit(2)
  }
  const opened = keyFile
  log.info({ file: opened.path, kids: opened.current().kids, audience: config.GATEWAY_TOKEN_AUDIENCE }, 'gateway authentication on: requests need a token signed by the gateway (except /health, /ready, /metrics)')
  // SIGHUP re-reads the keys (rotation); the file's mtime is also checked every few seconds.
  process.on('SIGHUP', () => void opened.reload())
} else {
  log.warn('GATEWAY_VERIFY_KEYS_FILE is not set: this node accepts requests from anyone (local development only)')
}

// A scanner hitting the node must not flood the log: one line per refusal reason per minute.
const lastRefusalLog = new Map<GatewayTokenRefusal, number>()
function logRefusal(reason: GatewayTokenRefusal): void {
  const now = Date.now()
  if (now - (lastRefusalLog.get(reason) ?? -Infinity) < 60_000) return
  lastRefusalLog.set(reason, now)
  log.warn({ reason }, 'refused a request without a valid gateway token (logged at most once a minute per reason)')
}

const metrics = new BackendMetrics()
const models = new Map<string, ServedModel>()
let ready = false
let draining = false

const app = createBackendApp({
  models,
  metrics,
  maxQueue: config.MAX_QUEUE,
  requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
  retryAfterSeconds: config.RETRY_AFTER_SECONDS,
  maxBodyBytes: config.MAX_BODY_BYTES,
  isDraining: () => draining,
  isReady: () => ready,
  engineStallTimeoutMs: config.ENGINE_STALL_TIMEOUT_MS,
  gatewayAuth: keyFile && gatewayAuth({ keys: keyFile.current, audience: config.GATEWAY_TOKEN_AUDIENCE, onRefused: logRefusal }),
})

// Listen first: /health answers while models load, /ready only once they are warm.
const server = serve({ fetch: app.fetch, hostname: config.HOST, port: config.PORT }, (info) => {
  log.info({ host: info.address, port: info.port }, 'listening')
})

try {
  const modelDir = config.MODEL_DIR ?? (await ensureDefaultModel((message) => log.info(message)))
  const folders = findModelFolders(modelDir).map((dir, _, all) => loadModelFolder(dir, { id: all.length === 1 ? config.MODEL_ID : undefined, variant: config.MODEL_VARIANT, device: config.DEVICE === 'cuda' ? 'cuda' : 'cpu' }))
  for (const folder of folders) {
    if (models.has(folder.id)) throw new Error(`two model folders share the id "${folder.id}"`)
    const tokenizer = new TextTokenizer(folder.tokenizerJson, folder.tokenizerConfig)
    const started = performance.now()
    const engine = await Engine.start(
      {
        onnxPath: folder.onnxPath,
        io: folder.io,
        expected: folder.expected,
        execution: { device: config.DEVICE, cudaDeviceId: config.CUDA_DEVICE_ID, cpuThreads: config.CPU_THREADS, graphOptimization: config.GRAPH_OPTIMIZATION },
        scheduler: { maxBatchSize: config.MAX_BATCH_SIZE, maxTokensInFlight: config.MAX_TOKENS_IN_FLIGHT, maxPrefillTokens: config.MAX_PREFILL_TOKENS, contextLength: folder.contextLength },
        stallTimeoutMs: config.ENGINE_STALL_TIMEOUT_MS,
      },
      { onStep: (stats) => metrics.recordStep(folder.id, stats), onLog: (message) => log.warn({ model: folder.id }, message) },
    ).catch((error) => {
      throw new Error(`model ${folder.id} (${folder.onnxPath}): ${(error as Error).message}`)
    })
    metrics.modelLoad.set({ model: folder.id }, (performance.now() - started) / 1000)
    models.set(folder.id, { id: folder.id, folder, tokenizer, engine, created: Math.floor(Date.now() / 1000) })
    const { info } = engine
    const types = { variant: folder.variant, weightType: info.shape.weightType, kvType: info.shape.kvFloat16 ? 'float16' : 'float32' }
    log.info({ model: folder.id, file: folder.onnxPath, ...types, device: info.device, parameters: info.parameters, context: folder.contextLength, kvPath: info.kvPath, logitsGathered: info.gathersLogitRows, loadMs: Math.round(info.loadMs), warmupMs: Math.round(info.warmupMs) }, 'model ready')
    if (folder.randomWeights) {
      log.warn({ model: folder.id }, 'this model has RANDOM WEIGHTS: its text is noise. To serve a real model, export it to ONNX (see README, "Serving a real model") and set MODEL_DIR')
    }
  }
  ready = true
  log.info({ models: [...models.keys()] }, 'backend ready')
} catch (error) {
  // One line naming what is wrong and where, then a non-zero exit.
  console.error(`switchyard backend: ${(error as Error).message}`)
  process.exit(1)
}

async function shutdown(signal: string): Promise<void> {
  if (draining) return
  draining = true
  log.info({ signal, drainTimeoutMs: config.DRAIN_TIMEOUT_MS }, 'draining: not ready, finishing in-flight requests')
  const deadline = Date.now() + config.DRAIN_TIMEOUT_MS
  const active = () => [...models.values()].reduce((n, m) => n + m.engine.activeCount, 0)
  while (active() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
  if (active() > 0) log.warn({ unfinished: active() }, 'drain timeout: ending the remaining requests')
  await Promise.all([...models.values()].map((m) => m.engine.close()))
  keyFile?.close()
  // Let the last response bytes go out, then close the listener and idle keep-alive sockets.
  await new Promise((resolve) => setTimeout(resolve, 100))
  server.close()
  if ('closeAllConnections' in server) (server as import('node:http').Server).closeAllConnections()
  log.info('drained, exiting')
  process.exit(0)
}
process.on('SIGTERM', () => void shutdown('SIGTERM'))
process.on('SIGINT', () => void shutdown('SIGINT'))
