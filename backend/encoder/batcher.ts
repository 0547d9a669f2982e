/** Options of dynamic batching (backend/config.ts: ENCODER_*). */
export interface BatcherOptions {
  /** How long the first request of an idle batcher waits for others to join its batch. */
  windowMs: number
  /** Most padded tokens (rows × longest row) in one forward pass; a longer single input runs alone. */
  maxBatchTokens: number
  /** Most rows in one forward pass. */
  maxBatchSize: number
}

export interface BatchStats {
  rows: number
  /** Real tokens in the batch. */
  tokens: number
  /** rows × longest row: what the forward pass computed, padding included. */
  paddedTokens: number
  ms: number
}

interface Job {
  ids: number[]
  resolve: (vector: Float32Array) => void
  reject: (error: Error) => void
}

/**
 * Dynamic batching: requests that arrive within `windowMs` of an idle batcher, and all that arrive
 * while a batch runs, are run together, padded to the longest, up to the token and row budgets.
 * One batch runs at a time (one session); the rest wait in arrival order.
 */
export class DynamicBatcher {
  private readonly queue: Job[] = []
  private running = false
  private timer: ReturnType<typeof setTimeout> | null = null

  constructor(
    private readonly run: (rows: number[][]) => Promise<Float32Array[]>,
    private readonly options: BatcherOptions,
    private readonly onBatch?: (stats: BatchStats) => void,
  ) {}

  /** Inputs waiting for a batch. */
  get pending(): number {
    return this.queue.length
  }

  /** A forward pass is running. */
  get busy(): boolean {
    return this.running
  }

  add(ids: number[]): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.queue.push({ ids, resolve, reject })
      if (this.running || this.timer) return
      if (this.options.windowMs <= 0) void this.drain()
      else this.timer = setTimeout(() => void this.drain(), this.options.windowMs)
    })
  }

  /** Waits for the running batch and the queued ones to finish. */
  async idle(): Promise<void> {
    while (this.running || this.timer || this.queue.length > 0) await new Promise((resolve) => setTimeout(resolve, 1))
  }

  /** Takes the longest FIFO prefix of the queue whose padded size fits the budgets (at least one job). */
  private take(): Job[] {
    const { maxBatchTokens, maxBatchSize } = this.options
    let longest = 0
    let count = 0
    while (count < this.queue.length && count < maxBatchSize) {
      const next = Math.max(longest, this.queue[count].ids.length)
      if (count > 0 && next * (count + 1) > maxBatchTokens) break
      longest = next
      count++
    }
    return this.queue.splice(0, count)
  }

  private async drain(): Promise<void> {
    this.timer = null
    this.running = true
    try {
      while (this.queue.length > 0) {
        const jobs = this.take()
        const started = performance.now()
        try {
          const vectors = await this.run(jobs.map((j) => j.ids))
          jobs.forEach((job, i) => {
            job.resolve(vectors[i])
          })
        } catch (error) {
          for (const job of jobs) job.reject(error as Error)
        }
        const tokens = jobs.reduce((n, j) => n + j.ids.length, 0)
        const paddedTokens = jobs.length * Math.max(...jobs.map((j) => j.ids.length))
        this.onBatch?.({ rows: jobs.length, tokens, paddedTokens, ms: performance.now() - started })
      }
    } finally {
      this.running = false
    }
  }
}
