import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { generateApiKey, hashApiKey } from '../../../gateway/auth/api-keys.ts'
import { parseGatewayConfig } from '../../../gateway/config/parse.ts'
import { buildApp, MemoryKeyStore } from './helpers.ts'

const ADMIN_TOKEN = 'admin-token-for-key-cache-tests-0123456789'
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function storedKey(store: MemoryKeyStore) {
  const { key, id } = generateApiKey()
  await store.create({
    id,
    hash: await hashApiKey(key),
    tenant: 'acme',
    limits: {},
    createdAt: new Date().toISOString(),
    source: 'store',
  })
  return { key, id }
}

/** The real lookup and authentication stage over a store that can be switched off, on a clock the test moves. */
async function setup(ttlSeconds = 120) {
  const store = new MemoryKeyStore()
  let clock = 1_000_000
  const built = buildApp({
    store,
    adminToken: ADMIN_TOKEN,
    keyCache: { ttlSeconds, maxEntries: 3 },
    now: () => clock,
    logIntervalMs: 10_000,
  })
  const status = async (key: string) => (await built.app.request('/v1/whoami', { headers: bearer(key) })).status
  return { ...built, store, status, advance: (ms: number) => (clock += ms) }
}

describe('store keys during a key-store outage', () => {
  test('a key verified recently keeps working for ttlSeconds after its last check; then 503', async () => {
    const { store, status, advance } = await setup(120)
    const { key } = await storedKey(store)
    const unverified = await storedKey(store)
    assert.equal(await status(key), 200)
    advance(60_000)
    assert.equal(await status(key), 200, 'checked again (the store is up): the cache time restarts')
    store.failing = true
    advance(119_000)
    assert.equal(await status(key), 200, 'from the cache: 119 s after its last check')
    assert.equal(await status(unverified.key), 503, 'never verified here: the store must answer')
    assert.equal(await status('sy-unknown'), 503)
    advance(2_000)
    assert.equal(await status(key), 503, 'past ttlSeconds the outage shows')
    store.failing = false
    assert.equal(await status(key), 200)
  })

  test('revocations: one seen by a check, or made through this instance, is refused (401) during an outage too', async () => {
    const { store, status, app } = await setup()
    const seen = await storedKey(store)
    const viaAdmin = await storedKey(store)
    assert.equal(await status(seen.key), 200)
    assert.equal(await status(viaAdmin.key), 200)
    // Revoked on another instance: the next check here sees it.
    await store.revoke(seen.id)
    assert.equal(await status(seen.key), 401)
    // Revoked through this instance's admin API.
    const del = await app.request(`/admin/keys/${viaAdmin.id}`, { method: 'DELETE', headers: bearer(ADMIN_TOKEN) })
    assert.equal(del.status, 200)
    store.failing = true
    assert.equal(await status(seen.key), 401)
    assert.equal(await status(viaAdmin.key), 401)
  })

  test('the cache is bounded: past maxEntries the least recently checked key is forgotten', async () => {
    const { store, status } = await setup()
    const keys = [await storedKey(store), await storedKey(store), await storedKey(store), await storedKey(store)]
    for (const { key } of keys) assert.equal(await status(key), 200)
    store.failing = true
    assert.deepEqual(await Promise.all(keys.map(({ key }) => status(key))), [503, 200, 200, 200])
  })

  test('ttlSeconds 0 turns the cache off', async () => {
    const { store, status } = await setup(0)
    const { key } = await storedKey(store)
    assert.equal(await status(key), 200)
    store.failing = true
    assert.equal(await status(key), 503)
  })

  test('an outage failing every request logs one line per reason per interval, not one per request', async () => {
    const { store, status, logger } = await setup()
    store.failing = true
    for (let i = 0; i < 500; i++) assert.equal(await status(`sy-never-seen-${i}`), 503)
    for (let i = 0; i < 300; i++) assert.equal(await status('not-a-key'), 503)
    const errors = logger.entries.filter((e) => e.level === 'error')
    assert.equal(errors.length, 1, JSON.stringify(errors))
    assert.equal(errors[0].fields.reason, 'store_unavailable')
    assert.ok(!logger.text().includes('sy-never-seen'), 'no key in the log')
  })

  test('config auth.keyCache: defaults, and bad values refused naming the key', () => {
    const backend = { url: 'http://127.0.0.1:1' }
    assert.deepEqual(parseGatewayConfig({ backend }, {}).auth.keyCache, { ttlSeconds: 120, maxEntries: 10_000 })
    assert.deepEqual(parseGatewayConfig({ backend, auth: { keyCache: { ttlSeconds: 0 } } }, {}).auth.keyCache, {
      ttlSeconds: 0,
      maxEntries: 10_000,
    })
    for (const keyCache of [
      { ttlSeconds: -1 },
      { ttlSeconds: 1.5 },
      { ttlSeconds: '60' },
      { ttlSeconds: 86_401 },
      { maxEntries: 0 },
      { maxEntries: 2_000_000 },
      { ttl: 60 },
      'on',
    ]) {
      assert.throws(
        () => parseGatewayConfig({ backend, auth: { keyCache } }, {}),
        /auth\.keyCache/,
        JSON.stringify(keyCache),
      )
    }
  })
})
