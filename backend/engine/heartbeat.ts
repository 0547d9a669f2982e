/**
 * The engine worker's proof of progress, shared with the main thread without messages (a
 * message would queue behind the very work that may be stuck): one 64-bit slot holding the
 * time (ms since the epoch) the worker last showed progress. The worker writes it after every
 * scheduler step and, while it has nothing to do, from a timer; a thread blocked in a forward
 * pass (or a wedged GPU call) writes nothing, so the slot ages.
 */
export class Heartbeat {
  private readonly slot: BigInt64Array

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(8)) {
    this.slot = new BigInt64Array(buffer)
  }

  beat(now = Date.now()): void {
    Atomics.store(this.slot, 0, BigInt(now))
  }

  /** Time since the last beat; Infinity before the first. */
  ageMs(now = Date.now()): number {
    const last = Number(Atomics.load(this.slot, 0))
    return last === 0 ? Infinity : now - last
  }
}

/** How often an idle worker beats: well inside the stall timeout, so an idle engine never looks stuck. */
export function idleBeatIntervalMs(stallTimeoutMs: number): number {
  return Math.max(10, Math.min(1000, Math.floor(stallTimeoutMs / 5)))
}
