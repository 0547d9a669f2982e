import type { z } from 'zod'
import { ApiError } from './errors.ts'
import { describeIssue } from './validation-messages.ts'

/**
 * How deeply a request body may nest arrays and objects (a valid body needs 5). Deeper bodies
 * are refused before anything recurses over them: the gateway's cache key and JSON.stringify
 * would overflow the stack on an unknown field nested a few thousand levels deep.
 */
export const MAX_BODY_DEPTH = 64

/** True when `value` nests arrays or objects deeper than `limit` levels (iterative, so safe at any depth). */
export function nestsDeeperThan(value: unknown, limit: number): boolean {
  const stack: [object, number][] = value !== null && typeof value === 'object' ? [[value, 1]] : []
  while (stack.length > 0) {
    const [node, depth] = stack.pop()!
    if (depth > limit) return true
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1])
    }
  }
  return false
}

/** The first validation issue, as a 400 naming the offending parameter and what it allows; `input` is the body that failed. */
export function validationError(error: z.ZodError, input?: unknown): ApiError {
  const issue = error.issues[0]
  const param = issue.path.map(String).join('.') || null
  return new ApiError(400, describeIssue(issue, input), { param, code: 'invalid_value' })
}

/** What readJsonBody needs of a request (Hono's `c.req` is one). */
export interface JsonRequest {
  header(name: string): string | undefined
  text(): Promise<string>
}

/**
 * Reads a JSON body and validates it with `schema`: `data` is the parsed result, `json` the
 * client's value as sent (unknown fields kept). Throws ApiError: 415 for another content type,
 * 400 for malformed JSON, a body nested too deeply, or invalid fields.
 */
export async function readJsonBody<S extends z.ZodType>(
  request: JsonRequest,
  schema: S,
): Promise<{ data: z.infer<S>; json: unknown }> {
  const type = request.header('content-type') ?? ''
  if (!/^application\/(.+\+)?json\b/i.test(type)) {
    throw new ApiError(415, 'Content-Type must be application/json', { code: 'unsupported_media_type' })
  }
  let json: unknown
  try {
    json = JSON.parse(await request.text())
  } catch {
    throw new ApiError(400, 'The request body is not valid JSON', { code: 'invalid_json' })
  }
  if (nestsDeeperThan(json, MAX_BODY_DEPTH))
    throw new ApiError(400, `The request body nests deeper than ${MAX_BODY_DEPTH} levels`, { code: 'invalid_json' })
  const parsed = schema.safeParse(json)
  if (!parsed.success) throw validationError(parsed.error, json)
  return { data: parsed.data, json }
}
