import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client'
import type { BatchStats } from './encoder/batcher.ts'
import type { StepStats } from './scheduler/types.ts'

const latencyBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
const tokenLatencyBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]

/** The backend node's Prometheus metrics (prom-client), in one registry. */
export class BackendMetrics {
  readonly registry = new Registry()
  readonly requests = new Counter({
    name: 'switchyard_backend_requests_total',
    help: 'HTTP requests by route and status',
    labelNames: ['route', 'status'],
    registers: [this.registry],
  })
  readonly requestDuration = new Histogram({
    name: 'switchyard_backend_request_duration_seconds',
    help: 'HTTP request duration (to the last byte for streams)',
    labelNames: ['route'],
    buckets: latencyBuckets,
    registers: [this.registry],
  })
  readonly promptTokens = new Counter({
    name: 'switchyard_backend_prompt_tokens_total',
    help: 'Prompt tokens processed',
    labelNames: ['model'],
    registers: [this.registry],
  })
  readonly generatedTokens = new Counter({
    name: 'switchyard_backend_generated_tokens_total',
    help: 'Tokens generated',
    labelNames: ['model'],
    registers: [this.registry],
  })
  readonly finished = new Counter({
    name: 'switchyard_backend_sequences_finished_total',
    help: 'Generated sequences by finish reason',
    labelNames: ['model', 'reason'],
    registers: [this.registry],
  })
  readonly rejections = new Counter({
    name: 'switchyard_backend_rejections_total',
    help: 'Requests refused before generation, by reason',
    labelNames: ['model', 'reason'],
    registers: [this.registry],
  })
  readonly timeToFirstToken = new Histogram({
    name: 'switchyard_backend_time_to_first_token_seconds',
    help: 'Time from request to first generated token',
    labelNames: ['model'],
    buckets: latencyBuckets,
    registers: [this.registry],
  })
  readonly interTokenLatency = new Histogram({
    name: 'switchyard_backend_inter_token_latency_seconds',
    help: 'Time between consecutive tokens of a sequence',
    labelNames: ['model'],
    buckets: tokenLatencyBuckets,
    registers: [this.registry],
  })
  readonly modelLoad = new Gauge({
    name: 'switchyard_backend_model_load_seconds',
    help: 'Time to load and warm up each model',
    labelNames: ['model'],
    registers: [this.registry],
  })
  readonly queueDepth = new Gauge({
    name: 'switchyard_backend_queue_depth',
    help: 'Sequences waiting for a batch slot',
    labelNames: ['model'],
    registers: [this.registry],
  })
  readonly running = new Gauge({
    name: 'switchyard_backend_running_sequences',
    help: 'Sequences in the running batch',
    labelNames: ['model'],
    registers: [this.registry],
  })
  readonly batchSize = new Histogram({
    name: 'switchyard_backend_batch_size',
    help: 'Rows per forward pass (decode steps; encoder batches)',
    labelNames: ['model'],
    buckets: [1, 2, 4, 8, 16, 32, 64, 128],
    registers: [this.registry],
  })
  readonly stepDuration = new Histogram({
    name: 'switchyard_backend_step_duration_seconds',
    help: 'Duration of forward passes by phase',
    labelNames: ['model', 'phase'],
    buckets: tokenLatencyBuckets,
    registers: [this.registry],
  })

  constructor(options: { defaultMetrics?: boolean } = {}) {
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: this.registry })
  }

  /** Records one forward pass of an encoder model's dynamic batcher. */
  recordEncoderBatch(model: string, stats: BatchStats): void {
    this.batchSize.observe({ model }, stats.rows)
    this.stepDuration.observe({ model, phase: 'encode' }, stats.ms / 1000)
  }

  /** Records one scheduler step reported by a model's engine worker. */
  recordStep(model: string, stats: StepStats): void {
    this.queueDepth.set({ model }, stats.waiting)
    this.running.set({ model }, stats.running)
    if (stats.batchSize > 0) {
      this.batchSize.observe({ model }, stats.batchSize)
      this.stepDuration.observe({ model, phase: 'decode' }, stats.decodeMs / 1000)
    }
    if (stats.prefillTokens > 0) this.stepDuration.observe({ model, phase: 'prefill' }, stats.prefillMs / 1000)
  }
}
