import { DurableObject } from 'cloudflare:workers'
import { sortByCreation } from '../stores/memory.ts'
import type { ApiKeyRecord } from '../types.ts'
import type { ApiKeyIndexRpc, ApiKeyRpc, Outcome } from './key-store.ts'
import type { DurableObjectState } from './runtime.ts'

const RECORD_KEY = 'record'
const INDEX_PREFIX = 'key:'

/**
 * One API key hash's object (see DurableObjectKeyStore). Its record is read from storage once
 * and kept in memory; changes are written without awaiting, the output gate holding each reply
 * until the write is durable.
 */
export class ApiKeyObject extends DurableObject<unknown, DurableObjectState> implements ApiKeyRpc {
  private record: ApiKeyRecord | null = null

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env)
    void ctx.blockConcurrencyWhile(async () => {
      this.record = (await ctx.storage.get<ApiKeyRecord>(RECORD_KEY)) ?? null
    })
  }

  get(): ApiKeyRecord | null {
    return this.record
  }

  place(record: ApiKeyRecord): Outcome {
    if (this.record) return { ok: false, error: 'duplicate API key hash' }
    this.record = record
    void this.ctx.storage.put(RECORD_KEY, record)
    return { ok: true }
  }

  remove(id: string): void {
    if (this.record?.id !== id) return
    this.record = null
    // Nothing is left to keep: an object without storage costs nothing.
    void this.ctx.storage.deleteAll()
  }
}

/** The directory of admin-created keys: one object, each record under its own storage key. */
export class ApiKeyIndexObject extends DurableObject<unknown, DurableObjectState> implements ApiKeyIndexRpc {
  private readonly records = new Map<string, ApiKeyRecord>()

  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env)
    void ctx.blockConcurrencyWhile(async () => {
      for (const record of (await ctx.storage.list<ApiKeyRecord>({ prefix: INDEX_PREFIX })).values())
        this.records.set(record.id, record)
    })
  }

  add(record: ApiKeyRecord): Outcome {
    // Revoked ids stay taken, so an id never names two different keys.
    if (this.records.has(record.id)) return { ok: false, error: `duplicate API key id: ${record.id}` }
    this.save(record)
    return { ok: true }
  }

  get(id: string): ApiKeyRecord | null {
    return this.records.get(id) ?? null
  }

  list(): ApiKeyRecord[] {
    return sortByCreation([...this.records.values()])
  }

  markRevoked(id: string): boolean {
    const record = this.records.get(id)
    if (!record || record.revoked) return false
    this.save({ ...record, revoked: true })
    return true
  }

  private save(record: ApiKeyRecord): void {
    this.records.set(record.id, record)
    void this.ctx.storage.put(INDEX_PREFIX + record.id, record)
  }
}
