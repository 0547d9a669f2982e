import type { BackendNode } from './backend-node.ts'

/**
 * Picks a node within one region: only usable nodes that serve the model and were not tried
 * yet for this request; among them, power of two choices on outstanding requests per unit of
 * weight (two weighted random picks, the less loaded wins). Cheap, and it avoids the herd that
 * "always the least loaded" causes when many gateways share stale load figures.
 */
export function pickNode(
  nodes: readonly BackendNode[],
  model: string | undefined,
  exclude: ReadonlySet<BackendNode>,
  options: { panic?: boolean; random?: () => number } = {},
): BackendNode | undefined {
  const random = options.random ?? Math.random
  const candidates = nodes.filter(
    (n) => (options.panic ? n.breakerAllows : n.usable) && n.serves(model) && !exclude.has(n),
  )
  if (candidates.length <= 1) return candidates[0]
  const first = weightedPick(candidates, random)
  const rest = candidates.filter((n) => n !== first)
  const second = weightedPick(rest, random)
  const load = (n: BackendNode) => (n.inFlight + 1) / n.weight
  return load(second) < load(first) ? second : first
}

function weightedPick(nodes: readonly BackendNode[], random: () => number): BackendNode {
  const total = nodes.reduce((sum, n) => sum + n.weight, 0)
  let point = random() * total
  for (const node of nodes) {
    point -= node.weight
    if (point < 0) return node
  }
  return nodes[nodes.length - 1]
}
