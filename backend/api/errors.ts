import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { ApiError } from '../../openai/errors.ts'

/** The Hono response for an ApiError (openai/errors.ts): its status, OpenAI's body and its headers. */
export function apiErrorResponse(c: Context, error: ApiError): Response {
  for (const [name, value] of Object.entries(error.headers)) c.header(name, value)
  return c.json(error.body, error.status as ContentfulStatusCode)
}
