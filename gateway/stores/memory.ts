import type { ApiKeyRecord, CacheStore, KeyStore } from '../types.ts'

/**
 * API keys created through the admin API, kept in this process (the single-instance default).
 * Revoked keys stay listed (revoked: true) so their ids are never handed out again.
 */
export class MemoryKeyStore implements KeyStore {
  private readonly byId = new Map<string, ApiKeyRecord>()
  /** Live keys only: revoking removes the lookup, so the key stops working at once. */
  private readonly liveByHash = new Map<string, ApiKeyRecord>()

  async findByHash(hash: string): Promise<ApiKeyRecord | null> {
    const record = this.liveByHash.get(hash)
    return record ? structuredClone(record) : null
  }

  /** Throws when the id or the hash is already taken. */
  async create(record: ApiKeyRecord): Promise<void> {
    if (this.byId.has(record.id)) throw new Error(`duplicate API key id: ${record.id}`)
    if (this.liveByHash.has(record.hash)) throw new Error('duplicate API key hash')
    // Copies, so callers mutating their object cannot change what is stored.
    this.byId.set(record.id, structuredClone(record))
    if (!record.revoked) this.liveByHash.set(record.hash, structuredClone(record))
  }

  async list(): Promise<ApiKeyRecord[]> {
    return sortByCreation([...this.byId.values()].map((r) => structuredClone(r)))
  }

  /** False when there is no such key or it was already revoked. */
  async revoke(id: string): Promise<boolean> {
    const record = this.byId.get(id)
    if (!record || record.revoked) return false
    record.revoked = true
    this.liveByHash.delete(record.hash)
    return true
  }
}

export function sortByCreation(records: ApiKeyRecord[]): ApiKeyRecord[] {
  return records.sort((a, b) =>
    a.createdAt < b.createdAt ? -1 : a.createdAt > b.createdAt ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0,
  )
}

export interface MemoryCacheOptions {
  /** Most entries kept; the least recently used go first. Default 10,000. */
  maxEntries?: number
  /** Most characters of values kept (a string of n UTF-16 units takes about 2n bytes). Default 32 Mi. */
  maxChars?: number
  /** Clock in ms, replaceable in tests. */
  now?: () => number
}

/** Cached responses in this process: TTL per entry, bounded by entry count and total size (LRU). */
export class MemoryCacheStore implements CacheStore {
  // A Map iterates in insertion order; re-inserting on every hit keeps the least recently used first.
  private readonly entries = new Map<string, { value: string; expiresAt: number }>()
  private chars = 0
  private readonly maxEntries: number
  private readonly maxChars: number
  private readonly now: () => number

  constructor(options: MemoryCacheOptions = {}) {
    this.maxEntries = options.maxEntries ?? 10_000
    this.maxChars = options.maxChars ?? 32 * 1024 * 1024
    this.now = options.now ?? Date.now
  }

  get size(): number {
    return this.entries.size
  }

  async get(key: string): Promise<string | null> {
    const entry = this.entries.get(key)
    if (!entry) return null
    this.remove(key)
    if (entry.expiresAt <= this.now()) return null
    this.insert(key, entry)
    return entry.value
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    this.remove(key)
    // An entry bigger than the whole budget would only evict everything else.
    if (ttlSeconds <= 0 || value.length > this.maxChars) return
    this.insert(key, { value, expiresAt: this.now() + ttlSeconds * 1000 })
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries && this.chars <= this.maxChars) break
      this.remove(oldest)
    }
  }

  private insert(key: string, entry: { value: string; expiresAt: number }) {
    this.entries.set(key, entry)
    this.chars += entry.value.length
  }

  private remove(key: string) {
    const entry = this.entries.get(key)
    if (!entry) return
    this.entries.delete(key)
    this.chars -= entry.value.length
  }
}
