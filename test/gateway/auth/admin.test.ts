import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { hashApiKey } from '../../../gateway/auth/api-keys.ts'
import type { Principal } from '../../../gateway/types.ts'
import { buildApp, DEFAULT_LIMITS, hexSha256, MemoryKeyStore, UNAUTHORIZED_BODY } from './helpers.ts'

const ADMIN_TOKEN = 'admin-token-0123456789-abcdefghij'
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
const json = (body: unknown, headers: Record<string, string> = admin) => ({
  method: 'POST',
  headers: { ...headers, 'content-type': 'application/json' },
  body: typeof body === 'string' ? body : JSON.stringify(body),
})

type Created = {
  id: string
  key: string
  tenant: string
  models: string[] | null
  limits: Record<string, number>
  created_at: string
}
type ErrorBody = { error: { message: string; type: string; param: string | null; code: string | null } }

describe('admin API: access', () => {
  test('no admin token configured: every admin route is a 404, whatever the credentials', async () => {
    for (const adminToken of [undefined, '', '   ']) {
      const { app } = buildApp({ adminToken })
      for (const [path, init] of [
        ['/admin/keys', { headers: admin }],
        ['/admin/keys', json({ tenant: 't' })],
        ['/admin/keys/key_00000000', { method: 'DELETE', headers: admin }],
        ['/admin/keys', {}],
        ['/metrics', { headers: admin }],
      ] as [string, RequestInit][]) {
        const res = await app.request(path, init)
        assert.equal(res.status, 404, `${init.method ?? 'GET'} ${path}`)
        assert.equal(((await res.json()) as ErrorBody).error.code, 'not_found')
      }
    }
  })

  test('missing or wrong token: 401 in OpenAI shape; right token: 200', async () => {
    const { app, logger } = buildApp({ adminToken: ADMIN_TOKEN })
    const wrong: Record<string, string>[] = [
      {},
      { authorization: `Bearer ${ADMIN_TOKEN}x` },
      { authorization: `Bearer ${ADMIN_TOKEN.slice(0, -1)}` },
      { authorization: 'Bearer x' },
      { authorization: `Basic ${ADMIN_TOKEN}` },
      { 'x-api-key': ADMIN_TOKEN },
    ]
    for (const headers of wrong) {
      for (const path of ['/admin/keys', '/metrics']) {
        const res = await app.request(path, { headers })
        assert.equal(res.status, 401, `${path} ${JSON.stringify(headers)}`)
        assert.equal(res.headers.get('www-authenticate'), 'Bearer')
        assert.deepEqual(await res.json(), UNAUTHORIZED_BODY)
      }
    }
    assert.equal((await app.request('/admin/keys', { headers: admin })).status, 200)
    const metrics = await app.request('/metrics', { headers: admin })
    assert.equal(metrics.status, 200)
    assert.equal(await metrics.text(), 'metrics 1\n')
    assert.ok(!logger.text().includes(ADMIN_TOKEN.slice(0, 12)))
  })

  test('an API key is not an admin credential', async () => {
    const { app } = buildApp({ adminToken: ADMIN_TOKEN })
    const created = (await (await app.request('/admin/keys', json({ tenant: 'acme' }))).json()) as Created
    assert.equal(
      (await app.request('/admin/keys', { headers: { authorization: `Bearer ${created.key}` } })).status,
      401,
    )
  })
})

describe('admin API: key lifecycle', () => {
  test('create -> key works; store holds only the hash; list has no secrets; delete -> key fails at once', async () => {
    const store = new MemoryKeyStore()
    const { app, logger } = buildApp({ adminToken: ADMIN_TOKEN, store })

    const res = await app.request(
      '/admin/keys',
      json({ tenant: 'acme', models: ['small', 'small', 'large'], limits: { maxConcurrent: 2 } }),
    )
    assert.equal(res.status, 201)
    assert.equal(res.headers.get('cache-control'), 'no-store')
    const created = (await res.json()) as Created
    assert.match(created.key, /^sy-[A-Za-z0-9_-]{43}$/)
    assert.match(created.id, /^key_[0-9a-f]{8}$/)
    assert.equal(created.tenant, 'acme')
    assert.deepEqual(created.models, ['small', 'large'])
    assert.deepEqual(created.limits, { maxConcurrent: 2 })
    assert.ok(!Number.isNaN(Date.parse(created.created_at)))

    const stored = store.records.get(created.id)!
    assert.equal(stored.hash, await hashApiKey(created.key))
    assert.equal(stored.source, 'store')
    assert.ok(!JSON.stringify([...store.records.values()]).includes(created.key))
    assert.ok(!logger.text().includes(created.key))

    const who = await app.request('/v1/whoami', { headers: { authorization: `Bearer ${created.key}` } })
    assert.equal(who.status, 200)
    assert.deepEqual(await who.json(), {
      id: created.id,
      tenant: 'acme',
      models: ['small', 'large'],
      limits: { ...DEFAULT_LIMITS, maxConcurrent: 2 },
      via: 'api_key',
      source: 'store',
    } satisfies Principal)

    const list = await app.request('/admin/keys', { headers: admin })
    assert.equal(list.status, 200)
    const listText = await list.text()
    assert.ok(!listText.includes(created.key))
    assert.ok(!listText.includes(stored.hash))
    const listed = JSON.parse(listText) as { object: string; data: Record<string, unknown>[] }
    assert.equal(listed.object, 'list')
    assert.deepEqual(listed.data, [
      {
        id: created.id,
        tenant: 'acme',
        models: ['small', 'large'],
        limits: { maxConcurrent: 2 },
        created_at: created.created_at,
        revoked: false,
        source: 'store',
      },
    ])
    for (const entry of listed.data) {
      assert.ok(!('hash' in entry) && !('key' in entry))
    }

    const del = await app.request(`/admin/keys/${created.id}`, { method: 'DELETE', headers: admin })
    assert.equal(del.status, 200)
    assert.deepEqual(await del.json(), { id: created.id, revoked: true })

    const after = await app.request('/v1/whoami', { headers: { authorization: `Bearer ${created.key}` } })
    assert.equal(after.status, 401)
    assert.deepEqual(await after.json(), UNAUTHORIZED_BODY)

    const again = await app.request(`/admin/keys/${created.id}`, { method: 'DELETE', headers: admin })
    assert.equal(again.status, 404)
    assert.equal(((await again.json()) as ErrorBody).error.code, 'key_not_found')
  })

  test('a chosen id; a taken id is a 409; no models = all models', async () => {
    const { app } = buildApp({ adminToken: ADMIN_TOKEN })
    const res = await app.request('/admin/keys', json({ tenant: 'acme', id: 'ci-runner' }))
    assert.equal(res.status, 201)
    const created = (await res.json()) as Created
    assert.equal(created.id, 'ci-runner')
    assert.equal(created.models, null)
    assert.deepEqual(created.limits, {})
    assert.equal((await app.request('/v1/use/whatever', { headers: { 'x-api-key': created.key } })).status, 200)
    const dup = await app.request('/admin/keys', json({ tenant: 'other', id: 'ci-runner' }))
    assert.equal(dup.status, 409)
    assert.equal(((await dup.json()) as ErrorBody).error.code, 'key_exists')
  })

  test('ids are unique across sources: a config-file id is a 409 on create, and a config key cannot be revoked here', async () => {
    const configKey = 'sy-config-key-lim2'
    const store = new MemoryKeyStore()
    const { app } = buildApp({
      adminToken: ADMIN_TOKEN,
      store,
      configKeys: [
        {
          id: 'lim2',
          hash: await hexSha256(configKey),
          tenant: 'ops',
          limits: {},
          createdAt: 'config',
          source: 'config',
        },
      ],
    })
    const create = await app.request('/admin/keys', json({ tenant: 'other-tenant', id: 'lim2' }))
    assert.equal(create.status, 409)
    const createError = ((await create.json()) as ErrorBody).error
    assert.equal(createError.code, 'key_exists')
    assert.equal(createError.param, 'id')
    assert.match(createError.message, /config file/)
    assert.equal(store.records.size, 0, 'nothing created')
    store.failing = true
    const whileDown = await app.request('/admin/keys', json({ tenant: 'other-tenant', id: 'lim2' }))
    assert.equal(whileDown.status, 409, 'a config-file id needs no store lookup to refuse')
    store.failing = false

    const del = await app.request('/admin/keys/lim2', { method: 'DELETE', headers: admin })
    assert.equal(del.status, 409)
    const delError = ((await del.json()) as ErrorBody).error
    assert.equal(delError.code, 'config_key')
    assert.match(delError.message, /config file and cannot be revoked through the admin API/)
    // It says so because it is true: the config key keeps working.
    assert.equal((await app.request('/v1/whoami', { headers: { authorization: `Bearer ${configKey}` } })).status, 200)

    // A store key that got the id before ids were unique across sources is revoked, and the answer says so.
    const legacyKey = 'sy-legacy-store-key-lim2'
    await store.create({
      id: 'lim2',
      hash: await hexSha256(legacyKey),
      tenant: 'other-tenant',
      limits: {},
      createdAt: 'earlier',
      source: 'store',
    })
    assert.equal((await app.request('/v1/whoami', { headers: { authorization: `Bearer ${legacyKey}` } })).status, 200)
    const legacy = await app.request('/admin/keys/lim2', { method: 'DELETE', headers: admin })
    assert.equal(legacy.status, 409)
    assert.match(((await legacy.json()) as ErrorBody).error.message, /key-store key with the same id, .* was revoked/)
    assert.equal((await app.request('/v1/whoami', { headers: { authorization: `Bearer ${legacyKey}` } })).status, 401)
    assert.equal((await app.request('/v1/whoami', { headers: { authorization: `Bearer ${configKey}` } })).status, 200)
  })

  test('deleting an unknown key is a 404', async () => {
    const { app } = buildApp({ adminToken: ADMIN_TOKEN })
    const res = await app.request('/admin/keys/key_deadbeef', { method: 'DELETE', headers: admin })
    assert.equal(res.status, 404)
    assert.deepEqual(await res.json(), {
      error: { message: 'No such API key', type: 'invalid_request_error', param: 'id', code: 'key_not_found' },
    })
  })

  test('bad input is a 400 in OpenAI shape naming the parameter, never a 5xx', async () => {
    const { app, store } = buildApp({ adminToken: ADMIN_TOKEN })
    const cases: [string | unknown, string | null][] = [
      ['not json', null],
      ['', null],
      ['[]', null],
      ['null', null],
      ['"tenant"', null],
      [{}, 'tenant'],
      [{ tenant: '' }, 'tenant'],
      [{ tenant: '   ' }, 'tenant'],
      [{ tenant: 5 }, 'tenant'],
      [{ tenant: 'a\nb' }, 'tenant'],
      [{ tenant: 'x'.repeat(200) }, 'tenant'],
      [{ tenant: 'acme', models: 'small' }, 'models'],
      [{ tenant: 'acme', models: [1] }, 'models.0'],
      [{ tenant: 'acme', models: [''] }, 'models.0'],
      [{ tenant: 'acme', limits: [] }, 'limits'],
      [{ tenant: 'acme', limits: { maxConcurrent: -1 } }, 'limits.maxConcurrent'],
      [{ tenant: 'acme', limits: { tokensPerMinute: 1.5 } }, 'limits.tokensPerMinute'],
      [{ tenant: 'acme', limits: { requestsPerWindow: '10' } }, 'limits.requestsPerWindow'],
      [{ tenant: 'acme', limits: { rpm: 10 } }, 'limits'],
      [{ tenant: 'acme', id: '../etc' }, 'id'],
      [{ tenant: 'acme', id: '' }, 'id'],
      [{ tenant: 'acme', model: ['typo'] }, null],
    ]
    for (const [body, param] of cases) {
      const res = await app.request('/admin/keys', json(body))
      assert.equal(res.status, 400, JSON.stringify(body))
      const error = ((await res.json()) as ErrorBody).error
      assert.equal(error.type, 'invalid_request_error')
      assert.ok(['invalid_json', 'invalid_value'].includes(error.code!), error.code!)
      if (param !== null) assert.equal(error.param, param, JSON.stringify(body))
    }
    assert.equal((store as MemoryKeyStore).records.size, 0)

    const huge = await app.request(
      '/admin/keys',
      json({ tenant: 'acme', models: Array.from({ length: 5000 }, (_, i) => `model-${i}-${'x'.repeat(10)}`) }),
    )
    assert.equal(huge.status, 413)
    assert.equal(((await huge.json()) as ErrorBody).error.code, 'body_too_large')
  })

  test('store failures are a 503 in OpenAI shape', async () => {
    const store = new MemoryKeyStore()
    const { app } = buildApp({ adminToken: ADMIN_TOKEN, store })
    store.failing = true
    for (const [path, init] of [
      ['/admin/keys', json({ tenant: 'acme' })],
      ['/admin/keys', { headers: admin }],
      ['/admin/keys/key_00000000', { method: 'DELETE', headers: admin }],
    ] as [string, RequestInit][]) {
      const res = await app.request(path, init)
      assert.equal(res.status, 503)
      assert.equal(((await res.json()) as ErrorBody).error.code, 'store_unavailable')
    }
  })
})
