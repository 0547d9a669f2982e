import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { RateLimitStore } from '../../gateway/types.ts'
import type { ApiKeyIndexRpc, ApiKeyRpc } from '../../gateway/workers/key-store.ts'
import { DurableObjectKeyStore } from '../../gateway/workers/key-store.ts'
import { createDurableObjectRateLimits, type RateLimiterRpc } from '../../gateway/workers/rate-limits.ts'
import type { DurableObjectNamespace } from '../../gateway/workers/runtime.ts'
import { rateLimitContract, uniqueKey } from '../gateway/limits/contract.ts'
import { keyRecord, keyStoreContract } from '../gateway/stores/key-store-contract.ts'
import { buildWorker, type RunningWorker, startWorker, type WorkerBuild } from '../helpers/worker-runtime.ts'

// The Workers stores against their Durable Objects running on workerd (the built Worker under
// Miniflare), through the same contracts as the memory and Redis stores. The store clients
// run here and call the objects over Workers RPC, as the gateway's isolates do.
let build: WorkerBuild
let worker: RunningWorker
let limiter: DurableObjectNamespace<RateLimiterRpc>
const stores: RateLimitStore[] = []

before(async () => {
  build = await buildWorker()
  worker = await startWorker(build, { backend: { url: 'http://127.0.0.1:9' } })
  limiter = await worker.namespace('RATE_LIMITER')
  // Two clients on the same objects: two isolates, anywhere.
  stores.push(createDurableObjectRateLimits(limiter), createDurableObjectRateLimits(limiter))
})
after(async () => {
  await worker?.stop()
  build?.remove()
})

describe('RateLimitStore on RateLimiterObject', () => {
  rateLimitContract(() => stores, { slotTtlSeconds: 15 })

  it('reclaims a concurrency slot whose holder stopped renewing it once its lease passes', async () => {
    const shortLived = createDurableObjectRateLimits(limiter, { slotTtlMs: 300 })
    const key = uniqueKey('conc-expiry')
    // Granted straight on the object and never renewed nor settled: an isolate that died.
    const granted = await limiter.get(limiter.idFromName(key)).admit({ maxConcurrent: 1 }, 'dead-holder', 300)
    assert.equal(granted.allowed, true)
    const busy = await shortLived.admit(key, { maxConcurrent: 1 })
    assert.ok(!busy.allowed && busy.refusedBy === 'concurrency', JSON.stringify(busy))
    await new Promise((r) => setTimeout(r, 400))
    const reclaimed = await shortLived.admit(key, { maxConcurrent: 1 })
    assert.equal(reclaimed.allowed, true)
    if (reclaimed.allowed) await reclaimed.settle(0)
  })

  it('a slot held by a live request outlives its lease (renewed) and frees at once on settle', async () => {
    const shortLived = createDurableObjectRateLimits(limiter, { slotTtlMs: 300 })
    const key = uniqueKey('conc-lease')
    const held = await shortLived.admit(key, { maxConcurrent: 1 })
    assert.ok(held.allowed)
    await new Promise((r) => setTimeout(r, 1000))
    const busy = await shortLived.admit(key, { maxConcurrent: 1 })
    assert.ok(!busy.allowed && busy.refusedBy === 'concurrency', `renewed past three leases: ${JSON.stringify(busy)}`)
    assert.ok(busy.retryAfterSeconds <= 1, 'Retry-After is bounded by the lease')
    await held.settle(0)
    const next = await shortLived.admit(key, { maxConcurrent: 1 })
    assert.equal(next.allowed, true)
    if (next.allowed) await next.settle(0)
  })
})

describe('start-up warnings on Workers', () => {
  it('are logged once per isolate, when it builds the gateway, as the Node entry logs them at start', async () => {
    // Admin token only (no API keys): no "no authentication" warning, but a short token is one.
    const shortToken = await startWorker(
      build,
      { backend: { url: 'http://127.0.0.1:9' } },
      { ADMIN_TOKEN: 'a'.repeat(20) },
    )
    try {
      for (let i = 0; i < 3; i++) await fetch(`${shortToken.url}/health`).then((r) => r.body?.cancel())
      const warnings = shortToken.output().match(/ADMIN_TOKEN is shorter than 24 characters/g) ?? []
      assert.equal(warnings.length, 1, shortToken.output().slice(-2000))
      assert.doesNotMatch(shortToken.output(), /no authentication is configured/)
    } finally {
      await shortToken.stop()
    }
  })
})

describe('KeyStore on ApiKeyObject and ApiKeyIndexObject', () => {
  let prefixes = 0
  const store = async () =>
    new DurableObjectKeyStore(
      await worker.namespace<DurableObjectNamespace<ApiKeyIndexRpc>>('API_KEY_INDEX'),
      await worker.namespace<DurableObjectNamespace<ApiKeyRpc>>('API_KEYS'),
      { prefix: `t${++prefixes}:` },
    )
  // A fresh namespace per test, so the contract's list() sees only its own keys.
  keyStoreContract(store)

  it('refuses a duplicate hash without listing the refused key', async () => {
    const keys = await store()
    const record = keyRecord()
    await keys.create(record)
    await assert.rejects(keys.create({ ...keyRecord(), hash: record.hash }), /duplicate API key hash/)
    assert.deepEqual(
      (await keys.list()).map((r) => r.id),
      [record.id],
    )
  })

  it('a failed create leaves the hash free: a duplicate id does not keep the new key alive', async () => {
    const keys = await store()
    const record = keyRecord()
    await keys.create(record)
    const clash = { ...keyRecord(), id: record.id }
    await assert.rejects(keys.create(clash), /duplicate API key id/)
    assert.equal(await keys.findByHash(clash.hash), null)
  })
})
