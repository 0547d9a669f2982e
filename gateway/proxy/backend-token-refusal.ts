import type { BackendNode } from '../routing/backend-node.ts'
import type { Logger } from '../types.ts'

/**
 * Logs, once per node, that a backend refused the gateway's token: with no signing key the
 * gateway sends none, otherwise the node does not hold the matching public key. Either way the
 * fix is the operator's, so the log says which setting to change.
 */
export function tokenRefusalLog(logger: Logger, signs: boolean): (node: BackendNode) => void {
  const told = new Set<string>()
  return (node) => {
    if (told.has(node.url)) return
    // Bounded: a reload builds a new log, and a config holds few nodes.
    if (told.size < 1000) told.add(node.url)
    const fix = signs
      ? "the node's GATEWAY_VERIFY_KEYS_FILE does not hold the public key of the gateway's signing key: add it (npm run keys:backend writes both)"
      : "the gateway has no signing key: set BACKEND_SIGNING_KEY_FILE (Workers: the BACKEND_SIGNING_KEY secret) to the private key whose public key is in the node's GATEWAY_VERIFY_KEYS_FILE"
    logger.error(
      { node: node.id, region: node.region, url: node.url },
      `gateway misconfigured: backend node refuses the gateway's token; ${fix}`,
    )
  }
}
