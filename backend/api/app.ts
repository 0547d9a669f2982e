import { type Context, Hono, type MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { ApiError } from '../../openai/errors.ts'
import { relativeOnnxPath } from '../model/folder.ts'
import { embeddings } from './embeddings.ts'
import type { EncoderApiContext } from './encoding.ts'
import { apiErrorResponse } from './errors.ts'
import { generate } from './generate.ts'
import type { ApiContext } from './generation.ts'
import { listModels, retrieveModel } from './models.ts'
import { chatCompletions, completions } from './openai.ts'
import { listTaskModels, predict } from './predict.ts'

export interface BackendAppOptions
  extends ApiContext,
    Partial<Pick<EncoderApiContext, 'encoders' | 'maxEncoderQueue'>> {
  maxBodyBytes: number
  /** Until the models are loaded and warmed up, /ready answers 503. */
  isReady: () => boolean
  /** An engine with no progress for longer fails /live (liveness probe) and /ready. */
  engineStallTimeoutMs: number
  /** Gateway-token check (gateway-auth.ts) run before every route; absent, the node is open to anyone. */
  gatewayAuth?: MiddlewareHandler
}

/** The backend node's HTTP API: OpenAI-compatible routes, /generate, and operations routes. */
export function createBackendApp(options: BackendAppOptions): Hono {
  const app = new Hono()
  const { metrics } = options
  const encoderApi: EncoderApiContext = {
    ...options,
    encoders: options.encoders ?? new Map(),
    maxEncoderQueue: options.maxEncoderQueue ?? options.maxQueue,
  }

  app.use('*', async (c, next) => {
    const started = performance.now()
    await next()
    // Label by route pattern, never by raw path, so unknown URLs cannot blow up cardinality. The
    // catch-all pattern means no route ran: the path is unknown, or gateway auth refused the request.
    const route = c.req.routePath === '/*' ? (c.res.status === 401 ? 'unauthenticated' : 'unmatched') : c.req.routePath
    metrics.requests.inc({ route, status: String(c.res.status) })
    metrics.requestDuration.observe({ route }, (performance.now() - started) / 1000)
  })
  // After the metrics middleware, so refused requests are counted (status 401).
  if (options.gatewayAuth) app.use('*', options.gatewayAuth)

  const streamingLimit = bodyLimit({
    maxSize: options.maxBodyBytes,
    onError: (c) =>
      apiErrorResponse(
        c,
        new ApiError(413, `The request body is larger than ${options.maxBodyBytes} bytes`, {
          code: 'request_too_large',
        }),
      ),
  })
  const limit: MiddlewareHandler = async (c, next) => {
    let reading = true
    try {
      return await streamingLimit(c, () => {
        reading = false
        return next()
      })
    } catch (error) {
      // A chunked body that breaks off or is malformed fails while it is read: the client's doing, not a 5xx.
      if (reading) throw new ApiError(400, 'The request body could not be read', { code: 'invalid_body' })
      throw error
    }
  }
  // The node listens while its models load (for /health); until they are ready a generation gets
  // a 503 the gateway retries elsewhere, not a 404 for a model that is only not loaded yet.
  const loaded: MiddlewareHandler = async (_c, next) => {
    if (!options.isReady())
      throw new ApiError(503, 'The server is still loading its models; retry on another node', {
        type: 'server_error',
        code: 'loading',
        headers: { 'Retry-After': String(options.retryAfterSeconds) },
      })
    await next()
  }
  app.post('/v1/completions', loaded, limit, (c) => completions(c, options))
  app.post('/v1/chat/completions', loaded, limit, (c) => chatCompletions(c, options))
  app.post('/generate', loaded, limit, (c) => generate(c, options))
  app.get('/v1/models', (c) => listModels(c, encoderApi))
  // Model ids may hold slashes (org/name), as OpenAI's and Hugging Face's do.
  app.get('/v1/models/:id{.+}', (c) => retrieveModel(c, encoderApi))
  // Encoder models (backend/encoder): embeddings and the task API.
  app.post('/v1/embeddings', loaded, limit, (c) => embeddings(c, encoderApi))
  app.post('/predict', loaded, limit, (c) => predict(c, encoderApi))
  app.get('/models', (c) => listTaskModels(c, encoderApi))

  app.get('/model/info', (c) =>
    c.json({
      status: options.isDraining() ? 'draining' : options.isReady() ? 'ready' : 'loading',
      models: [...options.models.values()].map((m) => ({
        name: m.id,
        parameters: m.engine.info.parameters,
        device: m.engine.info.device,
        model_type: m.folder.modelType,
        variant: m.folder.variant,
        file: relativeOnnxPath(m.folder),
        weight_type: m.engine.info.shape.weightType,
        kv_type: m.engine.info.shape.kvFloat16 ? 'float16' : 'float32',
        context_length: m.folder.contextLength,
        random_weights: m.folder.randomWeights,
        kv_fast_path: m.engine.info.kvPath !== 'whole-cache',
        kv_path: m.engine.info.kvPath,
        logits_gathered: m.engine.info.gathersLogitRows,
        queued: m.engine.queuedCount,
        active: m.engine.activeCount,
      })),
    }),
  )
  // Engines whose worker has shown no progress for longer than the stall timeout (heartbeat.ts).
  const stalledEngines = () =>
    [...options.models.values(), ...encoderApi.encoders.values()].flatMap((m) => {
      const since = m.engine.msSinceProgress
      return since > options.engineStallTimeoutMs
        ? [{ model: m.id, ms_since_progress: Number.isFinite(since) ? Math.round(since) : null }]
        : []
    })
  const stalledResponse = (c: Context, stalled: ReturnType<typeof stalledEngines>) =>
    c.json({ status: 'stalled', stall_timeout_ms: options.engineStallTimeoutMs, stalled }, 503)
  app.get('/health', (c) => c.json({ status: 'ok' }))
  // Liveness: the process answers AND every loaded engine still makes progress. A model still
  // loading passes (the startup probe waits for /ready).
  app.get('/live', (c) => {
    const stalled = stalledEngines()
    if (stalled.length > 0) return stalledResponse(c, stalled)
    return c.json({ status: options.isReady() ? 'ok' : 'loading' })
  })
  app.get('/ready', (c) => {
    if (options.isDraining()) return c.json({ status: 'draining' }, 503)
    const stalled = stalledEngines()
    if (stalled.length > 0) return stalledResponse(c, stalled)
    return options.isReady() ? c.json({ status: 'ready' }) : c.json({ status: 'loading' }, 503)
  })
  app.get('/metrics', async (c) =>
    c.text(await metrics.registry.metrics(), 200, { 'Content-Type': metrics.registry.contentType }),
  )

  app.notFound((c) =>
    apiErrorResponse(
      c,
      new ApiError(404, `No route for ${c.req.method} ${new URL(c.req.url).pathname}`, { code: 'not_found' }),
    ),
  )
  app.onError((error, c) => {
    if (error instanceof ApiError) return apiErrorResponse(c, error)
    // Anything else is our fault, not the client's: say so without echoing internals.
    console.error(error)
    return apiErrorResponse(c, new ApiError(500, 'Internal server error', { code: 'internal_error' }))
  })
  return app
}
