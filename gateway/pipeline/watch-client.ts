import type { Context } from 'hono'

/**
 * Calls back if the client disconnects before its answer is complete; returns how to stop
 * watching. Each runtime entry may give its own (Node: the response's close event).
 */
export type WatchClient = (c: Context, onGone: () => void) => () => void

/** Without a runtime hook: the request's AbortSignal, where the runtime aborts it when the client leaves. */
export const watchRequestSignal: WatchClient = (c, onGone) => {
  const signal = c.req.raw.signal as AbortSignal | undefined
  if (!signal) return () => {}
  if (signal.aborted) onGone()
  signal.addEventListener('abort', onGone)
  return () => signal.removeEventListener('abort', onGone)
}
