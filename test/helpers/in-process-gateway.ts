import { createHash } from 'node:crypto'
import { createGatewayApp, type GatewayDeps } from '../../gateway/app.ts'
import { parseGatewayConfig } from '../../gateway/config/parse.ts'
import type { GatewayConfig } from '../../gateway/config/schema.ts'
import { createMemoryRateLimits } from '../../gateway/limits/rate-limit-store.ts'
import { createPromMetrics } from '../../gateway/node/prom-metrics.ts'
import { Router } from '../../gateway/routing/router.ts'
import { MemoryCacheStore, MemoryKeyStore } from '../../gateway/stores/memory.ts'
import type { Logger } from '../../gateway/types.ts'
import type { UpstreamFetch, UpstreamRequest, UpstreamResponse } from '../../gateway/upstream/upstream.ts'

/**
 * The gateway's whole Hono app in this process, as the runtime entries build it, with a fake
 * UpstreamFetch for the backend nodes and memory stores: no sockets, no other processes. Tests
 * call it through `app.request()` (as Hono tests its middleware); the pipeline benchmark
 * through `app.fetch`.
 */
export interface InProcessGatewayOptions {
  /** The config file's contents (routing, auth, limits, cache, server...), validated as the entries do. */
  config?: Record<string, unknown>
  /** Environment settings (LOG_LEVEL, ADMIN_TOKEN, GATEWAY_REGION...). */
  env?: Record<string, string>
  upstream: UpstreamFetch
  logger?: Logger
  metrics?: GatewayDeps['metrics']
  /**
   * Background health checks and breaker timers, as on Node (default false: the upstream then
   * sees only the requests the tests send, and nothing runs after a test ends).
   */
  timers?: boolean
  /** Any other dependency, replacing the default. */
  deps?: Partial<Omit<GatewayDeps, 'config' | 'router' | 'upstream'>>
}

export interface InProcessGateway {
  app: ReturnType<typeof createGatewayApp>
  config: GatewayConfig
  router: Router
  metrics: GatewayDeps['metrics']
  close(): void
}

export const quietLogger: Logger = { info() {}, warn() {}, error() {} }

export const sha256Hex = (text: string) => createHash('sha256').update(text).digest('hex')

/** A config-file API key entry for `key` (stored hashed, as operators write them). */
export const apiKeyEntry = (id: string, key: string, extra: Record<string, unknown> = {}) => ({
  id,
  tenant: id,
  hash: sha256Hex(key),
  ...extra,
})

/** A config with one region `eu` of nodes `node-1`..`node-N` at http://node-N.test (no backend.url needed). */
export const regionOf = (nodes: number, region = 'eu') => ({
  name: region,
  nodes: Array.from({ length: nodes }, (_, i) => ({ id: `node-${i + 1}`, url: `http://node-${i + 1}.test` })),
})

export function createInProcessGateway(options: InProcessGatewayOptions): InProcessGateway {
  const file = { ...options.config }
  if (!('routing' in file) && !('backend' in file)) file.routing = { regions: [regionOf(1)] }
  const config = parseGatewayConfig(file, options.env ?? {})
  const logger = options.logger ?? quietLogger
  const metrics = options.metrics ?? createPromMetrics({ defaultMetrics: false })
  const router = new Router(config.routing, {
    metrics: metrics.routing,
    logger,
    upstream: options.upstream,
    timers: options.timers ?? false,
  })
  const app = createGatewayApp({
    config,
    logger,
    metrics,
    keyStore: new MemoryKeyStore(),
    rateLimits: createMemoryRateLimits(),
    cacheStore: new MemoryCacheStore(),
    peerAddress: () => '127.0.0.1',
    hashKey: sha256Hex,
    ...options.deps,
    upstream: options.upstream,
    router,
  })
  return { app, config, router, metrics, close: () => router.close() }
}

/** An UpstreamResponse with a JSON (or any text) body. */
export function jsonAnswer(status: number, body: unknown, headers: Record<string, string> = {}): UpstreamResponse {
  const text = typeof body === 'string' ? body : JSON.stringify(body)
  const all: Record<string, string> = { 'content-type': 'application/json', ...headers }
  return { status, headers: { get: (name) => all[name.toLowerCase()] ?? null }, body: null, text: async () => text }
}

/**
 * An UpstreamResponse whose body is an event stream of `events` (each a `data:` payload);
 * `then` decides how it ends after them: 'done' ([DONE] and close), 'cut' (closes early, no
 * [DONE]), 'error' (the stream errors), 'hang' (stays open until cancelled).
 */
export function eventStreamAnswer(
  events: unknown[],
  then: 'done' | 'cut' | 'error' | 'hang' = 'done',
  cancel?: UpstreamRequest['cancel'],
): UpstreamResponse & { cancelled: () => boolean } {
  const encoder = new TextEncoder()
  let cancelled = false
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      for (const event of events)
        controller.enqueue(encoder.encode(`data: ${typeof event === 'string' ? event : JSON.stringify(event)}\n\n`))
      if (then === 'done') {
        controller.enqueue(encoder.encode('data: [DONE]\n\n'))
        controller.close()
      } else if (then === 'cut') controller.close()
      else if (then === 'error') controller.error(new Error('connection reset'))
      else cancel?.on('abort', () => controller.error(new Error('cancelled')))
    },
    cancel() {
      cancelled = true
    },
  })
  const headers: Record<string, string> = { 'content-type': 'text/event-stream' }
  return {
    status: 200,
    headers: { get: (name) => headers[name.toLowerCase()] ?? null },
    body,
    text: async () => '',
    cancelled: () => cancelled || Boolean(cancel?.aborted),
  }
}

/** A fake set of backend nodes: `answer` decides each request by node id; every request is recorded. */
export function fakeNodes(
  answer: (
    node: string,
    request: UpstreamRequest & { json?: Record<string, any> },
  ) => UpstreamResponse | Promise<UpstreamResponse>,
) {
  const requests: { node: string; path: string; json?: Record<string, any>; headers: Record<string, string> }[] = []
  const upstream: UpstreamFetch = async (request) => {
    const url = new URL(request.url)
    const node = url.hostname.replace(/\.test$/, '')
    const json = request.body === undefined ? undefined : JSON.parse(request.body)
    requests.push({ node, path: url.pathname, json, headers: request.headers })
    return answer(node, { ...request, json })
  }
  return { upstream, requests, nodesTried: () => requests.map((r) => r.node) }
}

/** A completion in OpenAI's shape with usage. */
export const completionBody = (text = ' hello', usage = { prompt_tokens: 3, completion_tokens: 2 }) => ({
  id: 'cmpl-test',
  object: 'text_completion',
  created: 0,
  model: 'm',
  choices: [{ index: 0, text, logprobs: null, finish_reason: 'length' }],
  usage: { ...usage, total_tokens: usage.prompt_tokens + usage.completion_tokens },
})

/** A logger that keeps every line, for assertions on what is (and is not) logged. */
export function recordingLogger() {
  const lines: { level: 'info' | 'warn' | 'error'; fields: Record<string, unknown>; message: string }[] = []
  const logger: Logger = {
    info: (fields, message) => void lines.push({ level: 'info', fields: fields as Record<string, unknown>, message }),
    warn: (fields, message) => void lines.push({ level: 'warn', fields: fields as Record<string, unknown>, message }),
    error: (fields, message) => void lines.push({ level: 'error', fields: fields as Record<string, unknown>, message }),
  }
  return { logger, lines }
}

/** Polls until `check` is true (things that end after the response: access log, settling). */
export async function until(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}
