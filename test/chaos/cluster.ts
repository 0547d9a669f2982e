import { createHash } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { type RedisServer, startRedis } from '../helpers/redis-server.ts'

/**
 * The system the chaos test breaks: four real backend nodes (stories260K) in two regions that
 * fall back on each other, real Redis, and two gateways sharing it, as behind a load balancer.
 * Timeouts are scaled to the test (seconds, not minutes); everything else is the default
 * configuration: breakers, outlier ejection, the retry budget.
 */
export const API_KEY = 'sy-chaos-key-0123456789abcdef012345'
export const NODE_IDS = ['eu-1', 'eu-2', 'us-1', 'us-2'] as const
export const ROUTING = {
  healthCheck: { intervalMs: 500, timeoutMs: 1000, unhealthyAfter: 2, healthyAfter: 1 },
  retry: { perTryTimeoutMs: 3000 },
  stream: { stallTimeoutMs: 3000 },
}
const limits = { requestsPerWindow: 10_000_000, tokensPerMinute: 1_000_000_000, maxConcurrent: 100_000 }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export interface ExtraNode {
  id: string
  url: string
  weight: number
}

interface NodeState {
  id: string
  healthy: boolean
  ejected: boolean
  breaker: string
  usable: boolean
}

export async function until(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

export class Cluster {
  readonly backends: Record<string, BackendProcess> = {}
  gateways: GatewayProcess[] = []
  redis!: RedisServer
  /** Nodes added to region eu by a config reload (the fake faulty nodes). */
  private extra: ExtraNode[] = []
  /** Every process started, replaced ones included, for their logs. */
  private readonly started: { name: string; output: () => string }[] = []

  /** Starts everything; on failure what did start is still stopped by stop(). */
  async start(): Promise<void> {
    this.redis = await startRedis()
    await Promise.all(
      NODE_IDS.map(async (id) =>
        this.started.push({ name: id, output: (this.backends[id] = await startBackend()).output }),
      ),
    )
    this.gateways = await Promise.all([0, 1].map(() => startGateway(this.config(), this.gatewayEnv())))
    this.gateways.forEach((g, i) => {
      this.started.push({ name: `gateway-${i + 1}`, output: g.output })
    })
  }

  config(): object {
    const node = (id: string) => ({ id, url: this.backends[id].url })
    return {
      auth: {
        apiKeys: [{ id: 'chaos', tenant: 'chaos', hash: createHash('sha256').update(API_KEY).digest('hex'), limits }],
      },
      // Every request must reach a backend: a cached answer would hide the failure under test.
      cache: { enabled: false },
      routing: {
        region: 'eu',
        regions: [
          { name: 'eu', fallback: ['us'], nodes: [node('eu-1'), node('eu-2'), ...this.extra] },
          { name: 'us', fallback: ['eu'], nodes: [node('us-1'), node('us-2')] },
        ],
        ...ROUTING,
      },
    }
  }

  private gatewayEnv(port?: number): Record<string, string> {
    return { REDIS_URL: this.redis.url, ...(port ? { PORT: String(port) } : {}) }
  }

  get urls(): string[] {
    return this.gateways.map((g) => g.url)
  }

  /** Rewrites every gateway's config file (they reload on the change) and waits until each serves the new topology. */
  async setExtraNodes(nodes: ExtraNode[]): Promise<void> {
    this.extra = nodes
    const expected = NODE_IDS.length + nodes.length
    for (const gateway of this.gateways) writeFileSync(gateway.configPath, JSON.stringify(this.config()))
    for (const gateway of this.gateways) {
      await until('the reload', async () => {
        const ids = (await this.nodes(gateway)).map((n) => n.id)
        return ids.length === expected && nodes.every((n) => ids.includes(n.id))
      })
    }
  }

  async nodes(gateway: GatewayProcess): Promise<NodeState[]> {
    const status = (await (
      await fetch(`${gateway.url}/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
    ).json()) as { regions: { nodes: NodeState[] }[] }
    return status.regions.flatMap((r) => r.nodes)
  }

  async node(gateway: GatewayProcess, id: string): Promise<NodeState | undefined> {
    return (await this.nodes(gateway)).find((n) => n.id === id)
  }

  /** Waits until every gateway has the node back in rotation (healthy, not ejected, breaker closed). */
  async untilUsable(id: string): Promise<void> {
    for (const gateway of this.gateways)
      await until(`${id} usable`, async () => (await this.node(gateway, id))?.usable === true)
  }

  /** Starts a new backend process on the port of the one that is gone, as a restarted pod or unit would. */
  async replaceBackend(id: string): Promise<void> {
    this.backends[id] = await startBackend({ PORT: String(this.backends[id].port) })
    this.started.push({ name: `${id}-replacement`, output: this.backends[id].output })
    await this.untilUsable(id)
  }

  /** Starts a new gateway on the same port as gateway `index`, which must have exited. */
  async replaceGateway(index: number): Promise<void> {
    this.gateways[index] = await startGateway(this.config(), this.gatewayEnv(this.gateways[index].port))
    this.started.push({ name: `gateway-${index + 1}-replacement`, output: this.gateways[index].output })
    await until('the new gateway ready', () =>
      fetch(`${this.gateways[index].url}/ready`).then(
        (r) => r.ok,
        () => false,
      ),
    )
  }

  /** Each gateway's routing counters, by URL. */
  async counters(): Promise<Record<string, Record<string, number>>> {
    const out: Record<string, Record<string, number>> = {}
    for (const gateway of this.gateways) {
      const text = await (
        await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      ).text()
      const sums: Record<string, number> = (out[gateway.url] = {})
      for (const [name, pattern] of Object.entries(COUNTERS))
        sums[name] = [...text.matchAll(pattern)].reduce((n, m) => n + Number(m[1]), 0)
    }
    return out
  }

  /** One node's tries with `outcome`, summed over the gateways (while the node is still configured). */
  async nodeCounter(backend: string, outcome: string): Promise<number> {
    const pattern = new RegExp(
      `^switchyard_gateway_upstream_attempts_total\\{(?=[^}]*backend="${backend}")(?=[^}]*outcome="${outcome}")[^}]*\\} (\\d+)`,
      'gm',
    )
    let total = 0
    for (const gateway of this.gateways) {
      const text = await (
        await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      ).text()
      for (const match of text.matchAll(pattern)) total += Number(match[1])
    }
    return total
  }

  /** Writes every process's output to `dir` (CHAOS_LOGS), to look into a failure. */
  writeLogs(dir: string): void {
    mkdirSync(dir, { recursive: true })
    const seen = new Map<string, number>()
    for (const { name, output } of this.started) {
      const n = (seen.get(name) ?? 0) + 1
      seen.set(name, n)
      writeFileSync(join(dir, `${name}${n > 1 ? `-${n}` : ''}.log`), output())
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.gateways.map((g) => g.stop('SIGKILL')))
    await Promise.all(Object.values(this.backends).map((b) => b.stop('SIGKILL')))
    await this.redis?.stop()
  }
}

/** The gateway's own record of what it did about the faults, shown beside each scenario. */
const COUNTERS = {
  retries: /^switchyard_gateway_retries_total\{[^}]*\} (\d+)/gm,
  streamFailovers: /^switchyard_gateway_failovers_total\{[^}]*scope="stream"[^}]*\} (\d+)/gm,
  breakerOpens: /^switchyard_gateway_breaker_transitions_total\{[^}]*to="open"[^}]*\} (\d+)/gm,
  budgetExhausted: /^switchyard_gateway_retry_budget_exhausted_total (\d+)/gm,
  // Failed tries at backend nodes, by how they failed.
  timeouts: /^switchyard_gateway_upstream_attempts_total\{[^}]*outcome="timeout"[^}]*\} (\d+)/gm,
  connectErrors: /^switchyard_gateway_upstream_attempts_total\{[^}]*outcome="connect_error"[^}]*\} (\d+)/gm,
  serverErrors: /^switchyard_gateway_upstream_attempts_total\{[^}]*outcome="server_error"[^}]*\} (\d+)/gm,
  stalls: /^switchyard_gateway_upstream_attempts_total\{[^}]*outcome="stall"[^}]*\} (\d+)/gm,
  busy: /^switchyard_gateway_upstream_attempts_total\{[^}]*outcome="overloaded"[^}]*\} (\d+)/gm,
}

/**
 * What the gateways counted between two snapshots, summed over gateways. A gateway restarted
 * in between (its counters went down) counts from its new start.
 */
export function counterDelta(
  before: Record<string, Record<string, number>>,
  after: Record<string, Record<string, number>>,
): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(Object.keys(COUNTERS).map((name) => [name, 0]))
  for (const [url, counts] of Object.entries(after)) {
    for (const name of Object.keys(COUNTERS)) {
      const a = counts[name] ?? 0
      const b = before[url]?.[name] ?? 0
      out[name] += a >= b ? a - b : a
    }
  }
  return out
}
