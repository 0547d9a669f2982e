import type { Context, Handler, MiddlewareHandler } from 'hono'
import type { RoutingConfig } from '../config/schema.ts'
import { errorResponse, gatewayError } from '../pipeline/errors.ts'

/** A model id as nodes serve them (backend MODEL_ID): segments of letters, digits and . _ - :, joined by /; no . or .. segment. */
const MODEL_ID = /^(?!\.{1,2}(\/|$))[\w.:-]+(\/(?!\.{1,2}(\/|$))[\w.:-]+)*$/

/**
 * Before authentication: a path under /v1/models/ that cannot name a model (`..` segments,
 * encoded slashes, other characters) is no route at all, so it gets the unknown route's 404
 * whoever asks, as any path that climbs out of the API does.
 */
export const modelIdPath: MiddlewareHandler = async (c, next) => {
  if (!MODEL_ID.test(c.req.param('id') ?? '')) return errorResponse(404, `No route for ${c.req.method} ${new URL(c.req.url).pathname}`, 'not_found')
  await next()
}

/**
 * GET /v1/models/{id}: the model as the backend describes it, an alias as the gateway lists it
 * in /v1/models, and 404 model_not_found for a model this key may not use (as for one that does
 * not exist, so a key cannot probe for other tenants' models).
 */
export function retrieveModel(options: { aliases: RoutingConfig['aliases']; forward: (c: Context, id: string) => Promise<Response> }): Handler {
  return async (c) => {
    const id = c.req.param('id')!
    const allowed = c.get('principal').models
    const notFound = () => gatewayError(404, `The model '${id}' does not exist`, 'model_not_found', { param: 'model' }).getResponse()
    if (allowed && !allowed.includes(id)) return notFound()
    if (Object.hasOwn(options.aliases, id)) return c.json({ id, object: 'model', owned_by: 'switchyard', created: 0 })
    const response = await options.forward(c, id)
    // No node serves it in the regions this request may use: the same answer as an unknown id.
    if (response.status === 404) return notFound()
    return response
  }
}
