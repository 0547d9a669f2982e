import type { Context, Handler } from 'hono'
import { requireModelAccess } from '../auth/middleware.ts'
import type { ResponseCache } from '../cache/response-cache.ts'
import type { RoutingConfig } from '../config/schema.ts'
import type { ApiRoute } from '../pipeline/parse-request.ts'
import { resolveModel } from '../routing/aliases.ts'
import type { RoutingMetrics } from '../types.ts'
import type { Forward } from './forward.ts'

/** The routes that forward a parsed request body to a backend node, each with its path. */
export const GENERATION_ROUTES: readonly (readonly [ApiRoute, string])[] = [
  ['completions', '/v1/completions'],
  ['chat', '/v1/chat/completions'],
  ['generate', '/generate'],
  ['embeddings', '/v1/embeddings'],
  ['predict', '/predict'],
]

export interface GenerationDeps {
  routing: RoutingConfig
  /** Null when the response cache is off. */
  cache: ResponseCache | null
  metrics: RoutingMetrics
  forward: Forward
}

/** 403 when the key may not use the requested model. */
export const modelAccess = async (c: Context, next: () => Promise<void>) => {
  requireModelAccess(c.get('principal'), c.get('apiRequest').model)
  c.get('lifecycle').record.model = c.get('apiRequest').model
  await next()
}

/**
 * The handler of one generation route (after parsing, model access and limits): resolves an
 * alias, asks for token ids where a stream may need continuing, and answers from the response
 * cache or the backend.
 */
export function generationHandler(deps: GenerationDeps): (route: ApiRoute, path: string) => Handler {
  const { routing, cache, metrics } = deps
  return (route, path) => async (c) => {
    const request = c.get('apiRequest')
    const lifecycle = c.get('lifecycle')
    const served = resolveModel(routing.aliases, request.model, c.get('principal').id)
    if (served?.alias) request.json[request.modelField] = served.model
    // Streams of one choice can be continued on another node; for that the gateway needs the token ids.
    const resumable = route !== 'generate' && request.stream && request.choices === 1 && routing.stream.resume
    if (resumable) request.json.return_token_ids = true
    const forward = async () => {
      const response = await deps.forward(c, {
        path,
        method: 'POST',
        body: request.json,
        model: served?.model,
        stream: { keepUsageEvent: request.clientIncludeUsage, keepTokenIds: request.clientTokenIds, resumable },
      })
      if (served && lifecycle.record.region)
        metrics.served({ model: served.alias ?? served.model, version: served.model, region: lifecycle.record.region })
      if (served?.alias) response.headers.set('x-switchyard-model-version', served.model)
      return response
    }
    if (!cache) return forward()
    const variant = `${request.clientIncludeUsage ? 'usage' : ''}${request.clientTokenIds ? ':ids' : ''}`
    // Encoder answers depend only on the input (no sampling): cached whatever the body says about temperature.
    const deterministic = route === 'embeddings' || route === 'predict' ? true : undefined
    const response = await cache.handle(
      {
        route: path,
        tenant: c.get('principal').tenant,
        body: request.json,
        variant,
        deterministic,
        cacheControl: c.req.header('cache-control'),
      },
      forward,
    )
    lifecycle.record.cache = (response.headers.get('x-cache') as 'HIT' | 'MISS' | 'BYPASS' | null) ?? undefined
    return response
  }
}
