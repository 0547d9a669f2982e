import type { PhaseStats } from '../helpers/load-driver.ts'

/** A failure a scenario is allowed, for whom, and why (the report states it beside the count). */
export interface Expected {
  kind: string
  labels: string[]
  why: string
}

export interface ScenarioReport {
  name: string
  /** What was done, in one or two sentences. */
  what: string
  stats: PhaseStats
  /** What the gateways counted meanwhile (retries, stream failovers, breaker opens, budget). */
  gateway: Record<string, number>
  expected: Expected[]
  /** Measured evidence that the fault happened and what the system did (drain, 503s, fault counts). */
  notes: string[]
}

/** Failures the scenario's expectations cover. */
export function explained(stats: PhaseStats, expected: Expected[]): number {
  let n = 0
  for (const [kind, failure] of Object.entries(stats.failures)) {
    for (const [label, count] of Object.entries(failure.byLabel))
      if (expected.some((e) => e.kind === kind && e.labels.includes(label))) n += count
  }
  return n
}

/** Failures nothing explains, one line each (kind, which request, an example). */
export function unexplained(stats: PhaseStats, expected: Expected[]): string[] {
  const out: string[] = []
  for (const [kind, failure] of Object.entries(stats.failures)) {
    for (const [label, count] of Object.entries(failure.byLabel)) {
      if (!expected.some((e) => e.kind === kind && e.labels.includes(label)))
        out.push(`${count} × ${kind} (${label}); e.g. ${failure.example}`)
    }
  }
  return out
}

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length ? Math.round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]) : '–'
}

export function renderTable(reports: ScenarioReport[]): string {
  const rows = reports.map((r) => {
    const s = r.stats
    const g = r.gateway
    return `| ${r.name} | ${s.sent} | ${s.ok} | ${s.failed} | ${explained(s, r.expected)} | ${s.nonStreamFailed} | ${s.mismatches} | ${s.streams} | ${quantile(s.latencies, 0.5)} / ${quantile(s.latencies, 0.99)} | ${g.retries ?? '–'} | ${g.streamFailovers ?? '–'} | ${g.breakerOpens ?? '–'} |`
  })
  const total = (pick: (s: PhaseStats) => number) => reports.reduce((n, r) => n + pick(r.stats), 0)
  rows.push(
    `| **all** | ${total((s) => s.sent)} | ${total((s) => s.ok)} | ${total((s) => s.failed)} | ${reports.reduce((n, r) => n + explained(r.stats, r.expected), 0)} | ${total((s) => s.nonStreamFailed)} | ${total((s) => s.mismatches)} | ${total((s) => s.streams)} | | | | |`,
  )
  return [
    '| scenario | sent | ok | failed | explained | non-stream failed | text mismatches | streams sent | ok latency p50 / p99 (ms) | gateway retries | stream failovers | breaker opens |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
  ].join('\n')
}

export function renderDetails(reports: ScenarioReport[]): string {
  return reports
    .map((r) => {
      const lines = [`### ${r.name}`, '', r.what, '']
      for (const note of r.notes) lines.push(`- ${note}`)
      const g = r.gateway
      const tries = [
        ['timed out', g.timeouts],
        ['connection failed', g.connectErrors],
        ['5xx or malformed', g.serverErrors],
        ['stalled stream', g.stalls],
        ['busy (503)', g.busy],
      ].filter(([, n]) => n)
      if (tries.length)
        lines.push(
          `- Failed tries at backend nodes, as the gateways counted them: ${tries.map(([what, n]) => `${n} ${what}`).join(', ')}${g.budgetExhausted ? `; ${g.budgetExhausted} retries refused by the retry budget` : ''}.`,
        )
      if (r.stats.balancerRetries)
        lines.push(
          `- The balancer re-sent ${r.stats.balancerRetries} requests to the other gateway after a refused connection (the request never reached a gateway).`,
        )
      if (r.stats.retriedByGateway)
        lines.push(
          `- ${r.stats.retriedByGateway} answers needed more than one try at the gateway (\`x-switchyard-attempts\` > 1).`,
        )
      for (const [kind, failure] of Object.entries(r.stats.failures)) {
        for (const [label, count] of Object.entries(failure.byLabel)) {
          const why = r.expected.find((e) => e.kind === kind && e.labels.includes(label))?.why
          lines.push(`- **${count} × \`${kind}\`** (${label}): ${why ?? `NOT EXPLAINED; e.g. ${failure.example}`}`)
        }
      }
      if (r.stats.failed === 0) lines.push('- No failure.')
      return lines.join('\n')
    })
    .join('\n\n')
}
