import type { ApiKeyRecord, KeyStore } from '../types.ts'
import type { DurableObjectNamespace } from './runtime.ts'

/** A change an object refused (a duplicate): an answer, not an exception, so its reason crosses RPC intact. */
export type Outcome = { ok: true } | { ok: false; error: string }

/** One object per key hash: the live record, or nothing. The authority on whether a key works. */
export interface ApiKeyRpc {
  get(): ApiKeyRecord | null
  place(record: ApiKeyRecord): Outcome
  /** Removes the record if it is this id's (a rollback must not remove another key). */
  remove(id: string): void
}

/** The one directory of every key created through the admin API, revoked ones included. */
export interface ApiKeyIndexRpc {
  add(record: ApiKeyRecord): Outcome
  get(id: string): ApiKeyRecord | null
  list(): ApiKeyRecord[]
  /** False when there is no such key or it was already marked revoked. */
  markRevoked(id: string): boolean
}

/**
 * The KeyStore of the Workers gateway, on Durable Objects rather than KV: KV is eventually
 * consistent (a revoked key could keep working for a minute or more at other locations),
 * while a Durable Object answers from one place, so a revocation holds everywhere as soon as
 * the admin call returns.
 *
 * The request path asks only the key's own object (`hash:<sha256>`), so lookups of different
 * keys never wait on each other; the directory (one object) serves the admin API. Changes touch
 * both in the order that fails safe: a new key is placed before it is listed (nobody has it
 * until create returns), and a revoked key stops working before it is marked revoked.
 */
export class DurableObjectKeyStore implements KeyStore {
  constructor(
    private readonly index: DurableObjectNamespace<ApiKeyIndexRpc>,
    private readonly keys: DurableObjectNamespace<ApiKeyRpc>,
    /** Namespace of the objects' names, as the Redis store's key prefix. Default none. */
    private readonly options: { prefix?: string } = {},
  ) {}

  findByHash(hash: string): Promise<ApiKeyRecord | null> {
    return this.key(hash).get()
  }

  /** Throws when the id or the hash is already taken. */
  async create(record: ApiKeyRecord): Promise<void> {
    const placed = await this.key(record.hash).place(record)
    if (!placed.ok) throw new Error(placed.error)
    let added: Outcome
    try {
      added = await this.directory().add(record)
    } catch (error) {
      await this.key(record.hash).remove(record.id)
      throw error
    }
    if (!added.ok) {
      await this.key(record.hash).remove(record.id)
      throw new Error(added.error)
    }
  }

  list(): Promise<ApiKeyRecord[]> {
    return this.directory().list()
  }

  async revoke(id: string): Promise<boolean> {
    const record = await this.directory().get(id)
    if (!record || record.revoked) return false
    await this.key(record.hash).remove(id)
    return this.directory().markRevoked(id)
  }

  private key(hash: string) {
    return this.keys.get(this.keys.idFromName(`${this.options.prefix ?? ''}hash:${hash}`))
  }

  private directory() {
    return this.index.get(this.index.idFromName(`${this.options.prefix ?? ''}index`))
  }
}
