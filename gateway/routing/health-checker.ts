import type { UpstreamFetch } from '../proxy/upstream.ts'
import type { BackendNode } from './backend-node.ts'

export interface HealthCheckSettings {
  intervalMs: number
  jitter: number
  timeoutMs: number
}

/**
 * Active health checks: GET <node>/ready on an interval with jitter, each with a timeout. A
 * node answers 503 on /ready while loading or draining, which takes it out of rotation before
 * it refuses real traffic.
 */
export function startHealthChecks(options: { nodes: () => readonly BackendNode[]; upstream: UpstreamFetch; settings: () => HealthCheckSettings; headers?: () => Promise<Record<string, string>> }): { stop(): void; checkNow(): Promise<void> } {
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false

  const checkOne = async (node: BackendNode) => {
    const { timeoutMs } = options.settings()
    try {
      const response = await options.upstream({ url: `${node.url}/ready`, method: 'GET', headers: (await options.headers?.()) ?? {}, signal: AbortSignal.timeout(timeoutMs) })
      await response.text().catch(() => '')
      node.checked(response.status === 200, response.status === 200 ? undefined : `status ${response.status}`)
    } catch (error) {
      node.checked(false, (error as Error).name === 'TimeoutError' ? 'timeout' : 'unreachable')
    }
  }
  const checkNow = async () => {
    await Promise.all(options.nodes().map(checkOne))
  }
  const schedule = () => {
    if (stopped) return
    const { intervalMs, jitter } = options.settings()
    const wait = intervalMs * (1 + jitter * (2 * Math.random() - 1))
    timer = setTimeout(() => void checkNow().finally(schedule), wait)
    timer.unref?.()
  }
  void checkNow().finally(schedule)
  return {
    stop() {
      stopped = true
      clearTimeout(timer)
    },
    checkNow,
  }
}
