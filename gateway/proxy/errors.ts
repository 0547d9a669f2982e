import type { AttemptOutcome } from '../types.ts'

/**
 * Errors of a try that say nothing about the node's health carry `countsAgainstNode: false`;
 * the node's breaker (routing/backend-node.ts) reads that flag, so routing needs no proxy import.
 */

/** A node's answer that says "not now" (503: queue full, draining): skip it, but it is not broken. */
export class NodeBusyError extends Error {
  override name = 'NodeBusyError'
  readonly countsAgainstNode = false
}

/** The client went away during the try: the try was cut short, and that is not the node's doing. */
export class ClientGoneError extends Error {
  override name = 'ClientGoneError'
  readonly countsAgainstNode = false
}

/** A try that did not give a usable answer. */
export class AttemptFailed extends Error {
  constructor(readonly outcome: AttemptOutcome) {
    super(outcome)
  }
}

/** A failure of the stream's current node, after its first byte. */
export class StreamBroken extends Error {
  constructor(
    readonly reason: Extract<AttemptOutcome, 'connect_error' | 'server_error' | 'stall'>,
    message: string,
  ) {
    super(message)
    this.name = 'StreamBroken'
  }
}
