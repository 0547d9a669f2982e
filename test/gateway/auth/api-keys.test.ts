import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, test } from 'node:test'
import {
  API_KEY_PREFIX,
  constantTimeEqual,
  createKeyLookup,
  generateApiKey,
  hashApiKey,
} from '../../../gateway/auth/api-keys.ts'
import type { ApiKeyRecord } from '../../../gateway/types.ts'
import { MemoryKeyStore } from './helpers.ts'

const record = (id: string, hash: string, extra: Partial<ApiKeyRecord> = {}): ApiKeyRecord => ({
  id,
  hash,
  tenant: `tenant-${id}`,
  limits: {},
  createdAt: '2024-01-01T00:00:00.000Z',
  source: 'store',
  ...extra,
})

describe('api keys', () => {
  test('generateApiKey: sy- + 32 bytes of base64url, key_<8 hex> id, all distinct', () => {
    const keys = new Set<string>()
    const ids = new Set<string>()
    for (let i = 0; i < 200; i++) {
      const { key, id } = generateApiKey()
      assert.match(key, /^sy-[A-Za-z0-9_-]{43}$/)
      assert.ok(key.startsWith(API_KEY_PREFIX))
      assert.equal(Buffer.from(key.slice(3), 'base64url').length, 32)
      assert.match(id, /^key_[0-9a-f]{8}$/)
      keys.add(key)
      ids.add(id)
    }
    assert.equal(keys.size, 200)
    assert.ok(ids.size >= 199)
  })

  test('hashApiKey is hex SHA-256 of the full key string', async () => {
    assert.equal(await hashApiKey('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
    const { key } = generateApiKey()
    assert.equal(await hashApiKey(key), createHash('sha256').update(key).digest('hex'))
  })

  test('constantTimeEqual', async () => {
    assert.equal(await constantTimeEqual('secret-token', 'secret-token'), true)
    assert.equal(await constantTimeEqual('secret-token', 'secret-tokeN'), false)
    assert.equal(await constantTimeEqual('secret-token', 'secret-token-longer'), false)
    assert.equal(await constantTimeEqual('', 'x'), false)
    assert.equal(await constantTimeEqual('', ''), true)
    assert.equal(await constantTimeEqual('ü', 'u'), false)
  })
})

describe('createKeyLookup', () => {
  test('config keys first, without asking the store', async () => {
    const store = new MemoryKeyStore()
    const hash = await hashApiKey('sy-config')
    const lookup = createKeyLookup({ configKeys: [record('cfg', hash, { source: 'config' })], store })
    const found = await lookup.findByHash(hash)
    assert.equal(found?.id, 'cfg')
    assert.equal(found?.source, 'config')
    assert.equal(store.findCalls, 0)
  })

  test('a config key still works while the store is down; other keys throw', async () => {
    const store = new MemoryKeyStore()
    store.failing = true
    const hash = await hashApiKey('sy-config')
    const lookup = createKeyLookup({ configKeys: [record('cfg', hash)], store })
    assert.equal((await lookup.findByHash(hash))?.id, 'cfg')
    await assert.rejects(lookup.findByHash(await hashApiKey('sy-other')), /store down/)
  })

  test('falls back to the store; unknown and revoked keys are null', async () => {
    const store = new MemoryKeyStore()
    const live = await hashApiKey('sy-live')
    const dead = await hashApiKey('sy-dead')
    await store.create(record('live', live))
    await store.create(record('dead', dead))
    await store.revoke('dead')
    const lookup = createKeyLookup({ configKeys: [], store })
    assert.equal((await lookup.findByHash(live))?.id, 'live')
    assert.equal(await lookup.findByHash(dead), null)
    assert.equal(await lookup.findByHash(await hashApiKey('sy-nope')), null)
  })

  test('ignores a record from a misbehaving store whose hash does not match', async () => {
    const wrong = record('wrong', await hashApiKey('sy-a'))
    const lookup = createKeyLookup({
      configKeys: [],
      store: { findByHash: async () => wrong, create: async () => {}, list: async () => [], revoke: async () => false },
    })
    assert.equal(await lookup.findByHash(await hashApiKey('sy-b')), null)
  })

  test('revoked config keys are refused; upper-case config hashes are normalised', async () => {
    const a = await hashApiKey('sy-a')
    const b = await hashApiKey('sy-b')
    const lookup = createKeyLookup({
      configKeys: [record('a', a.toUpperCase()), record('b', b, { revoked: true })],
      store: new MemoryKeyStore(),
    })
    assert.equal((await lookup.findByHash(a))?.id, 'a')
    assert.equal(await lookup.findByHash(b), null)
  })

  test('refuses config that holds a raw key instead of a hash, or duplicates', async () => {
    const store = new MemoryKeyStore()
    assert.throws(() => createKeyLookup({ configKeys: [record('raw', 'sy-this-is-a-raw-key')], store }), /hex SHA-256/)
    const h = await hashApiKey('sy-x')
    const h2 = await hashApiKey('sy-y')
    assert.throws(() => createKeyLookup({ configKeys: [record('x', h), record('x', h2)], store }), /duplicate id/)
    assert.throws(() => createKeyLookup({ configKeys: [record('x', h), record('y', h)], store }), /duplicate hash/)
  })
})
