import type { Context, Handler } from 'hono'
import type { RoutingConfig } from '../config/schema.ts'
import { gatewayError } from '../pipeline/errors.ts'

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
