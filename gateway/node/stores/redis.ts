import { sortByCreation } from '../../stores/memory.ts'
import type { ApiKeyRecord, CacheStore, GatewayMetrics, KeyStore } from '../../types.ts'
import { isReady, type RedisClient } from './redis-client.ts'
import { defineScript } from './redis-script.ts'

export interface RedisKeyStoreOptions {
  /** Namespace for every key this store writes. Default `sy:`. */
  prefix?: string
}

// KEYS: id → record, hash → record (the lookup), set of ids. ARGV: record JSON, id, '1' if live.
const CREATE_KEY = defineScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return redis.error_reply('ERR duplicate API key id') end
if redis.call('EXISTS', KEYS[2]) == 1 then return redis.error_reply('ERR duplicate API key hash') end
redis.call('SET', KEYS[1], ARGV[1])
if ARGV[3] == '1' then redis.call('SET', KEYS[2], ARGV[1]) end
redis.call('SADD', KEYS[3], ARGV[2])
return 1`)

// KEYS: id → record, hash lookup. ARGV: the revoked record JSON. 1 if this call revoked it.
const REVOKE_KEY = defineScript(`
local current = redis.call('GET', KEYS[1])
if not current or cjson.decode(current).revoked == true then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return 1`)

/**
 * API keys in Redis, shared by every gateway instance:
 *   <prefix>{keys}:hash:<sha256> → record JSON, only while the key is live (the lookup)
 *   <prefix>{keys}:id:<id>       → record JSON, kept after revocation (the id → hash index)
 *   <prefix>{keys}:ids           → set of ids, for list
 * Every authentication is one GET of the lookup and revocation deletes it, so a revoked key
 * stops working on all instances at once. The `{keys}` hash tag keeps all of them in one
 * Cluster slot, so the scripts and MGET below work on a Cluster too.
 * Redis errors propagate: the auth layer decides what a store outage means.
 */
export class RedisKeyStore implements KeyStore {
  private readonly base: string

  constructor(
    private readonly redis: RedisClient,
    options: RedisKeyStoreOptions = {},
  ) {
    this.base = `${options.prefix ?? 'sy:'}{keys}:`
  }

  async findByHash(hash: string): Promise<ApiKeyRecord | null> {
    const json = await this.redis.get(this.hashKey(hash))
    if (!json) return null
    const record = JSON.parse(json) as ApiKeyRecord
    return record.revoked ? null : record
  }

  /** Throws when the id, or the hash of a live key, is already taken. */
  async create(record: ApiKeyRecord): Promise<void> {
    await CREATE_KEY.run(
      this.redis,
      [this.idKey(record.id), this.hashKey(record.hash), this.idsKey()],
      [JSON.stringify(record), record.id, record.revoked ? '0' : '1'],
    )
  }

  /** All keys, revoked ones included (revoked: true), oldest first. */
  async list(): Promise<ApiKeyRecord[]> {
    const ids = await this.redis.smembers(this.idsKey())
    if (ids.length === 0) return []
    const records = await this.redis.mget(ids.map((id) => this.idKey(id)))
    return sortByCreation(
      records.filter((json): json is string => json !== null).map((json) => JSON.parse(json) as ApiKeyRecord),
    )
  }

  /** False when there is no such key or it was already revoked. */
  async revoke(id: string): Promise<boolean> {
    const json = await this.redis.get(this.idKey(id))
    if (!json) return false
    const record = JSON.parse(json) as ApiKeyRecord
    if (record.revoked) return false
    const revoked = await REVOKE_KEY.run(
      this.redis,
      [this.idKey(id), this.hashKey(record.hash)],
      [JSON.stringify({ ...record, revoked: true })],
    )
    return revoked === 1
  }

  private hashKey(hash: string) {
    return `${this.base}hash:${hash}`
  }
  private idKey(id: string) {
    return `${this.base}id:${id}`
  }
  private idsKey() {
    return `${this.base}ids`
  }
}

export interface RedisCacheOptions {
  metrics: Pick<GatewayMetrics, 'storeError'>
  /** Prepended to every key. Default none: the response cache's keys are already namespaced (`sy:cache:`). */
  prefix?: string
}

/**
 * Cached responses in Redis (GET / SET PX). The cache is an optimisation, so Redis trouble
 * bypasses it: `get` answers null and `set` does nothing, and neither throws. The client's
 * fail-fast settings bound how long either can take.
 */
export class RedisCacheStore implements CacheStore {
  private readonly metrics: Pick<GatewayMetrics, 'storeError'>
  private readonly prefix: string

  constructor(
    private readonly redis: RedisClient,
    options: RedisCacheOptions,
  ) {
    this.metrics = options.metrics
    this.prefix = options.prefix ?? ''
  }

  async get(key: string): Promise<string | null> {
    try {
      if (!isReady(this.redis)) throw new Error('redis not ready')
      return await this.redis.get(this.prefix + key)
    } catch {
      this.metrics.storeError('redis', 'cache_get')
      return null
    }
  }

  async set(key: string, value: string, ttlSeconds: number): Promise<void> {
    const ttlMs = Math.round(ttlSeconds * 1000)
    if (ttlMs <= 0) return
    try {
      if (!isReady(this.redis)) throw new Error('redis not ready')
      await this.redis.set(this.prefix + key, value, 'PX', ttlMs)
    } catch {
      this.metrics.storeError('redis', 'cache_set')
    }
  }
}
