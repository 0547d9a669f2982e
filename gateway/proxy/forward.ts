import { gatewayError } from '../pipeline/errors.ts'
import type { RequestLifecycle, Usage } from '../pipeline/lifecycle.ts'
import type { BackendNode } from '../routing/backend-node.ts'
import type { Router } from '../routing/router.ts'
import type { AttemptOutcome, RoutingMetrics } from '../types.ts'
import { Cancellation, type UpstreamFetch, type UpstreamResponse } from '../upstream/upstream.ts'
import { Attempts } from './attempts.ts'
import type { StreamProgress } from './chunk-rewriter.ts'
import { AttemptFailed, ClientGoneError, NodeBusyError, type StreamBroken } from './errors.ts'
import { relayEventStream } from './stream-relay.ts'
import { usageOf } from './usage.ts'

/** Headers passed to the backend as they came: tracing and content negotiation only. */
const PASSED_HEADERS = ['traceparent', 'tracestate', 'accept']
/** Headers of the backend's answer passed to the client. */
const ANSWER_HEADERS = ['content-type', 'retry-after', 'cache-control']

export interface ForwardOptions {
  upstream: UpstreamFetch
  router: Router
  metrics: RoutingMetrics
  path: string
  method: 'GET' | 'POST'
  /** The JSON body; a continuation adds `resume` to it. */
  body?: Record<string, unknown>
  /** The model id sent to the backend (an alias already resolved), to pick nodes that serve it. */
  model?: string
  /** Regions to try, in order. */
  regions: string[]
  /** performance.now() time after which no try starts and streams end. */
  deadline: number
  /** Extra headers for the backend (the gateway's token). */
  backendHeaders?: () => Promise<Record<string, string>> | Record<string, string>
  stream?: { keepUsageEvent: boolean; keepTokenIds: boolean; resumable: boolean }
  /** A node refused the gateway's own token (or its lack of one): the operator's problem, never the client's. */
  onTokenRefused?: (node: BackendNode) => void
}

/** What the proxy needs of the client's request, with no tie to a framework or runtime. */
export interface ClientRequest {
  /** Where the request's record (backend, usage, outcome) is kept and its stream's end told. */
  lifecycle: RequestLifecycle
  /** A header of the client's request. */
  header(name: string): string | undefined
  /** Calls back if the client disconnects before its answer is complete; returns how to stop watching. */
  watch(onGone: () => void): () => void
}

/**
 * The answer for the client: a body as the backend sent it (a 499 with none when the client
 * left), or a relayed event stream that ends the request itself (lifecycle.endStream).
 */
export type ForwardResult =
  | { kind: 'body'; status: number; body: string | null; headers: Record<string, string> }
  | { kind: 'stream'; status: 200; body: ReadableStream<Uint8Array>; headers: Record<string, string> }

/**
 * Sends the request to a backend node, failing over before the first byte reaches the client:
 * on a connect error, a timeout, a 5xx or a busy 503 it tries another node (same region first,
 * then the fallback regions) with backoff, within the retry budget and the deadline. 4xx
 * answers are the client's and are returned as they are. Streams are relayed event by event and
 * continued on another node if theirs breaks (see stream-relay.ts).
 */
export async function forwardToBackend(client: ClientRequest, options: ForwardOptions): Promise<ForwardResult> {
  const { lifecycle } = client
  const attempts = new Attempts(options)
  const tries: TryContext = {
    options,
    headers: await backendRequestHeaders(client, options),
    attempts,
    clientGone: false,
    inFlight: undefined,
    tokenRefused: false,
  }
  // A client that goes away aborts the try in flight, so a backend stops generating an answer
  // nobody will read (until the answer is returned; a stream's relay then ends it).
  const stopWatching = client.watch(() => {
    tries.clientGone = true
    tries.inFlight?.cancel()
  })

  try {
    const body = options.body === undefined ? undefined : JSON.stringify(options.body)
    for (
      let node = await attempts.next(undefined, undefined, 'node');
      node;
      node = await attempts.afterFailure('node')
    ) {
      let answer: TryAnswer
      try {
        answer = await tryNode(tries, node, body)
      } catch (error) {
        if (error instanceof ClientGoneError) {
          // Nobody to answer and nothing to retry: the backend was told to stop.
          options.metrics.attempt({ ...node.labels, outcome: 'client_closed' })
          lifecycle.record.outcome = 'client_closed'
          return { kind: 'body', status: 499, body: null, headers: {} }
        }
        const outcome = attemptOutcomeOf(error)
        options.metrics.attempt({ ...node.labels, outcome })
        if (outcome !== 'overloaded') attempts.last = { node, outcome }
        continue
      }
      return answered(tries, lifecycle, node, answer)
    }
    return noNodeAnswered(tries)
  } finally {
    stopWatching()
  }
}

/** The request's headers for the backend: its id, tracing and content negotiation, the gateway's token. */
async function backendRequestHeaders(client: ClientRequest, options: ForwardOptions): Promise<Record<string, string>> {
  const headers: Record<string, string> = { 'x-request-id': client.lifecycle.record.requestId }
  if (options.body !== undefined) headers['content-type'] = 'application/json'
  for (const name of PASSED_HEADERS) {
    const value = client.header(name)
    if (value) headers[name] = value
  }
  if (options.backendHeaders) Object.assign(headers, await options.backendHeaders())
  return headers
}

/** What a failed try counts as; anything but the try's own errors is the node's breaker refusing it. */
function attemptOutcomeOf(error: unknown): AttemptOutcome {
  if (error instanceof NodeBusyError) return 'overloaded'
  if (error instanceof AttemptFailed) return error.outcome
  return (error as { code?: string }).code === 'EOPENBREAKER' ? 'breaker_open' : 'connect_error'
}

/** A node answered: its body as it is, or its event stream relayed (and continued elsewhere if it breaks). */
function answered(tries: TryContext, lifecycle: RequestLifecycle, node: BackendNode, answer: TryAnswer): ForwardResult {
  const { response, text } = answer
  tries.options.metrics.attempt({
    ...node.labels,
    outcome: response.status < 400 ? 'ok' : response.status === 504 ? 'timeout' : 'client_error',
  })
  lifecycle.record.firstByteAt ??= performance.now()
  lifecycle.record.backend = node.id
  lifecycle.record.region = node.region
  const headers: Record<string, string> = {
    'x-switchyard-region': node.region,
    'x-switchyard-backend': node.id,
    'x-switchyard-attempts': String(tries.attempts.count),
  }
  for (const name of ANSWER_HEADERS) {
    const value = response.headers.get(name)
    if (value) headers[name] = value
  }
  if (text !== undefined) {
    lifecycle.record.usage = answer.usage
    const body = response.status === 204 || response.status === 304 ? null : text
    return { kind: 'body', status: response.status, body, headers }
  }
  answer.clear()
  return { kind: 'stream', status: 200, body: relayStream(tries, lifecycle, response, node), headers }
}

/** No node could answer: the last busy node's 503, or the error that says why. */
function noNodeAnswered({ options, attempts, tokenRefused }: TryContext): ForwardResult {
  const { last } = attempts
  const tried = { 'x-switchyard-attempts': String(attempts.count) }
  if (last?.outcome === 'overloaded' && last.response) {
    const headers = { 'content-type': 'application/json', 'retry-after': last.response.retryAfter ?? '1', ...tried }
    return { kind: 'body', status: 503, body: last.response.text, headers }
  }
  if (attempts.count === 0 && !options.router.servesModel(options.regions, options.model)) {
    throw gatewayError(
      404,
      `The model ${options.model} is not served in the regions this request may use`,
      'model_not_found',
      { param: 'model' },
    )
  }
  if (tokenRefused)
    throw gatewayError(
      500,
      'The gateway is misconfigured: its backend nodes refuse its credentials. The operator has been told in the gateway log.',
      'gateway_misconfigured',
    )
  if (last?.outcome === 'timeout') {
    throw gatewayError(
      504,
      'The backend did not answer within the time allowed (routing.retry.perTryTimeoutMs or server.requestTimeoutMs)',
      'timeout',
      { headers: tried },
    )
  }
  throw gatewayError(503, 'No backend node could serve the request; retry later', 'no_backend_available', {
    headers: { 'retry-after': '1', ...tried },
  })
}

/** Relays a node's event stream; if it breaks, continues it on another node (stream-relay.ts). */
function relayStream(
  tries: TryContext,
  lifecycle: RequestLifecycle,
  response: UpstreamResponse,
  first: BackendNode,
): ReadableStream<Uint8Array> {
  const { options } = tries
  const { router, metrics } = options
  const stream = options.stream ?? { keepUsageEvent: true, keepTokenIds: true, resumable: false }
  let current = first
  let resumes = 0
  return relayEventStream({
    body: response.body!,
    stallTimeoutMs: router.config.stream.stallTimeoutMs,
    deadline: options.deadline,
    dropUsageEvent: !stream.keepUsageEvent,
    dropTokenIds: !stream.keepTokenIds,
    onUsage: (usage) => (lifecycle.record.usage = usage),
    onGiveUp: () => (lifecycle.record.outcome = 'upstream_error'),
    onEnd: lifecycle.endStream,
    resume: async (progress: StreamProgress, failure: StreamBroken) => {
      current.reportLateFailure(failure)
      metrics.attempt({ ...current.labels, outcome: failure.reason })
      if (!stream.resumable || resumes >= router.config.stream.maxResumes) return null
      const continued = await continueElsewhere(tries, current, progress, failure)
      if (!continued) return null
      resumes++
      current = continued.node
      lifecycle.record.resumes = resumes
      return continued.body
    },
  })
}

/**
 * Sends the request again with `resume` (the ids and text the client has) to other nodes in
 * turn, within the retry budget and the deadline; the first that streams continues the answer.
 */
async function continueElsewhere(
  tries: TryContext,
  broken: BackendNode,
  progress: StreamProgress,
  failure: StreamBroken,
): Promise<{ node: BackendNode; body: UpstreamResponse['body'] } | null> {
  const { options, attempts } = tries
  const continued = JSON.stringify({
    ...options.body,
    resume: { token_ids: progress.tokenIds, text_offset: progress.textOffset },
  })
  for (
    let node = await attempts.next(failure.reason, broken, 'stream');
    node;
    node = await attempts.afterFailure('stream', failure.reason)
  ) {
    try {
      const answer = await tryNode(tries, node, continued)
      answer.clear()
      if (answer.text !== undefined) {
        // A 4xx to a continuation: this node cannot continue; do not retry the client's error elsewhere.
        options.metrics.attempt({ ...node.labels, outcome: 'client_error' })
        return null
      }
      options.metrics.attempt({ ...node.labels, outcome: 'ok' })
      return { node, body: answer.response.body }
    } catch (error) {
      if (error instanceof ClientGoneError) return null
      const outcome = attemptOutcomeOf(error)
      options.metrics.attempt({ ...node.labels, outcome })
      attempts.last = { node, outcome }
      if (performance.now() >= options.deadline) return null
    }
  }
  return null
}

/** What every try of one request shares: the request, its tries, and the client's state. */
interface TryContext {
  options: ForwardOptions
  headers: Record<string, string>
  attempts: Attempts
  /** The client left: no try starts, and the one in flight is cancelled (so a backend stops generating). */
  clientGone: boolean
  inFlight: Cancellation | undefined
  /** A node refused the gateway's own token. */
  tokenRefused: boolean
}

/** A try's answer: a JSON body read whole (`text`), or an event stream whose try timer `clear` stops. */
interface TryAnswer {
  response: UpstreamResponse
  text: string | undefined
  usage: Usage | undefined
  clear: () => void
}

/** One try at one node; resolves with its answer (2xx–4xx), throws AttemptFailed, NodeBusyError or ClientGoneError. */
function tryNode(tries: TryContext, node: BackendNode, body: string | undefined): Promise<TryAnswer> {
  const { options, headers } = tries
  return node.run(async () => {
    if (tries.clientGone) throw new ClientGoneError('client closed the request')
    const timeoutMs = Math.min(options.router.config.retry.perTryTimeoutMs, options.deadline - performance.now())
    const cancel = new Cancellation()
    const timer = setTimeout(() => cancel.cancel(), timeoutMs)
    tries.inFlight = cancel
    try {
      const response = await options.upstream({
        url: node.url + options.path,
        method: options.method,
        headers,
        body,
        cancel,
      })
      if (isEventStream(response) && response.status === 200)
        return { response, text: undefined, usage: undefined, clear: () => clearTimeout(timer) }
      const text = await response.text()
      clearTimeout(timer)
      if (response.status === 503) {
        tries.attempts.last = {
          node,
          outcome: 'overloaded',
          response: { status: 503, text, retryAfter: response.headers.get('retry-after') },
        }
        throw new NodeBusyError('busy')
      }
      // 504 is the request's own deadline passing at the backend, not a broken node: another
      // node would time out too, so the client gets the backend's timeout answer as it is.
      if (response.status >= 500 && response.status !== 504) throw new AttemptFailed('server_error')
      if (response.status === 401 && refusesGatewayToken(text)) {
        tries.tokenRefused = true
        options.onTokenRefused?.(node)
        throw new AttemptFailed('server_error')
      }
      // A 200 whose body is not JSON (cut short or garbled by the node or on the way) is a
      // failed try, not an answer. Parsed once, here; usage is read from the result.
      let usage: Usage | undefined
      if (response.status === 200) {
        try {
          usage = usageOf(JSON.parse(text))
        } catch {
          throw new AttemptFailed('server_error')
        }
      }
      return { response, text, usage, clear: () => {} }
    } catch (error) {
      clearTimeout(timer)
      if (tries.clientGone) throw new ClientGoneError('client closed the request')
      if (error instanceof NodeBusyError || error instanceof AttemptFailed) throw error
      throw new AttemptFailed(cancel.aborted ? 'timeout' : 'connect_error')
    }
  })
}

const isEventStream = (response: UpstreamResponse) =>
  response.headers.get('content-type')?.startsWith('text/event-stream') ?? false

/** The backend's 401 for a request without a valid gateway token (backend/api/gateway-auth.ts). */
function refusesGatewayToken(text: string): boolean {
  try {
    return (JSON.parse(text) as { error?: { code?: unknown } }).error?.code === 'invalid_gateway_token'
  } catch {
    return false
  }
}
