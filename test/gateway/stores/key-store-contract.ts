/** The KeyStore behaviour every implementation must have; run against memory and Redis. */
import assert from 'node:assert/strict'
import { it } from 'node:test'
import type { ApiKeyRecord, KeyStore } from '../../../gateway/types.ts'

let serial = 0
export function keyRecord(overrides: Partial<ApiKeyRecord> = {}): ApiKeyRecord {
  serial++
  return {
    id: `key_${serial}_${Math.random().toString(36).slice(2, 8)}`,
    hash: (serial.toString(16) + 'ab'.repeat(32)).slice(0, 64),
    tenant: 'acme',
    limits: { requestsPerWindow: 10, tokensPerMinute: 1000 },
    createdAt: new Date(Date.UTC(2026, 0, 1, 0, 0, serial)).toISOString(),
    source: 'store',
    ...overrides,
  }
}

export function keyStoreContract(makeStore: () => KeyStore | Promise<KeyStore>) {
  it('finds a created key by its hash', async () => {
    const store = await makeStore()
    const record = keyRecord({ models: ['m1'] })
    await store.create(record)
    assert.deepEqual(await store.findByHash(record.hash), record)
    assert.equal(await store.findByHash('0'.repeat(64)), null)
  })

  it('lists keys oldest first, revoked ones included and marked', async () => {
    const store = await makeStore()
    const first = keyRecord()
    const second = keyRecord()
    await store.create(second)
    await store.create(first)
    await store.revoke(second.id)
    assert.deepEqual(await store.list(), [first, { ...second, revoked: true }])
  })

  it('revokes: the lookup stops at once, and a second revoke or an unknown id answers false', async () => {
    const store = await makeStore()
    const record = keyRecord()
    await store.create(record)
    assert.equal(await store.revoke(record.id), true)
    assert.equal(await store.findByHash(record.hash), null)
    assert.equal(await store.revoke(record.id), false)
    assert.equal(await store.revoke('no_such_key'), false)
  })

  it('refuses a duplicate id, also after revocation', async () => {
    const store = await makeStore()
    const record = keyRecord()
    await store.create(record)
    await assert.rejects(store.create({ ...keyRecord(), id: record.id }), /duplicate/)
    await store.revoke(record.id)
    await assert.rejects(store.create({ ...keyRecord(), id: record.id }), /duplicate/)
  })

  it('keeps its own copy: mutating the caller object changes nothing stored', async () => {
    const store = await makeStore()
    const record = keyRecord()
    await store.create(record)
    record.tenant = 'changed'
    const found = await store.findByHash(record.hash)
    assert.equal(found?.tenant, 'acme')
    found!.tenant = 'changed again'
    assert.equal((await store.findByHash(record.hash))?.tenant, 'acme')
  })
}
