/**
 * The message of anything thrown: an Error's message, the `message` of an error-like object
 * (errors that crossed a realm, a worker thread or Workers RPC fail `instanceof Error`), or
 * else its string form. One place instead of `(error as Error).message` casts.
 */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) return error.message
  if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
    return (error as { message: string }).message
  }
  return String(error)
}
