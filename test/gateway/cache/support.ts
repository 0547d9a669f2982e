import { createResponseCache, type ResponseCacheOptions } from '../../../gateway/cache/response-cache.ts'
import { type CacheStore, type GatewayMetrics, type Logger, noopRoutingMetrics } from '../../../gateway/types.ts'

const encoder = new TextEncoder()

/** A Map with TTL on a clock the test moves (no real time involved). */
export class MemoryCacheStore implements CacheStore {
  readonly entries = new Map<string, { value: string; expiresAt: number }>()
  now = 0
  gets = 0
  sets = 0

  async get(key: string): Promise<string | null> {
    this.gets++
    const entry = this.entries.get(key)
    if (!entry) return null
    if (entry.expiresAt <= this.now) {
      this.entries.delete(key)
      return null
    }
    return entry.value
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    this.sets++
    this.entries.set(key, { value, expiresAt: this.now + ttlSeconds * 1000 })
  }
}

export type CacheResult = 'hit' | 'miss' | 'bypass' | 'coalesced'

export function recordingMetrics(): GatewayMetrics & { results: CacheResult[]; count: (r: CacheResult) => number } {
  const results: CacheResult[] = []
  return {
    results,
    count: (r) => results.filter((x) => x === r).length,
    request() {},
    firstByte() {},
    tokens() {},
    rateLimited() {},
    cache: (result) => void results.push(result),
    storeError() {},
    storeUp() {},
    render: async () => null,
    routing: noopRoutingMetrics,
  }
}

export function recordingLogger(): Logger & { warnings: { fields: Record<string, unknown>; message: string }[] } {
  const warnings: { fields: Record<string, unknown>; message: string }[] = []
  return {
    warnings,
    info() {},
    warn: (fields, message) => void warnings.push({ fields, message }),
    error: (fields, message) => void warnings.push({ fields, message }),
  }
}

export function setup(overrides: Partial<ResponseCacheOptions> = {}) {
  const store = new MemoryCacheStore()
  const metrics = recordingMetrics()
  const logger = recordingLogger()
  const cache = createResponseCache({ store, ttlSeconds: 60, maxEntryBytes: 64 * 1024, metrics, logger, ...overrides })
  return { cache, store: (overrides.store as MemoryCacheStore | undefined) ?? store, metrics, logger }
}

export interface Deferred<T> {
  promise: Promise<T>
  resolve: (value: T) => void
  reject: (error: unknown) => void
  settled: () => boolean
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void
  let reject!: (error: unknown) => void
  let done = false
  const promise = new Promise<T>((res, rej) => {
    resolve = (v) => {
      done = true
      res(v)
    }
    reject = (e) => {
      done = true
      rej(e)
    }
  })
  return { promise, resolve, reject, settled: () => done }
}

/** Counts calls to a forward function. */
export function counted(make: () => Promise<Response> | Response): (() => Promise<Response>) & { calls: number } {
  const forward = Object.assign(
    async () => {
      forward.calls++
      return make()
    },
    { calls: 0 },
  )
  return forward
}

export const sse = (events: string[]) => events.map((e) => `data: ${e}\n\n`).join('')

export function jsonResponse(
  body: unknown,
  init: { status?: number; headers?: Record<string, string> } = {},
): Response {
  return new Response(typeof body === 'string' ? body : JSON.stringify(body), {
    status: init.status ?? 200,
    headers: { 'content-type': 'application/json', ...init.headers },
  })
}

/**
 * An upstream SSE response the test writes to by hand: nothing reaches the client until
 * `push`, and `cancelled` resolves when the consumer cancels the stream.
 */
export function controlledStream(init: { status?: number; headers?: Record<string, string> } = {}) {
  let controller!: ReadableStreamDefaultController<Uint8Array>
  const cancelled = deferred<unknown>()
  const body = new ReadableStream<Uint8Array>({
    start: (c) => void (controller = c),
    cancel: (reason) => cancelled.resolve(reason),
  })
  return {
    response: () =>
      new Response(body, {
        status: init.status ?? 200,
        headers: { 'content-type': 'text/event-stream', ...init.headers },
      }),
    push: (text: string) => controller.enqueue(encoder.encode(text)),
    close: () => controller.close(),
    fail: (error: Error) => controller.error(error),
    cancelled,
  }
}

/** An upstream SSE response that writes one chunk per timer tick (a slow backend). */
export function timedStream(chunks: string[]): Response {
  let i = 0
  const body = new ReadableStream<Uint8Array>({
    pull: (controller) =>
      new Promise<void>((resolve) =>
        setTimeout(() => {
          if (i < chunks.length) controller.enqueue(encoder.encode(chunks[i++]))
          else controller.close()
          resolve()
        }, 2),
      ),
  })
  return new Response(body, { headers: { 'content-type': 'text/event-stream' } })
}

/** The `data:` payloads of an SSE text. */
export function parseSse(text: string): string[] {
  return text
    .split('\n\n')
    .filter((e) => e.length > 0)
    .map((e) =>
      e
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.replace(/^data: ?/, ''))
        .join('\n'),
    )
}

/** Reads chunks as text until the accumulated text contains `marker`. */
export async function readUntil(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  marker: string,
  seen = '',
): Promise<string> {
  const decoder = new TextDecoder()
  let text = seen
  while (!text.includes(marker)) {
    const { value, done } = await reader.read()
    if (done) throw new Error(`stream ended before ${JSON.stringify(marker)}; got ${JSON.stringify(text)}`)
    text += decoder.decode(value, { stream: true })
  }
  return text
}

export const chatBody = (extra: Record<string, unknown> = {}) => ({
  model: 'tiny',
  messages: [{ role: 'user', content: 'hello' }],
  temperature: 0,
  max_tokens: 8,
  ...extra,
})

export const request = (
  body: Record<string, unknown>,
  extra: { cacheControl?: string; tenant?: string; route?: string } = {},
) => ({
  route: extra.route ?? '/v1/chat/completions',
  tenant: extra.tenant ?? 'acme',
  body,
  cacheControl: extra.cacheControl,
})

/** Yields to the event loop until `condition` holds (no clock involved). */
export async function until(condition: () => boolean): Promise<void> {
  while (!condition()) await new Promise((resolve) => setImmediate(resolve))
  // One more turn, so requests that just finished their lookup have joined or led.
  await new Promise((resolve) => setImmediate(resolve))
}

/** The rest of a stream as text, from a reader already in use. */
export async function readRest(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder()
  let text = ''
  for (let r = await reader.read(); !r.done; r = await reader.read()) text += decoder.decode(r.value, { stream: true })
  return text + decoder.decode()
}

/** The text with answer ids and creation times blanked: a HIT keeps the content under an identity of its own. */
export const withoutIdentity = (text: string) =>
  text.replace(/"id":"([A-Za-z]+-)[^"]*"/g, '"id":"$1"').replace(/"created":\d+/g, '"created":0')
