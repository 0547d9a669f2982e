import type { Context, Handler, MiddlewareHandler } from 'hono'
import type { RoutingConfig } from '../config/schema.ts'
import { gatewayError, noRouteResponse } from '../pipeline/errors.ts'
import type { ListedModel, ModelContextLengths } from '../routing/model-context.ts'
import type { Forward } from './forward.ts'

/** A model id as nodes serve them (backend MODEL_ID): segments of letters, digits and . _ - :, joined by /; no . or .. segment. */
const MODEL_ID = /^(?!\.{1,2}(\/|$))[\w.:-]+(\/(?!\.{1,2}(\/|$))[\w.:-]+)*$/

/**
 * Before authentication: a path under /v1/models/ that cannot name a model (`..` segments,
 * encoded slashes, other characters) is no route at all, so it gets the unknown route's 404
 * whoever asks, as any path that climbs out of the API does.
 */
export const modelIdPath: MiddlewareHandler = async (c, next) => {
  if (!MODEL_ID.test(c.req.param('id') ?? '')) return noRouteResponse(c.req.raw)
  await next()
}

/**
 * GET /v1/models/{id}: the model as the backend describes it, an alias as the gateway lists it
 * in /v1/models, and 404 model_not_found for a model this key may not use (as for one that does
 * not exist, so a key cannot probe for other tenants' models).
 */
export function retrieveModel(options: {
  aliases: RoutingConfig['aliases']
  forward: (c: Context, id: string) => Promise<Response>
}): Handler {
  return async (c) => {
    const id = c.req.param('id')!
    const allowed = c.get('principal').models
    const notFound = () =>
      gatewayError(404, `The model '${id}' does not exist`, 'model_not_found', { param: 'model' }).getResponse()
    if (allowed && !allowed.includes(id)) return notFound()
    if (Object.hasOwn(options.aliases, id)) return c.json({ id, object: 'model', owned_by: 'switchyard', created: 0 })
    const response = await options.forward(c, id)
    // No node serves it in the regions this request may use: the same answer as an unknown id.
    if (response.status === 404) return notFound()
    return response
  }
}

/** The task API's model list (/predict's models and their tasks); a key limited to some models sees only those. */
export function listTaskModels(options: { forward: Forward }): Handler {
  return async (c) => {
    const response = await options.forward(c, { path: '/models', method: 'GET' })
    if (response.status !== 200) return response
    const list = (await response.json()) as { models: { name: string }[] }
    const allowed = c.get('principal').models
    return c.json({ ...list, models: allowed ? list.models.filter((m) => allowed.includes(m.name)) : list.models })
  }
}

/**
 * GET /v1/models: the backend's list (its context lengths learned on the way) merged with the
 * aliases. Aliases are models too; a key limited to some models sees only those.
 */
export function listModels(options: {
  aliases: RoutingConfig['aliases']
  contexts: ModelContextLengths
  forward: Forward
}): Handler {
  return async (c) => {
    const response = await options.forward(c, { path: '/v1/models', method: 'GET' })
    if (response.status !== 200) return response
    const list = (await response.json()) as { object: string; data: ListedModel[] }
    options.contexts.learn(list.data)
    const aliases = Object.keys(options.aliases).filter((name) => !list.data.some((m) => m.id === name))
    const data = [...list.data, ...aliases.map((id) => ({ id, object: 'model', owned_by: 'switchyard', created: 0 }))]
    const allowed = c.get('principal').models
    return c.json({ ...list, data: allowed ? data.filter((m) => allowed.includes(m.id)) : data }, 200, {
      'x-switchyard-region': response.headers.get('x-switchyard-region') ?? '',
      'x-switchyard-backend': response.headers.get('x-switchyard-backend') ?? '',
    })
  }
}
