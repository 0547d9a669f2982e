import { errorMessage } from '../../lib/error-message.ts'
import type { DiscoveredNodes, RoutingConfig, StaticNode } from '../config/schema.ts'
import type { Logger } from '../types.ts'

/** Addresses found per DNS name. */
export type ResolvedNames = ReadonlyMap<string, readonly string[]>

/** The DNS names that `dns` node entries ask for. */
export function dnsNames(routing: RoutingConfig): string[] {
  return [...new Set(routing.regions.flatMap((r) => r.nodes.filter(isDiscovered).map((n) => n.dns)))]
}

/** One static node per address of each `dns` entry; entries not resolved yet give none. */
export function expandNodes(nodes: RoutingConfig['regions'][number]['nodes'], resolved: ResolvedNames): StaticNode[] {
  return nodes.flatMap((n) => {
    if (!isDiscovered(n)) return [n]
    return (resolved.get(n.dns) ?? []).map((address) => {
      const host = address.includes(':') ? `[${address}]` : address
      return { id: `${n.id}-${address}`, url: `${n.scheme}://${host}:${n.port}`, weight: n.weight, models: n.models }
    })
  })
}

/**
 * Resolves the config's DNS names now and every `intervalMs`, and reports the addresses when
 * they change (pods come and go). A failed lookup keeps the last addresses: a DNS hiccup must
 * not empty a region.
 */
export function startDnsDiscovery(options: {
  routing: () => RoutingConfig
  lookup: (name: string) => Promise<string[]>
  onChange: (resolved: ResolvedNames) => void
  logger: Logger
}): { stop(): void; refresh(): Promise<void> } {
  let current = new Map<string, string[]>()
  let timer: ReturnType<typeof setTimeout> | undefined
  let stopped = false
  const refresh = async () => {
    const names = dnsNames(options.routing())
    const next = new Map<string, string[]>()
    await Promise.all(
      names.map(async (name) => {
        try {
          next.set(name, (await options.lookup(name)).sort())
        } catch (error) {
          options.logger.warn(
            { name, error: errorMessage(error) },
            'DNS lookup for backend nodes failed; keeping the last addresses',
          )
          next.set(name, current.get(name) ?? [])
        }
      }),
    )
    if (JSON.stringify([...next]) === JSON.stringify([...current])) return
    current = next
    options.logger.info({ names: Object.fromEntries(next) }, 'backend nodes discovered')
    options.onChange(next)
  }
  const schedule = () => {
    if (stopped) return
    timer = setTimeout(() => void refresh().finally(schedule), options.routing().discovery.intervalMs)
    timer.unref?.()
  }
  schedule()
  return {
    stop() {
      stopped = true
      clearTimeout(timer)
    },
    refresh,
  }
}

function isDiscovered(node: RoutingConfig['regions'][number]['nodes'][number]): node is DiscoveredNodes {
  return 'dns' in node
}
