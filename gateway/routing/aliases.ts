import type { RoutingConfig } from '../config/schema.ts'

export interface ResolvedModel {
  /** The model id sent to the backend. */
  model: string
  /** Set when `model` was chosen among an alias's versions. */
  alias?: string
}

/**
 * Public model names that stand for weighted versions (canary, A/B). Sticky aliases hash the
 * caller id, so one key keeps getting one version while the weights stay the same.
 */
export function resolveModel(
  aliases: RoutingConfig['aliases'],
  model: string | undefined,
  callerId: string,
  random: () => number = Math.random,
): ResolvedModel | undefined {
  if (model === undefined) return undefined
  // Own keys only: a model named "constructor" or "__proto__" must not find Object.prototype's members.
  const alias = Object.hasOwn(aliases, model) ? aliases[model] : undefined
  if (!alias) return { model }
  const versions = alias.versions.filter((v) => v.weight > 0)
  const total = versions.reduce((sum, v) => sum + v.weight, 0)
  let point = (alias.sticky ? stableFraction(`${model}\u0000${callerId}`) : random()) * total
  for (const version of versions) {
    point -= version.weight
    if (point < 0) return { model: version.model, alias: model }
  }
  return { model: versions[versions.length - 1].model, alias: model }
}

/** FNV-1a of the string, as a fraction in [0, 1): stable across processes and runtimes. */
function stableFraction(text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash / 2 ** 32
}
