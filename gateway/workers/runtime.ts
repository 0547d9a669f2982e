/**
 * The few Cloudflare Workers runtime types the gateway uses, declared here rather than pulling
 * in @cloudflare/workers-types (whose globals would clash with Node's in this one tsconfig).
 * They describe the runtime's own objects; nothing here runs.
 */
export type { ExecutionContext } from 'hono'

/** A Durable Object's id, from `idFromName`. */
export interface DurableObjectId {
  toString(): string
}

/** Workers RPC: every method of the object, called remotely, answers a Promise. */
export type DurableObjectStub<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never
}

export interface DurableObjectNamespace<T> {
  idFromName(name: string): DurableObjectId
  get(id: DurableObjectId): DurableObjectStub<T>
}

/** Transactional storage of one Durable Object (the key-value API, on SQLite-backed objects too). */
export interface DurableObjectStorage {
  get<T>(key: string): Promise<T | undefined>
  list<T>(options?: { prefix?: string }): Promise<Map<string, T>>
  put<T>(key: string, value: T): Promise<void>
  delete(key: string): Promise<boolean>
  deleteAll(): Promise<void>
  getAlarm(): Promise<number | null>
  setAlarm(scheduledTime: number): Promise<void>
}

export interface DurableObjectState {
  storage: DurableObjectStorage
  /** Holds back every other event until `callback` settles (used to load state once). */
  blockConcurrencyWhile<T>(callback: () => Promise<T>): Promise<T>
}

export interface KVNamespace {
  getWithMetadata<M>(key: string): Promise<{ value: string | null; metadata: M | null }>
  put(key: string, value: string, options?: { expirationTtl?: number; metadata?: unknown }): Promise<void>
}

/** Workers Analytics Engine: one write per data point, no await, aggregated by SQL later. */
export interface AnalyticsEngineDataset {
  writeDataPoint(point: { blobs?: string[]; doubles?: number[]; indexes?: string[] }): void
}

/** What `request.cf` tells about where a request entered Cloudflare's network. */
export interface IncomingCf {
  /** IATA code of the data center, e.g. `FRA`. */
  colo?: string
  /** ISO 3166-1 alpha-2 country of the client, e.g. `DE`. */
  country?: string
}
