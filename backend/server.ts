import type { AddressInfo } from 'node:net'
import { type ServerType, serve } from '@hono/node-server'
import type { Hono } from 'hono'
import type pino from 'pino'
import { errorMessage } from '../lib/error-message.ts'
import { listenError } from '../lib/listen-error.ts'
import { createBackendApp } from './api/app.ts'
import { type GatewayTokenRefusal, gatewayAuth, openVerifyKeyFile, type VerifyKeyFile } from './api/gateway-auth.ts'
import type { BackendConfig } from './config.ts'
import { ensureDefaultModel } from './default-model.ts'
import { isEncoderFolder } from './encoder/folder.ts'
import type { ServedEncoder } from './encoder/served.ts'
import { startEncoder } from './encoder/start.ts'
import { Engine } from './engine/engine.ts'
import type { ServedModel } from './engine/text-generation.ts'
import { grammarVocabulary } from './grammar/vocabulary.ts'
import { BackendMetrics } from './metrics.ts'
import { findModelFolders, loadModelFolder, type ModelFolder } from './model/folder.ts'
import { TextTokenizer } from './model/tokenizer.ts'

/** Why a node could not start; the Node entry prints the message and exits with `exitCode`. */
export class BackendStartError extends Error {
  constructor(
    message: string,
    /** 2: configuration (keys, port); 1: a model that cannot be served. */
    readonly exitCode: 1 | 2,
  ) {
    super(message)
  }
}

export interface BackendNode {
  app: Hono
  server: ServerType
  /** http://host:port the node listens on. */
  url: string
  /** Resolves once every model is loaded and warm (/ready is 200); rejects with a BackendStartError. */
  ready: Promise<void>
  models: Map<string, ServedModel>
  encoders: Map<string, ServedEncoder>
  /** Re-reads the gateway verify keys (SIGHUP in the Node entry). */
  reloadKeys(): Promise<void>
  /** Drains: /ready 503, waits for in-flight sequences (DRAIN_TIMEOUT_MS), stops the engines and the listener. */
  shutdown(reason: string): Promise<void>
}

/**
 * Starts a backend node in this process: gateway keys, HTTP listener (answering /health while
 * the models load), then the models. The Node entry (node.ts) adds only signals and exit codes,
 * so tests can start nodes without spawning when a process boundary is not what they test.
 */
export async function startBackendNode(config: BackendConfig, log: pino.Logger): Promise<BackendNode> {
  // Gateway keys are read before listening: a node that should be closed must never be open, not even briefly.
  let keyFile: VerifyKeyFile | undefined
  if (config.GATEWAY_VERIFY_KEYS_FILE) {
    try {
      keyFile = await openVerifyKeyFile(config.GATEWAY_VERIFY_KEYS_FILE, {
        onReload: (keys) =>
          log.info({ file: config.GATEWAY_VERIFY_KEYS_FILE, kids: keys.kids }, 'gateway verify keys reloaded'),
        onReloadError: (error, kept) =>
          log.error(
            { file: config.GATEWAY_VERIFY_KEYS_FILE, kids: kept.kids, error: error.message },
            'gateway verify keys NOT reloaded: the file is invalid, keeping the previous keys',
          ),
      })
    } catch (error) {
      throw new BackendStartError(`invalid configuration: GATEWAY_VERIFY_KEYS_FILE: ${errorMessage(error)}`, 2)
    }
    log.info(
      { file: keyFile.path, kids: keyFile.current().kids, audience: config.GATEWAY_TOKEN_AUDIENCE },
      'gateway authentication on: requests need a token signed by the gateway (except /health, /ready, /metrics)',
    )
  } else {
    log.warn('GATEWAY_VERIFY_KEYS_FILE is not set: this node accepts requests from anyone (local development only)')
  }

  const metrics = new BackendMetrics()
  const models = new Map<string, ServedModel>()
  const encoders = new Map<string, ServedEncoder>()
  let ready = false
  let draining = false
  const app = createBackendApp({
    models,
    encoders,
    maxEncoderQueue: config.ENCODER_MAX_QUEUE,
    metrics,
    maxQueue: config.MAX_QUEUE,
    maxGrammarChars: config.MAX_GRAMMAR_CHARS,
    requestTimeoutMs: config.REQUEST_TIMEOUT_MS,
    retryAfterSeconds: config.RETRY_AFTER_SECONDS,
    maxBodyBytes: config.MAX_BODY_BYTES,
    isDraining: () => draining,
    isReady: () => ready,
    engineStallTimeoutMs: config.ENGINE_STALL_TIMEOUT_MS,
    gatewayAuth:
      keyFile &&
      gatewayAuth({ keys: keyFile.current, audience: config.GATEWAY_TOKEN_AUDIENCE, onRefused: refusalLog(log) }),
  })

  // Listen first: /health answers while models load, /ready only once they are warm.
  const server = await new Promise<ServerType>((resolve, reject) => {
    const started: ServerType = serve({ fetch: app.fetch, hostname: config.HOST, port: config.PORT }, (info) => {
      started.off('error', failed)
      log.info({ host: info.address, port: info.port }, 'listening')
      resolve(started)
    })
    // One line naming the port and the variable that sets it (a launcher may name its own).
    const failed = (error: unknown) =>
      reject(
        new BackendStartError(
          listenError(error, config.PORT, process.env.SWITCHYARD_PORT_VARIABLE ?? 'PORT').message,
          2,
        ),
      )
    started.once('error', failed)
  })
  const address = server.address() as AddressInfo
  const url = `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`

  const engines = () => [...models.values(), ...encoders.values()].map((m) => m.engine)
  const loading = loadModels(config, log, metrics, models, encoders).then(
    () => {
      ready = true
      log.info({ models: [...models.keys(), ...encoders.keys()] }, 'backend ready')
    },
    (error) => {
      throw error instanceof BackendStartError ? error : new BackendStartError(errorMessage(error), 1)
    },
  )

  let drained: Promise<void> | undefined
  const shutdown = (reason: string) =>
    (drained ??= (async () => {
      draining = true
      log.info(
        { signal: reason, drainTimeoutMs: config.DRAIN_TIMEOUT_MS },
        'draining: not ready, finishing in-flight requests',
      )
      const deadline = Date.now() + config.DRAIN_TIMEOUT_MS
      const active = () => engines().reduce((n, engine) => n + engine.activeCount, 0)
      while (active() > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50))
      if (active() > 0) log.warn({ unfinished: active() }, 'drain timeout: ending the remaining requests')
      await Promise.all(engines().map((engine) => engine.close()))
      keyFile?.close()
      // Let the last response bytes go out, then close the listener and idle keep-alive sockets.
      await new Promise((resolve) => setTimeout(resolve, 100))
      server.close()
      if ('closeAllConnections' in server) (server as import('node:http').Server).closeAllConnections()
      log.info('drained, exiting')
    })())

  return {
    app,
    server,
    url,
    ready: loading,
    models,
    encoders,
    reloadKeys: async () => void (await keyFile?.reload()),
    shutdown,
  }
}

/** Loads every model folder under MODEL_DIR: encoders to the encoder engine, the rest to decoder engines. */
async function loadModels(
  config: BackendConfig,
  log: pino.Logger,
  metrics: BackendMetrics,
  models: Map<string, ServedModel>,
  encoders: Map<string, ServedEncoder>,
): Promise<void> {
  const modelDir = config.MODEL_DIR ?? (await ensureDefaultModel((message) => log.info(message)))
  const dirs = findModelFolders(modelDir)
  const onlyId = dirs.length === 1 ? config.MODEL_ID : undefined
  for (const dir of dirs.filter(isEncoderFolder)) {
    const encoder = await loadEncoder(dir, onlyId, config, log, metrics)
    if (encoders.has(encoder.id)) throw new Error(`two model folders share the id "${encoder.id}"`)
    encoders.set(encoder.id, encoder)
  }
  const folders = dirs
    .filter((dir) => !isEncoderFolder(dir))
    .map((dir) =>
      loadModelFolder(dir, {
        id: onlyId,
        variant: config.MODEL_VARIANT,
        device: config.DEVICE === 'cuda' ? 'cuda' : 'cpu',
      }),
    )
  for (const folder of folders) {
    if (models.has(folder.id) || encoders.has(folder.id))
      throw new Error(`two model folders share the id "${folder.id}"`)
    models.set(folder.id, await loadDecoder(folder, config, log, metrics))
  }
}

/** Starts an encoder folder's engine and logs what was loaded. */
async function loadEncoder(
  dir: string,
  onlyId: string | undefined,
  config: BackendConfig,
  log: pino.Logger,
  metrics: BackendMetrics,
): Promise<ServedEncoder> {
  const encoder = await startEncoder(dir, onlyId, config, (id) => ({
    onLog: (message) => log.warn({ model: id }, message),
    onBatch: (stats) => metrics.recordEncoderBatch(id, stats),
  }))
  const { folder } = encoder
  const { info } = encoder.engine
  log.info(
    {
      model: encoder.id,
      file: folder.onnxPath,
      task: folder.task,
      device: info.device,
      parameters: info.parameters,
      maxLength: folder.maxLength,
      width: info.width,
      pooling: folder.pooling,
      normalize: folder.normalize,
      loadMs: Math.round(info.loadMs),
      warmupMs: Math.round(info.warmupMs),
    },
    'encoder model ready',
  )
  if (folder.randomWeights)
    log.warn({ model: encoder.id }, 'this model has RANDOM WEIGHTS: its embeddings and labels are noise')
  return encoder
}

/** Starts a decoder folder's engine (tokenizer first, so a broken one names the folder) and logs it. */
async function loadDecoder(
  folder: ModelFolder,
  config: BackendConfig,
  log: pino.Logger,
  metrics: BackendMetrics,
): Promise<ServedModel> {
  const tokenizer = tokenizerOf(folder)
  const started = performance.now()
  const engine = await Engine.start(
    {
      onnxPath: folder.onnxPath,
      io: folder.io,
      expected: folder.expected,
      execution: {
        device: config.DEVICE,
        cudaDeviceId: config.CUDA_DEVICE_ID,
        cpuThreads: config.CPU_THREADS,
        graphOptimization: config.GRAPH_OPTIMIZATION,
      },
      scheduler: {
        maxBatchSize: config.MAX_BATCH_SIZE,
        maxTokensInFlight: config.MAX_TOKENS_IN_FLIGHT,
        maxPrefillTokens: config.MAX_PREFILL_TOKENS,
        contextLength: folder.contextLength,
      },
      grammar: {
        vocabulary: grammarVocabulary(folder.tokenizerJson, 0, folder.eosTokenIds),
        cacheSize: config.GRAMMAR_CACHE_SIZE,
      },
      stallTimeoutMs: config.ENGINE_STALL_TIMEOUT_MS,
    },
    {
      onStep: (stats) => metrics.recordStep(folder.id, stats),
      onLog: (message) => log.warn({ model: folder.id }, message),
    },
  ).catch((error) => {
    throw new Error(`model ${folder.id} (${folder.onnxPath}): ${errorMessage(error)}`)
  })
  metrics.modelLoad.set({ model: folder.id }, (performance.now() - started) / 1000)
  const { info } = engine
  log.info(
    {
      model: folder.id,
      file: folder.onnxPath,
      variant: folder.variant,
      weightType: info.shape.weightType,
      kvType: info.shape.kvFloat16 ? 'float16' : 'float32',
      device: info.device,
      parameters: info.parameters,
      context: folder.contextLength,
      kvPath: info.kvPath,
      logitsGathered: info.gathersLogitRows,
      loadMs: Math.round(info.loadMs),
      warmupMs: Math.round(info.warmupMs),
    },
    'model ready',
  )
  if (folder.randomWeights) {
    log.warn(
      { model: folder.id },
      'this model has RANDOM WEIGHTS: its text is noise. To serve a real model, export it to ONNX (see docs/models.md, "Serving a real model") and set MODEL_DIR',
    )
  }
  return { id: folder.id, folder, tokenizer, engine, created: Math.floor(Date.now() / 1000) }
}

/** The folder's tokenizer; a broken tokenizer or chat template names the folder. */
function tokenizerOf(folder: ModelFolder): TextTokenizer {
  try {
    return new TextTokenizer(folder.tokenizerJson, folder.tokenizerConfig)
  } catch (error) {
    throw new Error(`model folder ${folder.dir}: ${errorMessage(error)}`)
  }
}

/** A scanner hitting the node must not flood the log: one line per refusal reason per minute. */
function refusalLog(log: pino.Logger): (reason: GatewayTokenRefusal) => void {
  const last = new Map<GatewayTokenRefusal, number>()
  return (reason) => {
    const now = Date.now()
    if (now - (last.get(reason) ?? -Infinity) < 60_000) return
    last.set(reason, now)
    log.warn({ reason }, 'refused a request without a valid gateway token (logged at most once a minute per reason)')
  }
}
