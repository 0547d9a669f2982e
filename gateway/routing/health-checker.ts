import { Cancellation, type UpstreamFetch } from '../upstream/upstream.ts'
import type { BackendNode } from './backend-node.ts'

export interface HealthCheckSettings {
  intervalMs: number
  jitter: number
  timeoutMs: number
}

export interface HealthChecks {
  stop(): void
  checkNow(): Promise<void>
  /**
   * Without timers: starts a round of checks when one is due (none under way, the interval
   * passed) and returns it, for the runtime to wait on (Workers: ctx.waitUntil).
   */
  checkIfDue(): Promise<void> | undefined
}

/**
 * Active health checks: GET <node>/ready on an interval with jitter, each with a timeout. A
 * node answers 503 on /ready while loading or draining, which takes it out of rotation before
 * it refuses real traffic. With `timers` (the default) checks run on their own from now on;
 * without (Workers, where a timer dies with the request that set it) nothing runs until
 * checkIfDue is called.
 */
export function startHealthChecks(options: {
  nodes: () => readonly BackendNode[]
  upstream: UpstreamFetch
  settings: () => HealthCheckSettings
  headers?: () => Promise<Record<string, string>>
  timers?: boolean
}): HealthChecks {
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  let dueAt = 0
  let round: Promise<void> | undefined

  const checkOne = async (node: BackendNode) => {
    const { timeoutMs } = options.settings()
    const cancel = new Cancellation()
    const giveUp = setTimeout(() => cancel.cancel(), timeoutMs)
    try {
      const response = await options.upstream({
        url: `${node.url}/ready`,
        method: 'GET',
        headers: (await options.headers?.()) ?? {},
        cancel,
      })
      await response.text().catch(() => '')
      node.checked(response.status === 200, response.status === 200 ? undefined : `status ${response.status}`)
    } catch {
      node.checked(false, cancel.aborted ? 'timeout' : 'unreachable')
    } finally {
      clearTimeout(giveUp)
    }
  }
  const checkNow = async () => {
    await Promise.all(options.nodes().map(checkOne))
  }
  const nextWait = () => {
    const { intervalMs, jitter } = options.settings()
    return intervalMs * (1 + jitter * (2 * Math.random() - 1))
  }
  const schedule = () => {
    if (stopped) return
    timer = setTimeout(() => void checkNow().finally(schedule), nextWait())
    timer.unref?.()
  }
  const timers = options.timers ?? true
  if (timers) void checkNow().finally(schedule)
  return {
    stop() {
      stopped = true
      clearTimeout(timer)
    },
    checkNow,
    checkIfDue() {
      if (timers || stopped || round || Date.now() < dueAt) return undefined
      dueAt = Date.now() + nextWait()
      return (round = checkNow().finally(() => (round = undefined)))
    },
  }
}
