import type { Logger } from '../types.ts'

export interface LogLimiterOptions {
  /** At most one line per cause per this long (ms). Default 10 s. */
  intervalMs?: number
  /** Most causes tracked at once (bounded memory under odd inputs); past it the oldest is forgotten. Default 1000. */
  maxCauses?: number
  /** The clock (ms); tests pass their own. */
  now?: () => number
}

export type LimitedLog = (level: keyof Logger, cause: string, fields: Record<string, unknown>, message: string) => void

interface CauseState {
  /** When the current interval began: its first line was written then. */
  since: number
  /** Lines of this cause not written since. */
  suppressed: number
  level: keyof Logger
  message: string
  timer?: ReturnType<typeof setTimeout>
}

/**
 * Rate-limits repeated log lines: for each cause (e.g. `auth:store_unavailable`) the first line
 * of an interval is written, later ones in the interval are only counted, and the count is
 * written (`suppressed`, with the interval in ms) when the interval ends: by a timer where the
 * runtime keeps one (Node; it never holds the process open), else with the next line of that
 * cause. So an outage that fails every request logs a few lines, not one per request.
 */
export function createLogLimiter(logger: Logger, options: LogLimiterOptions = {}): LimitedLog {
  const intervalMs = options.intervalMs ?? 10_000
  const maxCauses = options.maxCauses ?? 1000
  const now = options.now ?? Date.now
  const causes = new Map<string, CauseState>()

  const flush = (cause: string, state: CauseState) => {
    if (state.timer !== undefined) clearTimeout(state.timer)
    state.timer = undefined
    if (state.suppressed === 0) return
    logger[state.level]({ cause, suppressed: state.suppressed, intervalMs }, `${state.message} (repeated)`)
    state.suppressed = 0
  }

  return (level, cause, fields, message) => {
    const at = now()
    const state = causes.get(cause)
    if (state && at - state.since < intervalMs) {
      state.suppressed++
      if (state.timer === undefined && state.suppressed === 1) {
        state.timer = setTimeout(() => flush(cause, state), state.since + intervalMs - at)
        ;(state.timer as { unref?: () => void }).unref?.()
      }
      return
    }
    if (state) flush(cause, state)
    else if (causes.size >= maxCauses) {
      const [oldest, oldestState] = causes.entries().next().value!
      flush(oldest, oldestState)
      causes.delete(oldest)
    }
    causes.delete(cause)
    causes.set(cause, { since: at, suppressed: 0, level, message })
    logger[level](fields, message)
  }
}
