import type { Context } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { ZodError } from 'zod'
import { describeIssue } from './validation-messages.ts'

/** OpenAI's error body: {"error": {"message", "type", "param", "code"}}. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null }
}

/** An error that becomes an HTTP response in OpenAI's shape. */
export class ApiError extends Error {
  readonly status: ContentfulStatusCode
  readonly type: string
  readonly param: string | null
  readonly code: string | null
  readonly headers: Record<string, string>

  constructor(status: ContentfulStatusCode, message: string, options: { type?: string; param?: string | null; code?: string | null; headers?: Record<string, string> } = {}) {
    super(message)
    this.status = status
    this.type = options.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error')
    this.param = options.param ?? null
    this.code = options.code ?? null
    this.headers = options.headers ?? {}
  }

  get body(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}

export function errorResponse(c: Context, error: ApiError): Response {
  for (const [name, value] of Object.entries(error.headers)) c.header(name, value)
  return c.json(error.body, error.status)
}

/** The first validation issue, as a 400 naming the offending parameter and what it allows; `input` is the body that failed. */
export function validationError(error: ZodError, input?: unknown): ApiError {
  const issue = error.issues[0]
  const param = issue.path.map(String).join('.') || null
  return new ApiError(400, describeIssue(issue, input), { param, code: 'invalid_value' })
}
