import type { MiddlewareHandler } from 'hono'
import { RequestLifecycle } from '../pipeline/lifecycle.ts'

const VALID_ID = /^[\w.:-]{1,128}$/

/**
 * Accepts a well-formed `x-request-id` or makes one, returns it on the response, and opens
 * the request's lifecycle record that later stages fill in.
 */
export function requestId(): MiddlewareHandler {
  return async (c, next) => {
    const offered = c.req.header('x-request-id')
    const id = offered && VALID_ID.test(offered) ? offered : crypto.randomUUID()
    const lifecycle = new RequestLifecycle({ requestId: id, route: c.req.routePath, startedAt: performance.now() })
    lifecycle.headers['x-request-id'] = id
    c.set('lifecycle', lifecycle)
    await next()
    // Responses made elsewhere (errors, cache hits) get the request's headers here.
    if (c.res !== lifecycle.response)
      for (const name in lifecycle.headers) c.res.headers.set(name, lifecycle.headers[name])
  }
}
