/**
 * Contracts between the gateway's stages. The pipeline in app.ts depends only on these, so
 * the Node entry (Redis, prom-client, pino) and the Workers entry can supply their own parts.
 */

/** Per-key (or per-token) limits; a missing field means "no limit" for that dimension. */
export interface Limits {
  /** Requests per `requestWindowSeconds`. */
  requestsPerWindow?: number
  requestWindowSeconds?: number
  /** Prompt + completion tokens per minute, reserved before forwarding. */
  tokensPerMinute?: number
  /** Requests in flight at once. */
  maxConcurrent?: number
}

/** Who is calling, after authentication. */
export interface Principal {
  /** API key id or JWT subject; used in logs, metrics and limit keys. Never a secret. */
  id: string
  tenant: string
  /** Models this caller may use; undefined means all. */
  models?: string[]
  limits: Limits
  via: 'api_key' | 'jwt'
  /** Where an API key came from (unset for JWTs and the anonymous principal); part of its limit counters' name. */
  source?: ApiKeyRecord['source']
}

/** An API key as stored: only the SHA-256 hash of the secret, never the secret. */
export interface ApiKeyRecord {
  id: string
  /** hex SHA-256 of the full key string. */
  hash: string
  tenant: string
  models?: string[]
  limits: Limits
  createdAt: string
  revoked?: boolean
  /** Where it came from: the config file (read-only) or the admin API (Redis or memory). */
  source: 'config' | 'store'
}

export interface KeyStore {
  /** The key whose hash this is, or null (unknown or revoked). */
  findByHash(hash: string): Promise<ApiKeyRecord | null>
  create(record: ApiKeyRecord): Promise<void>
  list(): Promise<ApiKeyRecord[]>
  /** Returns false when there was no such key. */
  revoke(id: string): Promise<boolean>
}

/** Outcome of a limit check, with what the x-ratelimit-* headers report. */
export interface LimitState {
  limit: number
  remaining: number
  /** Seconds until the window resets. */
  resetSeconds: number
}

export type Decision =
  | { allowed: true; state: LimitState }
  | { allowed: false; state: LimitState; retryAfterSeconds: number }

/** What one request asks of its caller's limits; a part left out is not limited. */
export interface AdmissionRequest {
  requests?: { limit: number; windowSeconds: number }
  maxConcurrent?: number
  /** Tokens to reserve (prompt bound + max_tokens) of a per-minute budget. */
  tokens?: { cost: number; perMinute: number }
}

/**
 * A store's answer to an admission: granted (with the states for the x-ratelimit-* headers and
 * a settle that frees the slot and refunds unused tokens) or refused with nothing counted.
 */
export type Admission =
  | { allowed: true; requests?: LimitState; tokens?: LimitState; settle(usedTokens: number): Promise<void> }
  | AdmissionRefusal

/** A refused admission: which limit, and when to retry; nothing was counted. */
export interface AdmissionRefusal {
  allowed: false
  refusedBy: 'requests' | 'concurrency' | 'tokens'
  retryAfterSeconds: number
  requests?: LimitState
  tokens?: LimitState
}

/** Rate-limit counters shared by all gateway instances (Redis, Durable Objects) or local to one (memory). */
export interface RateLimitStore {
  /** Counts one request against `limit` per `windowSeconds` for `key` (the per-IP guard). */
  hitRequest(key: string, limit: number, windowSeconds: number): Promise<Decision>
  /**
   * A caller's per-request limits in one atomic step: requests in the window, then concurrency,
   * then tokens; all are taken or none. The grant's settle must be called once, when the
   * response ends, with the tokens really used.
   */
  admit(key: string, request: AdmissionRequest): Promise<Admission>
}

export interface CacheStore {
  get(key: string): Promise<string | null>
  set(key: string, value: string, ttlSeconds: number): Promise<void>
}

/** Structured logging; implementations must never receive secrets or prompt text. */
export interface Logger {
  info(fields: Record<string, unknown>, message: string): void
  warn(fields: Record<string, unknown>, message: string): void
  error(fields: Record<string, unknown>, message: string): void
}

/** The metrics the pipeline records; prom-client on Node. */
export interface GatewayMetrics {
  request(labels: { route: string; status: number; keyId: string }, seconds: number): void
  firstByte(labels: { route: string }, seconds: number): void
  tokens(labels: { keyId: string; kind: 'prompt' | 'completion' }, count: number): void
  rateLimited(labels: { limit: 'requests' | 'tokens' | 'concurrency' | 'ip' }): void
  cache(result: 'hit' | 'miss' | 'bypass' | 'coalesced'): void
  storeError(store: 'redis', operation: string): void
  /** 1 while the shared store answers, 0 while the gateway runs on its in-memory fallback. */
  storeUp(up: boolean): void
  /**
   * The per-IP failed-authentication guard (limits/ip-guard.ts): a failure counted, an address
   * blocked or unblocked, a request refused, or a valid key let through from a blocked address;
   * with the number of addresses this process blocks now.
   */
  ipGuard?(event: 'failure' | 'blocked' | 'unblocked' | 'refused' | 'passed', blockedAddresses: number): void
  /** Prometheus text (Node) or null where the runtime has no scrape endpoint. */
  render(): Promise<{ contentType: string; body: string } | null>
  routing: RoutingMetrics
}

/** Why a try at a backend node did not give a usable answer ('ok' when it did). */
export const ATTEMPT_OUTCOMES = [
  'ok',
  'connect_error',
  'timeout',
  'server_error',
  'overloaded',
  'stall',
  'client_error',
  'breaker_open',
  'client_closed',
] as const
export type AttemptOutcome = (typeof ATTEMPT_OUTCOMES)[number]

/** How a streamed answer ended for the client. */
export type StreamOutcome = 'ok' | 'client_closed' | 'upstream_error'

export const BREAKER_STATES = ['closed', 'half_open', 'open'] as const
export type BreakerState = (typeof BREAKER_STATES)[number]

/** What the router records: tries, failovers, breakers, health, the retry budget. */
export interface RoutingMetrics {
  attempt(labels: { region: string; backend: string; outcome: AttemptOutcome }): void
  retry(reason: AttemptOutcome): void
  failover(labels: { reason: AttemptOutcome; scope: 'node' | 'region' | 'stream' }): void
  breaker(labels: { region: string; backend: string }, state: BreakerState, transition: boolean): void
  health(labels: { region: string; backend: string }, ok: boolean, healthy: boolean): void
  retryBudgetExhausted(): void
  inFlight(labels: { region: string; backend: string }, value: number): void
  served(labels: { model: string; version: string; region: string }): void
  /** The node left the topology (config reload, DNS discovery): its per-node series go with it. */
  nodeRemoved(labels: { region: string; backend: string }): void
}

export const noopRoutingMetrics: RoutingMetrics = {
  attempt() {},
  retry() {},
  failover() {},
  breaker() {},
  health() {},
  retryBudgetExhausted() {},
  inFlight() {},
  served() {},
  nodeRemoved() {},
}
