import type { Context, MiddlewareHandler } from 'hono'
import type { RequestLifecycle } from '../pipeline/lifecycle.ts'
import { observeStream } from '../pipeline/observe-stream.ts'
import { type WatchClient, watchRequestSignal } from '../pipeline/watch-client.ts'
import type { GatewayMetrics, Logger } from '../types.ts'

/**
 * One log line and the request metrics per request, written when the request really ends
 * (for streams: the last byte). Fields are ids, counts and durations: never keys, tokens or
 * prompt text.
 */
export function accessLog(options: {
  logger: Logger
  metrics: GatewayMetrics
  /**
   * Runs the end of a JSON request after its response is written (Node: setImmediate), so the
   * log line, metrics and limit settling are not in the client's latency. Default: at once.
   */
  afterResponse?: (run: () => void) => void
  /**
   * Ends a stream's request when its client leaves, even where the runtime then drops the
   * stream without cancelling it (workerd), so the slot, refund and log line are not skipped.
   */
  watchClient?: WatchClient
}): MiddlewareHandler {
  const afterResponse = options.afterResponse ?? ((run: () => void) => run())
  const watchClient = options.watchClient ?? watchRequestSignal
  const endWhenClientLeaves = (c: Context, lifecycle: RequestLifecycle) => {
    const stop = watchClient(c, () => lifecycle.endStream('client_closed'))
    lifecycle.onEnd(stop)
  }
  return async (c, next) => {
    const lifecycle = c.get('lifecycle')
    lifecycle.onEnd((r) => {
      const seconds = (performance.now() - r.startedAt) / 1000
      const route = c.req.routePath === '*' ? 'unmatched' : c.req.routePath
      const keyId = r.keyId ?? 'anonymous'
      options.metrics.request({ route, status: r.status ?? 0, keyId }, seconds)
      if (r.firstByteAt !== undefined) options.metrics.firstByte({ route }, (r.firstByteAt - r.startedAt) / 1000)
      if (r.usage) {
        options.metrics.tokens({ keyId, kind: 'prompt' }, r.usage.promptTokens)
        options.metrics.tokens({ keyId, kind: 'completion' }, r.usage.completionTokens)
      }
      options.logger.info(
        {
          requestId: r.requestId,
          method: c.req.method,
          route,
          status: r.status,
          keyId: r.keyId,
          model: r.model,
          cache: r.cache,
          outcome: r.outcome ?? 'ok',
          durationMs: Math.round(seconds * 1000 * 100) / 100,
          firstByteMs: r.firstByteAt === undefined ? undefined : Math.round((r.firstByteAt - r.startedAt) * 100) / 100,
          promptTokens: r.usage?.promptTokens,
          completionTokens: r.usage?.completionTokens,
        },
        'request',
      )
    })
    await next()
    lifecycle.record.status = c.res.status
    if (c.res === lifecycle.response) {
      // Made by lifecycle.respond(): a stream there already ends the request at its last byte.
      if (!lifecycle.streaming) afterResponse(() => lifecycle.end())
      else endWhenClientLeaves(c, lifecycle)
      return
    }
    // Content type first: reading `body` of a string response makes @hono/node-server build a
    // full Web Response, which costs more than the rest of this middleware.
    const body = c.res.headers.get('content-type')?.startsWith('text/event-stream') ? c.res.body : null
    if (body) {
      // A stream's request ends with its last byte (or the client leaving), not here.
      c.res = new Response(observeStream(body, { onEnd: lifecycle.endStream }), c.res)
      endWhenClientLeaves(c, lifecycle)
    } else {
      afterResponse(() => lifecycle.end())
    }
  }
}
