import type { CacheStore } from '../types.ts'
import { keepAlive } from './keep-alive.ts'
import type { KVNamespace } from './runtime.ts'

/** KV refuses expirations shorter than this. */
const KV_MIN_TTL_SECONDS = 60

/**
 * The response cache of the Workers gateway in Workers KV: one cache for every location.
 * KV is eventually consistent: a value written at one location is read elsewhere within
 * about a minute, and a location that looked a key up just before it was written may go on
 * missing it for as long (KV caches "not found" too). Entries never change (the key is a hash
 * of the whole request), so the cost is extra misses, never a wrong answer. Each value carries
 * its expiry, so it is not served past the configured TTL even where KV's own (at least 60 s)
 * has not run out yet.
 */
export class KvCacheStore implements CacheStore {
  constructor(
    private readonly kv: KVNamespace,
    private readonly options: { prefix?: string; now?: () => number } = {},
  ) {}

  async get(key: string): Promise<string | null> {
    const { value, metadata } = await this.kv.getWithMetadata<{ expiresAt?: number }>(this.name(key))
    if (value === null) return null
    if (typeof metadata?.expiresAt === 'number' && metadata.expiresAt <= this.now()) return null
    return value
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    if (ttlSeconds <= 0) return
    const expiresAt = this.now() + ttlSeconds * 1000
    // Written after the response is on its way: the request stays alive until KV has it.
    await keepAlive(
      this.kv.put(this.name(key), value, {
        expirationTtl: Math.max(KV_MIN_TTL_SECONDS, Math.ceil(ttlSeconds)),
        metadata: { expiresAt },
      }),
    )
  }

  private name(key: string): string {
    return `${this.options.prefix ?? 'cache:'}${key}`
  }

  private now(): number {
    return (this.options.now ?? Date.now)()
  }
}
