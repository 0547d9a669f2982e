/**
 * API keys: generation, hashing, layered lookup (config keys, then the shared store), and a
 * timing-safe comparison for the admin credential. Web Crypto only, so it runs on Workers.
 *
 * Keys look like `sy-<43 chars of base64url>` (32 random bytes). Only the hex SHA-256 of the
 * full key string is ever stored or configured; a key is looked up by that hash. Looking up by
 * hash is safe against timing attacks: timing can at best reveal a prefix of a *hash*, and
 * an attacker cannot steer a preimage towards a chosen hash prefix.
 */
import type { ApiKeyRecord, KeyStore } from '../types.ts'

export const API_KEY_PREFIX = 'sy-'
const KEY_BYTES = 32
const HEX_SHA256 = /^[0-9a-f]{64}$/

const encoder = new TextEncoder()

function toHex(bytes: Uint8Array): string {
  let out = ''
  for (const b of bytes) out += b.toString(16).padStart(2, '0')
  return out
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = ''
  for (const b of bytes) binary += String.fromCharCode(b)
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '')
}

async function sha256(value: string): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', encoder.encode(value)))
}

/** Hex SHA-256 of the full key string (prefix included): what stores and config hold. */
export async function hashApiKey(key: string): Promise<string> {
  return toHex(await sha256(key))
}

/** A short, non-secret identifier: `key_<8 hex>`. */
export function generateKeyId(): string {
  return `key_${toHex(crypto.getRandomValues(new Uint8Array(4)))}`
}

/** A fresh key (`sy-` + 32 random bytes, base64url) and an id for it. Show `key` once, store its hash. */
export function generateApiKey(): { key: string; id: string } {
  return { key: API_KEY_PREFIX + toBase64Url(crypto.getRandomValues(new Uint8Array(KEY_BYTES))), id: generateKeyId() }
}

/**
 * Timing-safe string equality. Both sides are hashed to fixed-length SHA-256 digests first,
 * so the comparison time depends on neither length nor the position of the first difference.
 * Async (Web Crypto): always `await` it; an un-awaited Promise is truthy.
 */
export async function constantTimeEqual(a: string, b: string): Promise<boolean> {
  const [da, db] = await Promise.all([sha256(a), sha256(b)])
  let diff = 0
  for (let i = 0; i < da.length; i++) diff |= da[i] ^ db[i]
  return diff === 0
}

/** Finds a key record by the hash of the presented key. */
export interface KeyLookup {
  /**
   * The live (not revoked) key with this hash, or null. Config keys are checked first and never
   * touch the store. When the store fails, a key it verified recently is answered from the
   * cache (see KeyCacheOptions); otherwise the error is thrown (the caller answers 503).
   */
  findByHash(hash: string): Promise<ApiKeyRecord | null>
  /** Whether a key of the config file has this id (such ids are not free for the admin API). */
  isConfigKey(id: string): boolean
  /** A store key was revoked through this instance: never answer it from the cache again. */
  forget(id: string): void
}

export interface KeyCacheOptions {
  /**
   * How long (s) a key the store verified may still be accepted while the store is unreachable,
   * counted from its last successful check. This is also the longest a revocation can lag
   * during an outage (docs/SECURITY.md). 0: no cache (every store failure is a 503).
   */
  ttlSeconds: number
  /** Most keys (and revocations) remembered; past it the least recently checked are dropped. */
  maxEntries: number
}

/**
 * Layered lookup: keys from the config file (hashes only), then the shared store.
 * Throws at start-up if a config key's hash is not a hex SHA-256 (e.g. someone pasted the
 * raw key into the config) or two config keys share an id or hash.
 *
 * While the store answers, every store key is checked there (a revocation takes effect at
 * once). With `cache`, each answer also goes into a bounded cache: keys found, with the time of the check,
 * and keys the store no longer has after they were verified (revoked). When the store fails,
 * a key checked within `cache.ttlSeconds` is accepted, a revoked one refused, and anything
 * else is the store's error.
 */
export function createKeyLookup(options: {
  configKeys: ApiKeyRecord[]
  store: KeyStore
  cache?: KeyCacheOptions
  now?: () => number
}): KeyLookup {
  const byHash = new Map<string, ApiKeyRecord>()
  const ids = new Set<string>()
  for (const [index, record] of options.configKeys.entries()) {
    const hash = typeof record.hash === 'string' ? record.hash.toLowerCase() : ''
    if (!HEX_SHA256.test(hash))
      throw new Error(`config key #${index} (${record.id}): hash must be a hex SHA-256 of the key, not the key itself`)
    if (typeof record.id !== 'string' || record.id === '') throw new Error(`config key #${index}: id is required`)
    if (typeof record.tenant !== 'string' || record.tenant === '')
      throw new Error(`config key ${record.id}: tenant is required`)
    if (ids.has(record.id)) throw new Error(`config key ${record.id}: duplicate id`)
    if (byHash.has(hash)) throw new Error(`config key ${record.id}: duplicate hash`)
    ids.add(record.id)
    byHash.set(hash, { ...record, hash, source: 'config' })
  }
  const store = options.store
  // Without options: no cache (the gateway passes config auth.keyCache, which has the defaults).
  const { ttlSeconds, maxEntries } = options.cache ?? { ttlSeconds: 0, maxEntries: 0 }
  const now = options.now ?? Date.now
  /** hash → the record and when the store last said it is live; null once it said it is not (revoked). */
  const checked = new Map<string, { record: ApiKeyRecord | null; at: number }>()
  const remember = (hash: string, record: ApiKeyRecord | null) => {
    if (ttlSeconds <= 0) return
    // Only revocations of keys once verified: unknown hashes (guesses) are not worth the room.
    if (record === null && !checked.has(hash)) return
    checked.delete(hash)
    if (checked.size >= maxEntries) checked.delete(checked.keys().next().value!)
    checked.set(hash, { record, at: now() })
  }

  return {
    isConfigKey: (id) => ids.has(id),
    forget(id) {
      for (const [hash, entry] of checked) if (entry.record?.id === id) remember(hash, null)
    },
    async findByHash(hash: string): Promise<ApiKeyRecord | null> {
      const normalized = hash.toLowerCase()
      const configured = byHash.get(normalized)
      if (configured) return configured.revoked ? null : configured
      let record: ApiKeyRecord | null
      try {
        record = await store.findByHash(normalized)
      } catch (error) {
        const entry = checked.get(normalized)
        if (entry === undefined) throw error
        if (entry.record === null) return null
        if (now() - entry.at <= ttlSeconds * 1000) return entry.record
        throw error
      }
      // Defensive: a store must return only the live key with exactly this hash.
      if (!record || record.revoked || record.hash.toLowerCase() !== normalized) record = null
      remember(normalized, record)
      return record
    },
  }
}
