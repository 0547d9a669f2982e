import type { Context, MiddlewareHandler } from 'hono'
import { gatewayError } from '../pipeline/errors.ts'
import type { Router } from './router.ts'

/** The regions to try for this request, in order: the client's header, the edge location, or the gateway's own region, then its fallbacks. */
export function regionPreference(
  header: string,
  router: Router,
  edgeLocation?: (c: Context) => string | undefined,
): MiddlewareHandler {
  return async (c, next) => {
    const requested = c.req.header(header)
    const preferred = router.preferredRegion(requested, edgeLocation?.(c))
    if (preferred === null) throw gatewayError(400, `Unknown region in ${header}`, 'invalid_region')
    c.set('regionOrder', router.regionOrder(preferred))
    await next()
  }
}

declare module 'hono' {
  interface ContextVariableMap {
    regionOrder: string[]
  }
}
