import { Agent, fetch } from 'undici'

/**
 * A steady load through one or more gateways, for chaos tests: a fixed request rate (open
 * loop: a slow answer does not slow the sending), each request drawn in turn from a catalogue
 * of deterministic requests (greedy or seeded) whose text per choice was computed beforehand.
 * Every answer is checked against that text, streams included, so a lost, duplicated or
 * garbled stream token shows as a mismatch, not as a success.
 */
export interface LoadRequest {
  label: string
  path: '/v1/completions' | '/v1/chat/completions' | '/generate'
  body: Record<string, unknown>
  headers?: Record<string, string>
  stream: boolean
  /** The text of each choice, from a non-streaming run of the same request. */
  reference: string[]
}

/** What one failure kind is, with an example (status, error code, first bytes of the text). */
interface FailureKind {
  count: number
  /** How many of them per request label (which requests fail so). */
  byLabel: Record<string, number>
  example: string
}

export interface PhaseStats {
  name: string
  sent: number
  ok: number
  failed: number
  streams: number
  /** Non-streaming requests that did not succeed (the target is zero while a healthy node serves the model). */
  nonStreamFailed: number
  /** Answers whose text differs from the reference: lost, duplicated or garbled tokens. */
  mismatches: number
  failures: Record<string, FailureKind>
  /** Requests the gateway answered after more than one try (x-switchyard-attempts > 1). */
  retriedByGateway: number
  /** Requests the balancer re-sent to another gateway because the first refused the connection. */
  balancerRetries: number
  /** Time to the last byte of each successful answer, ms. */
  latencies: number[]
}

const MISMATCH_KINDS = new Set(['text_mismatch', 'stream_mismatch', 'stream_garbage'])
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export class LoadDriver {
  /** The balancer's targets: gateways in rotation. Take one out before stopping it, as a load balancer's endpoint list would. */
  rotation: string[]
  readonly phases: PhaseStats[] = []
  private current: PhaseStats | undefined
  private next = 0
  private turn = 0
  private running = false
  private loop: Promise<void> | undefined
  private readonly inFlight = new Map<PhaseStats, Set<Promise<void>>>()
  private readonly perGateway = new Map<string, number>()
  private readonly streamsPerBackend = new Map<string, number>()
  private readonly dispatcher = new Agent({ connections: 256 })

  constructor(
    private readonly options: {
      gateways: string[]
      requests: LoadRequest[]
      ratePerSecond: number
      apiKey: string
      timeoutMs?: number
    },
  ) {
    this.rotation = [...options.gateways]
  }

  /**
   * Counts the requests sent from now on under `name` (requests already in flight keep their
   * phase); a name used before continues its counts.
   */
  phase(name: string): PhaseStats {
    let stats = this.phases.find((p) => p.name === name)
    if (!stats) {
      stats = {
        name,
        sent: 0,
        ok: 0,
        failed: 0,
        streams: 0,
        nonStreamFailed: 0,
        mismatches: 0,
        failures: {},
        retriedByGateway: 0,
        balancerRetries: 0,
        latencies: [],
      }
      this.phases.push(stats)
      this.inFlight.set(stats, new Set())
    }
    this.current = stats
    return stats
  }

  /** Requests in flight through one gateway now. */
  inFlightAt(gateway: string): number {
    return this.perGateway.get(gateway) ?? 0
  }

  /** Single-choice streams being received now that started on a backend (its x-switchyard-backend). */
  streamsOn(backend: string): number {
    return this.streamsPerBackend.get(backend) ?? 0
  }

  start(): void {
    this.running = true
    const period = 1000 / this.options.ratePerSecond
    const t0 = performance.now()
    this.loop = (async () => {
      for (let i = 0; this.running; i++) {
        const wait = t0 + i * period - performance.now()
        if (wait > 0) await sleep(wait)
        if (!this.running) break
        this.track(this.send(this.options.requests[this.next++ % this.options.requests.length], this.current!))
      }
    })()
  }

  /** Sends one more request through a given gateway (not the balancer), counted in the current phase. */
  sendVia(gateway: string, request: LoadRequest): Promise<void> {
    return this.track(this.send(request, this.current!, gateway))
  }

  private track(sending: Promise<void>): Promise<void> {
    const pending = this.inFlight.get(this.current!)!
    const p = sending.finally(() => pending.delete(p))
    pending.add(p)
    return p
  }

  /** Stops sending and waits for every request in flight. */
  async stop(): Promise<void> {
    if (!this.loop) return
    this.running = false
    await this.loop
    for (const pending of this.inFlight.values()) await Promise.all(pending)
    this.loop = undefined
    await this.dispatcher.close()
  }

  /** Waits for every answer to a phase's requests; switch to another phase first, or it never ends. */
  async settle(stats: PhaseStats): Promise<void> {
    const pending = this.inFlight.get(stats)!
    while (pending.size > 0) await Promise.all(pending)
  }

  private async send(request: LoadRequest, stats: PhaseStats, via?: string): Promise<void> {
    stats.sent++
    if (request.stream) stats.streams++
    const started = performance.now()
    const failure = await this.attempt(request, stats, via).catch((error: Error) => ({
      kind: 'driver_error',
      detail: error.stack ?? String(error),
    }))
    if (!failure) {
      stats.ok++
      stats.latencies.push(performance.now() - started)
      return
    }
    stats.failed++
    if (!request.stream) stats.nonStreamFailed++
    if (MISMATCH_KINDS.has(failure.kind)) stats.mismatches++
    const entry = (stats.failures[failure.kind] ??= {
      count: 0,
      byLabel: {},
      example: `${request.label}: ${failure.detail}`,
    })
    entry.count++
    entry.byLabel[request.label] = (entry.byLabel[request.label] ?? 0) + 1
  }

  /** One request through the balancer; resolves with the failure, or undefined when the answer is right. */
  private async attempt(
    request: LoadRequest,
    stats: PhaseStats,
    via?: string,
  ): Promise<{ kind: string; detail: string } | undefined> {
    const init = {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: `Bearer ${this.options.apiKey}`,
        ...request.headers,
      },
      body: JSON.stringify(request.body),
      dispatcher: this.dispatcher,
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000),
    }
    // A refused connection means the gateway never saw the request: a load balancer sends it to
    // the next one. Nothing else is re-sent: the request may have been processed.
    for (let tries = 1; ; tries++) {
      const gateway = via ?? this.rotation[this.turn++ % this.rotation.length]
      const count = (delta: number) => this.perGateway.set(gateway, this.inFlightAt(gateway) + delta)
      count(+1)
      let response: Awaited<ReturnType<typeof fetch>>
      try {
        response = await fetch(`${gateway}${request.path}`, init)
      } catch (error) {
        count(-1)
        const code = errorCode(error)
        if (via || code !== 'ECONNREFUSED' || tries >= this.rotation.length)
          return { kind: `network:${code}`, detail: String((error as Error).cause ?? error) }
        stats.balancerRetries++
        continue
      }
      try {
        return await this.check(request, response, stats)
      } finally {
        count(-1)
      }
    }
  }

  private async check(
    request: LoadRequest,
    response: Awaited<ReturnType<typeof fetch>>,
    stats: PhaseStats,
  ): Promise<{ kind: string; detail: string } | undefined> {
    if (Number(response.headers.get('x-switchyard-attempts') ?? 1) > 1) stats.retriedByGateway++
    const backend =
      request.stream && request.reference.length === 1 ? response.headers.get('x-switchyard-backend') : null
    const count = (delta: number) => backend && this.streamsPerBackend.set(backend, this.streamsOn(backend) + delta)
    count(+1)
    let raw = ''
    let cut: string | undefined
    try {
      const decoder = new TextDecoder()
      for await (const chunk of response.body!) raw += decoder.decode(chunk as Uint8Array, { stream: true })
    } catch (error) {
      cut = errorCode(error)
    } finally {
      count(-1)
    }
    if (response.status !== 200)
      return { kind: `http_${response.status}:${errorCodeOf(raw)}`, detail: raw.slice(0, 300) }
    return request.stream ? checkStream(request, raw, cut) : checkJson(request, raw, cut)
  }
}

function checkJson(
  request: LoadRequest,
  raw: string,
  cut: string | undefined,
): { kind: string; detail: string } | undefined {
  if (cut) return { kind: `network:${cut}`, detail: `body cut after ${raw.length} characters` }
  let body: {
    choices?: { index: number; text?: string; message?: { content: string } }[]
    generated_text?: string | string[]
  }
  try {
    body = JSON.parse(raw)
  } catch {
    return { kind: 'bad_json', detail: raw.slice(0, 200) }
  }
  const texts =
    request.path === '/generate'
      ? [body.generated_text ?? []].flat()
      : (body.choices ?? []).sort((a, b) => a.index - b.index).map((c) => c.text ?? c.message?.content ?? '')
  if (JSON.stringify(texts) !== JSON.stringify(request.reference))
    return { kind: 'text_mismatch', detail: `got ${JSON.stringify(texts).slice(0, 200)}` }
  return undefined
}

/**
 * A stream is right when its events are JSON, its per-choice text equals the reference, and it
 * ends with exactly one [DONE]. A stream that ends with an error event, or is cut, fails with
 * that kind, but its text so far must still be a prefix of the reference (else: mismatch).
 */
function checkStream(
  request: LoadRequest,
  raw: string,
  cut: string | undefined,
): { kind: string; detail: string } | undefined {
  const texts = request.reference.map(() => '')
  let ending: 'done' | 'error' | 'none' = 'none'
  let errorCode = ''
  for (const block of raw.split('\n\n')) {
    const data = block
      .split('\n')
      .filter((l) => l.startsWith('data:'))
      .map((l) => l.slice(5).trimStart())
      .join('\n')
    if (!data) continue
    if (ending !== 'none')
      return { kind: 'stream_mismatch', detail: `an event after the stream ended: ${data.slice(0, 100)}` }
    if (data === '[DONE]') {
      ending = 'done'
      continue
    }
    let event: {
      error?: { code?: string }
      choices?: { index: number; text?: string; delta?: { content?: string | null } }[]
    }
    try {
      event = JSON.parse(data)
    } catch {
      return { kind: 'stream_garbage', detail: data.slice(0, 100) }
    }
    if (event.error) {
      ending = 'error'
      errorCode = event.error.code ?? 'unknown'
      continue
    }
    for (const choice of event.choices ?? []) {
      if (choice.index >= texts.length) return { kind: 'stream_mismatch', detail: `choice index ${choice.index}` }
      texts[choice.index] += choice.text ?? choice.delta?.content ?? ''
    }
  }
  const prefixes = texts.every((t, i) => request.reference[i].startsWith(t))
  if (!prefixes)
    return {
      kind: 'stream_mismatch',
      detail: `got ${JSON.stringify(texts).slice(0, 200)}, expected ${JSON.stringify(request.reference).slice(0, 200)}`,
    }
  if (ending === 'done')
    return texts.every((t, i) => t === request.reference[i])
      ? undefined
      : {
          kind: 'stream_mismatch',
          detail: `[DONE] after ${texts.map((t) => t.length).join('+')} of ${request.reference.map((t) => t.length).join('+')} characters`,
        }
  if (ending === 'error')
    return {
      kind: `stream_error:${errorCode}`,
      detail: `after ${texts.map((t) => t.length).join('+')} of ${request.reference.map((t) => t.length).join('+')} characters (a prefix of the reference)`,
    }
  return {
    kind: cut ? `stream_cut:${cut}` : 'stream_no_done',
    detail: `after ${texts.map((t) => t.length).join('+')} characters (a prefix of the reference)`,
  }
}

function errorCode(error: unknown): string {
  const e = error as { name?: string; code?: unknown; cause?: { code?: unknown; name?: string } }
  if (e.name === 'TimeoutError' || e.cause?.name === 'TimeoutError') return 'client_timeout'
  return String(e.cause?.code ?? e.code ?? e.cause?.name ?? e.name ?? 'unknown')
}

function errorCodeOf(raw: string): string {
  try {
    return (JSON.parse(raw) as { error?: { code?: string } }).error?.code ?? 'no_code'
  } catch {
    return 'not_json'
  }
}

/** The text of each choice of a non-streaming answer (to build references). */
export async function referenceTexts(url: string, request: Omit<LoadRequest, 'reference'>): Promise<string[]> {
  const response = await fetch(`${url}${request.path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...request.body, stream: false }),
  })
  const raw = await response.text()
  if (response.status !== 200) throw new Error(`reference for ${request.label}: ${response.status} ${raw}`)
  const body = JSON.parse(raw) as {
    choices?: { index: number; text?: string; message?: { content: string } }[]
    generated_text?: string | string[]
  }
  return request.path === '/generate'
    ? [body.generated_text ?? []].flat()
    : body.choices!.sort((a, b) => a.index - b.index).map((c) => c.text ?? c.message?.content ?? '')
}
