import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'

/** OpenAI's error body. */
export function errorBody(message: string, code: string | null, type?: string, param: string | null = null) {
  return { error: { message, type: type ?? 'invalid_request_error', param, code } }
}

/** An HTTPException whose response is an OpenAI-shaped JSON error. */
export function gatewayError(status: ContentfulStatusCode, message: string, code: string, options: { param?: string | null; headers?: Record<string, string>; cause?: unknown } = {}): HTTPException {
  const type = status >= 500 ? 'server_error' : status === 429 ? 'rate_limit_error' : status === 401 ? 'authentication_error' : status === 403 ? 'permission_error' : 'invalid_request_error'
  const res = new Response(JSON.stringify(errorBody(message, code, type, options.param ?? null)), {
    status,
    headers: { 'content-type': 'application/json', ...options.headers },
  })
  return new HTTPException(status, { res, message, cause: options.cause })
}

export function errorResponse(status: ContentfulStatusCode, message: string, code: string, headers: Record<string, string> = {}): Response {
  return gatewayError(status, message, code, { headers }).getResponse()
}
