import { AsyncLocalStorage } from 'node:async_hooks'
import type { ExecutionContext } from './runtime.ts'

/**
 * workerd cancels a request's outstanding I/O once its response has been sent, unless the
 * request was told to wait for it (`ctx.waitUntil`). The gateway does store writes after the
 * response: token refunds and slot releases when a stream ends, cache writes. Stores that run
 * on Workers pass such work to keepAlive, which finds the request it belongs to here (the
 * async context follows the request into its stream callbacks).
 */
const requests = new AsyncLocalStorage<ExecutionContext>()

/** Runs `handle` as part of the request `ctx`. */
export function withRequestContext<T>(ctx: ExecutionContext, handle: () => T): T {
  return requests.run(ctx, handle)
}

/** Returns `work`, having asked the current request (if any) to stay alive until it settles. */
export function keepAlive<T>(work: Promise<T>): Promise<T> {
  requests.getStore()?.waitUntil(work.catch(() => undefined))
  return work
}
