import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { generateApiKey, hashApiKey } from '../../../gateway/auth/api-keys.ts'
import { canUseModel, modelAccessDenied, requireModelAccess } from '../../../gateway/auth/middleware.ts'
import type { ApiKeyRecord, Principal } from '../../../gateway/types.ts'
import { buildApp, DEFAULT_LIMITS, MemoryKeyStore, UNAUTHORIZED_BODY } from './helpers.ts'

async function storedKey(store: MemoryKeyStore, extra: Partial<ApiKeyRecord> = {}) {
  const { key, id } = generateApiKey()
  await store.create({
    id,
    hash: await hashApiKey(key),
    tenant: 'acme',
    limits: {},
    createdAt: new Date().toISOString(),
    source: 'store',
    ...extra,
  })
  return { key, id }
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

async function expect401(res: Response) {
  assert.equal(res.status, 401)
  assert.equal(res.headers.get('www-authenticate'), 'Bearer')
  assert.match(res.headers.get('content-type') ?? '', /application\/json/)
  const text = await res.text()
  assert.deepEqual(JSON.parse(text), UNAUTHORIZED_BODY)
  return text
}

describe('authenticate: API keys', () => {
  test('valid key via Authorization: Bearer', async () => {
    const store = new MemoryKeyStore()
    const { key, id } = await storedKey(store, { models: ['m1'], limits: { maxConcurrent: 2 } })
    const { app, logger } = buildApp({ store })
    const res = await app.request('/v1/whoami', { headers: bearer(key) })
    assert.equal(res.status, 200)
    const principal = (await res.json()) as Principal
    assert.deepEqual(principal, {
      id,
      tenant: 'acme',
      models: ['m1'],
      limits: { ...DEFAULT_LIMITS, maxConcurrent: 2 },
      via: 'api_key',
      source: 'store',
    })
    assert.ok(!logger.text().includes(key))
  })

  test('valid key via X-API-Key; both headers with the same key is fine', async () => {
    const store = new MemoryKeyStore()
    const { key, id } = await storedKey(store)
    const { app } = buildApp({ store })
    const res = await app.request('/v1/whoami', { headers: { 'x-api-key': key } })
    assert.equal(res.status, 200)
    assert.equal(((await res.json()) as Principal).id, id)
    const both = await app.request('/v1/whoami', { headers: { 'x-api-key': key, authorization: `bearer ${key}` } })
    assert.equal(both.status, 200)
  })

  test('missing limits fall back to the defaults field by field; models undefined = all', async () => {
    const store = new MemoryKeyStore()
    const { key } = await storedKey(store, { limits: { requestsPerWindow: 5 } })
    const { app } = buildApp({ store })
    const principal = (await (await app.request('/v1/whoami', { headers: bearer(key) })).json()) as Principal
    assert.deepEqual(principal.limits, { ...DEFAULT_LIMITS, requestsPerWindow: 5 })
    assert.equal(principal.models, undefined)
    assert.equal((await app.request('/v1/use/anything', { headers: bearer(key) })).status, 200)
  })

  test('config keys authenticate, and keep working while the store is down', async () => {
    const store = new MemoryKeyStore()
    const configKey = 'sy-config-key-from-the-operator'
    const configKeys: ApiKeyRecord[] = [
      {
        id: 'ops',
        hash: await hashApiKey(configKey),
        tenant: 'ops',
        limits: { tokensPerMinute: 1 },
        createdAt: 'config',
        source: 'config',
      },
    ]
    const { app, logger } = buildApp({ store, configKeys })
    const res = await app.request('/v1/whoami', { headers: { 'x-api-key': configKey } })
    assert.equal(res.status, 200)
    assert.deepEqual(await res.json(), {
      id: 'ops',
      tenant: 'ops',
      limits: { ...DEFAULT_LIMITS, tokensPerMinute: 1 },
      via: 'api_key',
      source: 'config',
    })
    assert.equal(store.findCalls, 0)

    store.failing = true
    assert.equal((await app.request('/v1/whoami', { headers: bearer(configKey) })).status, 200)
    const down = await app.request('/v1/whoami', { headers: bearer('sy-some-other-key') })
    assert.equal(down.status, 503)
    assert.equal(((await down.json()) as { error: { code: string } }).error.code, 'auth_unavailable')
    assert.equal(logger.lastReason(), 'store_unavailable')
    assert.ok(logger.entries.some((e) => e.level === 'error'))
  })

  test('every 401 reason gets the same body and headers; the reason is only logged', async () => {
    const store = new MemoryKeyStore()
    const { key: revokedKey, id: revokedId } = await storedKey(store)
    await store.revoke(revokedId)
    const { key: goodKey } = await storedKey(store)
    const { app, logger } = buildApp({ store })
    const cases: [Record<string, string>, string][] = [
      [{}, 'missing_credentials'],
      [bearer('sy-unknown'), 'unknown_key'],
      [bearer(revokedKey), 'unknown_key'],
      [{ authorization: 'Basic dXNlcjpwYXNz' }, 'malformed_credentials'],
      [{ authorization: 'Bearer' }, 'malformed_credentials'],
      [{ authorization: 'Bearer a b' }, 'malformed_credentials'],
      [{ 'x-api-key': '' }, 'malformed_credentials'],
      [{ 'x-api-key': `sy-${'x'.repeat(9000)}` }, 'malformed_credentials'],
      [{ authorization: `Bearer ${goodKey}`, 'x-api-key': 'sy-other' }, 'conflicting_credentials'],
      // JWT-shaped, but no verifier configured: looked up as an API key.
      [bearer('aaa.bbb.ccc'), 'unknown_key'],
    ]
    const bodies = new Set<string>()
    for (const [headers, reason] of cases) {
      const res = await app.request('/v1/whoami', { headers })
      bodies.add(await expect401(res))
      assert.equal(logger.lastReason(), reason, JSON.stringify(headers).slice(0, 80))
    }
    assert.equal(bodies.size, 1)
    assert.ok(!logger.text().includes(revokedKey))
    assert.ok(!logger.text().includes('sy-unknown'))
    assert.ok(!logger.text().includes(goodKey))
  })
})

describe('model access: 401 vs 403', () => {
  test('a valid key asking for a model it may not use gets 403, a bad key gets 401', async () => {
    const store = new MemoryKeyStore()
    const { key } = await storedKey(store, { models: ['small'] })
    const { app } = buildApp({ store })
    assert.equal((await app.request('/v1/use/small', { headers: bearer(key) })).status, 200)
    const denied = await app.request('/v1/use/large', { headers: bearer(key) })
    assert.equal(denied.status, 403)
    assert.deepEqual(await denied.json(), {
      error: {
        message: 'This key may not use this model',
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_allowed',
      },
    })
    assert.equal(denied.headers.get('www-authenticate'), null)
    await expect401(await app.request('/v1/use/small', { headers: bearer('sy-bad') }))
  })

  test('requireModelAccess throws, modelAccessDenied returns; an empty list allows nothing', () => {
    const base: Principal = { id: 'k', tenant: 't', limits: {}, via: 'api_key' }
    assert.doesNotThrow(() => requireModelAccess(base, 'any'))
    assert.equal(modelAccessDenied(base, 'any'), null)
    const limited = { ...base, models: ['a'] }
    assert.doesNotThrow(() => requireModelAccess(limited, 'a'))
    assert.throws(
      () => requireModelAccess(limited, 'b'),
      (e: { status?: number }) => e.status === 403,
    )
    assert.equal(modelAccessDenied(limited, 'b')?.status, 403)
    assert.equal(canUseModel({ ...base, models: [] }, 'a'), false)
    assert.equal(canUseModel(limited, undefined), false)
    assert.equal(canUseModel(base, undefined), true)
  })
})
