import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { errorBody } from '../../openai/errors.ts'

/** OpenAI's error type for a gateway status (a `type` option overrides it). */
const typeOf = (status: number) =>
  status >= 500
    ? 'server_error'
    : status === 429
      ? 'rate_limit_error'
      : status === 401
        ? 'authentication_error'
        : status === 403
          ? 'permission_error'
          : 'invalid_request_error'

/** An HTTPException whose response is an OpenAI-shaped JSON error (the body from openai/errors.ts). */
export function gatewayError(
  status: ContentfulStatusCode,
  message: string,
  code: string,
  options: { param?: string | null; type?: string; headers?: Record<string, string>; cause?: unknown } = {},
): HTTPException {
  const res = new Response(
    JSON.stringify(errorBody(message, { type: options.type ?? typeOf(status), param: options.param, code })),
    {
      status,
      headers: { 'content-type': 'application/json', ...options.headers },
    },
  )
  return new HTTPException(status, { res, message, cause: options.cause })
}

/** gatewayError's response, to return rather than throw (also where there is no Hono context). */
export function errorResponse(
  status: ContentfulStatusCode,
  message: string,
  code: string,
  headers: Record<string, string> = {},
): Response {
  return gatewayError(status, message, code, { headers }).getResponse()
}

/** The 404 of a path the gateway does not serve. */
export function noRouteResponse(request: Request): Response {
  return errorResponse(404, `No route for ${request.method} ${new URL(request.url).pathname}`, 'not_found')
}
