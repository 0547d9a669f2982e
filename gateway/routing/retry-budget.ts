/**
 * Retries allowed as a share of recent requests (Finagle/Envoy style): over a sliding window,
 * retries ≤ ratio × requests + minPerSecond × window. An outage then costs at most that much
 * extra load instead of multiplying every request by the number of tries.
 */
export class RetryBudget {
  private readonly requests: number[]
  private readonly retries: number[]
  private bucketStart = 0
  private current = 0

  constructor(
    private readonly settings: { budgetRatio: number; budgetMinPerSecond: number; budgetWindowSeconds: number },
    private readonly now: () => number = Date.now,
  ) {
    this.requests = new Array(settings.budgetWindowSeconds).fill(0)
    this.retries = new Array(settings.budgetWindowSeconds).fill(0)
  }

  recordRequest(): void {
    this.advance()
    this.requests[this.current]++
  }

  /** Takes one retry from the budget; false when it is spent. */
  tryRetry(): boolean {
    this.advance()
    const sum = (a: number[]) => a.reduce((x, y) => x + y, 0)
    const allowed =
      this.settings.budgetRatio * sum(this.requests) +
      this.settings.budgetMinPerSecond * this.settings.budgetWindowSeconds
    if (sum(this.retries) + 1 > allowed) return false
    this.retries[this.current]++
    return true
  }

  snapshot(): { requests: number; retries: number; windowSeconds: number } {
    this.advance()
    return {
      requests: this.requests.reduce((a, b) => a + b, 0),
      retries: this.retries.reduce((a, b) => a + b, 0),
      windowSeconds: this.settings.budgetWindowSeconds,
    }
  }

  /** Moves to the current one-second bucket, clearing the buckets that fell out of the window. */
  private advance(): void {
    const second = Math.floor(this.now() / 1000)
    if (this.bucketStart === 0) this.bucketStart = second
    const steps = Math.min(second - this.bucketStart, this.requests.length)
    for (let i = 0; i < steps; i++) {
      this.current = (this.current + 1) % this.requests.length
      this.requests[this.current] = 0
      this.retries[this.current] = 0
    }
    if (steps > 0) this.bucketStart = second
  }
}
