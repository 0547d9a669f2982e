/**
 * OpenAI's error shape, built in one place for the backend and the gateway: the JSON body,
 * the error that carries it with its HTTP status, and the SSE event a stream ends with.
 */

/** OpenAI's error body: {"error": {"message", "type", "param", "code"}}. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null }
}

export interface ErrorFields {
  /** Default `invalid_request_error`. */
  type?: string
  param?: string | null
  code?: string | null
}

/** The one builder of OpenAI's error body. */
export function errorBody(message: string, fields: ErrorFields = {}): OpenAIErrorBody {
  return {
    error: {
      message,
      type: fields.type ?? 'invalid_request_error',
      param: fields.param ?? null,
      code: fields.code ?? null,
    },
  }
}

/** The SSE event that ends a stream with an error (OpenAI's body as the event's data). */
export function errorEvent(body: OpenAIErrorBody): string {
  return `data: ${JSON.stringify(body)}\n\n`
}

/** An error that becomes an HTTP response in OpenAI's shape (status, body and extra headers). */
export class ApiError extends Error {
  readonly status: number
  readonly type: string
  readonly param: string | null
  readonly code: string | null
  readonly headers: Record<string, string>

  constructor(status: number, message: string, options: ErrorFields & { headers?: Record<string, string> } = {}) {
    super(message)
    this.status = status
    this.type = options.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error')
    this.param = options.param ?? null
    this.code = options.code ?? null
    this.headers = options.headers ?? {}
  }

  get body(): OpenAIErrorBody {
    return errorBody(this.message, this)
  }
}
