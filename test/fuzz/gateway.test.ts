import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { type RedisServer, startRedis } from '../helpers/redis-server.ts'
import { junkCase, MAX_BODY_BYTES, MODEL, PATHS } from './bodies.ts'
import { assertOpenAiError, FUZZ_RUNS, fuzz, printSummary, send } from './harness.ts'
import { checkJunk, checkJunkPath, checkValid, junkPath, oddHeaders, oddQuery, ROUTES, validCases } from './requests.ts'
import { oddString } from './schema-arbitrary.ts'

/**
 * Property-based fuzzing of every public endpoint of a real gateway (Redis stores, a real
 * backend node behind it): the generation routes with schema-derived bodies, GET /v1/models,
 * /health, /ready, /status and the admin API. Valid-but-odd requests must be served, junk must
 * get a 4xx in OpenAI's shape, nothing may get a 5xx or hang, and the gateway must keep serving.
 */

const KEY = 'sy-fuzz-key-for-the-gateway-fuzz-tests'
const sha = (s: string) => createHash('sha256').update(s).digest('hex')
const auth = { authorization: `Bearer ${KEY}` }
const admin = { authorization: `Bearer ${ADMIN_TOKEN}` }
const encode = (value: unknown) => new TextEncoder().encode(typeof value === 'string' ? value : JSON.stringify(value))

let backend: BackendProcess
let redis: RedisServer
let gateway: GatewayProcess
before(async () => {
  ;[backend, redis] = await Promise.all([startBackend(), startRedis()])
  gateway = await startGateway(
    {
      backend: { url: backend.url },
      server: { maxBodyBytes: MAX_BODY_BYTES },
      // Limits high enough that the fuzz itself is never rate limited (limits have their own tests).
      auth: {
        apiKeys: [
          {
            id: 'fuzz',
            tenant: 'fuzz',
            hash: sha(KEY),
            limits: { requestsPerWindow: 1e9, tokensPerMinute: 1e12, maxConcurrent: 64 },
          },
        ],
      },
      limits: { perIp: { requestsPerWindow: 1e9, requestWindowSeconds: 60 } },
    },
    { REDIS_URL: redis.url },
  )
})
after(async () => {
  await gateway?.stop()
  await backend?.stop()
  await redis?.stop()
})

for (const route of ROUTES) {
  describe(`gateway POST ${PATHS[route]}`, () => {
    test('valid but odd bodies are served', async (t) => {
      let refused = 0
      await fuzz(t, `gateway POST ${PATHS[route]} valid`, validCases(route), async (c) => {
        const kind = await checkValid(gateway.url, route, c, auth)
        if (kind.startsWith('refused')) refused++
        return kind
      })
      assert.ok(refused <= FUZZ_RUNS / 20, `${refused} valid bodies refused for the context window`)
    })

    test('junk gets a 4xx in OpenAI shape before any backend is asked', async (t) => {
      await fuzz(t, `gateway POST ${PATHS[route]} junk`, junkCase(route, { gateway: true }), (c) =>
        checkJunk(gateway.url, route, c, auth),
      )
    })
  })
}

/** Credentials that must all get the same 401: absent, malformed, unknown, oversized, JWT-shaped. */
const badCredentials = fc.oneof(
  fc.constant({}),
  fc.string({ unit: 'grapheme-ascii', maxLength: 80 }).map((v) => ({ authorization: v })),
  fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 80 }).map((v) => ({ authorization: `Bearer ${v}` })),
  fc.string({ unit: 'grapheme-ascii', maxLength: 80 }).map((v) => ({ 'x-api-key': v })),
  fc
    .constantFrom(
      'sy-',
      `${KEY}x`,
      KEY.slice(0, -1),
      KEY.toUpperCase(),
      'a.b.c',
      'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.',
      'x'.repeat(9000),
    )
    .map((v) => ({ authorization: `Bearer ${v}` })),
  fc
    .constantFrom(`Basic ${KEY}`, `bearer  ${KEY} x`, `Bearer ${KEY} ${KEY}`, `Token ${KEY}`)
    .map((v) => ({ authorization: v })),
  // Two different credentials at once are refused even when one of them is right.
  fc.constant({ authorization: `Bearer ${KEY}`, 'x-api-key': 'sy-other' }),
)

describe('gateway authentication', () => {
  test('bad credentials all get the same 401 in OpenAI shape', async (t) => {
    const bodies = new Set<string>()
    await fuzz(t, 'gateway POST /v1/completions credentials', badCredentials, async (headers) => {
      const answer = await send(`${gateway.url}/v1/completions`, {
        headers: { 'content-type': 'application/json', ...headers },
        body: encode({ model: MODEL, prompt: 'x', max_tokens: 1 }),
      })
      if (answer.status === 200) assert.fail(`a bad credential got through: ${JSON.stringify(headers).slice(0, 200)}`)
      assertOpenAiError(answer, { status: [401], codes: ['invalid_api_key'] })
      bodies.add(answer.text)
    })
    assert.equal(bodies.size, 1, 'every refusal is the same')
  })
})

/** GET routes of the gateway, with the credential each needs and what the answer must hold. */
const GET_ROUTES: Record<string, { headers: Record<string, string>; check: (json: any) => void }> = {
  '/health': { headers: {}, check: (json) => assert.deepEqual(json, { status: 'ok' }) },
  '/ready': { headers: {}, check: (json) => assert.deepEqual(json, { status: 'ready' }) },
  '/v1/models': {
    headers: auth,
    check: (json) =>
      assert.deepEqual(
        json.data.map((m: { id: string }) => m.id),
        [MODEL],
      ),
  },
  '/status': { headers: admin, check: (json) => assert.equal(json.regions[0].nodes[0].url, backend.url) },
}

for (const [path, { headers: credential, check }] of Object.entries(GET_ROUTES)) {
  describe(`gateway GET ${path}`, () => {
    test('odd query strings and headers are served', async (t) => {
      await fuzz(t, `gateway GET ${path} valid`, fc.tuple(oddQuery, oddHeaders), async ([query, headers]) => {
        const answer = await send(`${gateway.url}${path}${query ? `?${query}` : ''}`, {
          headers: { ...headers, ...credential },
        })
        assert.equal(answer.status, 200, answer.text)
        check(JSON.parse(answer.text))
      })
    })

    test('near-miss paths and wrong methods get a 404 or 405 in OpenAI shape', async (t) => {
      await fuzz(t, `gateway GET ${path} junk`, junkPath(path), async (target) => {
        await checkJunkPath(gateway.url, target, credential)
        return target.method
      })
    })
  })
}

describe('gateway GET /v1/models and /status refusals', () => {
  test('an unknown region is a 400, a missing or wrong credential a 401', async (t) => {
    const cases = fc.oneof(
      fc
        .string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 })
        .filter((r) => r.trim() !== '' && r.trim() !== 'default')
        .map((region) => ({
          kind: 'unknown region',
          path: '/v1/models',
          headers: { ...auth, 'x-switchyard-region': region },
          status: 400,
        })),
      badCredentials.map((headers) => ({ kind: 'bad credential', path: '/v1/models', headers, status: 401 })),
      badCredentials.map((headers) => ({ kind: 'not the admin token', path: '/status', headers, status: 401 })),
      fc.constant({ kind: 'an API key is not the admin token', path: '/status', headers: auth, status: 401 }),
    )
    await fuzz(t, 'gateway GET /v1/models and /status refusals', cases, async (c) => {
      assertOpenAiError(await send(`${gateway.url}${c.path}`, { headers: c.headers }), { status: [c.status] })
      return c.kind
    })
  })
})

// The admin API's contract (docs/architecture.md, Authentication): tenant 1-128 characters without control characters, models
// a list of names, limits positive integers, id 1-64 of [A-Za-z0-9_.:-] starting with a letter or digit.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what the filter removes
const CONTROL_CHARACTER = /[\x00-\x1f\x7f]/
const cleanText = (min: number, max: number) =>
  oddString(min, max).filter((s) => !CONTROL_CHARACTER.test(s) && !/\p{Cs}/u.test(s))
const validKey = fc.record(
  {
    tenant: cleanText(1, 16).filter((s) => s.trim().length > 0),
    models: fc.array(fc.oneof(fc.constant(MODEL), cleanText(1, 8)), { maxLength: 4 }),
    limits: fc.record(
      {
        requestsPerWindow: fc.integer({ min: 1 }),
        requestWindowSeconds: fc.integer({ min: 1, max: 86_400 }),
        tokensPerMinute: fc.maxSafeNat().filter((n) => n > 0),
        maxConcurrent: fc.integer({ min: 1, max: 1000 }),
      },
      { requiredKeys: [] },
    ),
    id: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/),
  },
  { requiredKeys: ['tenant'] },
)

const junkKey = fc.oneof(
  fc
    .constantFrom<[string, unknown]>(
      ['tenant', 5],
      ['tenant', ''],
      ['tenant', '   '],
      ['tenant', 'a\nb'],
      ['tenant', 'a\u0000'],
      ['tenant', 'x\ud800'],
      ['tenant', 'x'.repeat(129)],
      ['tenant', ['a']],
      ['models', 'stories260K'],
      ['models', [1]],
      ['models', ['']],
      ['models', ['a\u007f']],
      ['models', ['\udfff']],
      ['models', Array.from({ length: 1001 }, (_, i) => `m${i}`)],
      ['limits', { requestsPerWindow: 0 }],
      ['limits', { tokensPerMinute: 1.5 }],
      ['limits', { maxConcurrent: '5' }],
      ['limits', { maxConcurrent: 2 ** 53 }],
      ['limits', { unknown: 1 }],
      ['limits', [1]],
      ['id', ''],
      ['id', '-x'],
      ['id', 'a b'],
      ['id', 'x'.repeat(65)],
      ['id', 'ü'],
      ['id', '../../etc/passwd'],
      ['__proto__', { tenant: 'x' }],
      ['unknown', 1],
    )
    .map(([field, value]) => ({
      kind: `bad ${field}`,
      text: `{"tenant":"t",${JSON.stringify(field)}:${JSON.stringify(value)}}`,
      codes: ['invalid_value'],
    })),
  fc
    .constantFrom(
      '',
      'null',
      '[]',
      '"tenant"',
      '{"tenant":',
      '{tenant: "x"}',
      `{"tenant":"t","x":${'['.repeat(5000)}${']'.repeat(5000)}}`,
    )
    .map((text) => ({ kind: 'not a JSON object', text, codes: ['invalid_json', 'invalid_value'] })),
)

describe('gateway admin API', () => {
  const usedIds = new Set<string>()

  test('keys with odd tenants, models, limits and ids are created, work, and are revoked', async (t) => {
    await fuzz(t, 'gateway /admin/keys create+use+revoke', validKey, async (input) => {
      const created = await send(`${gateway.url}/admin/keys`, {
        headers: { ...admin, 'content-type': 'application/json' },
        body: encode(input),
      })
      if (input.id !== undefined && usedIds.has(input.id)) {
        assertOpenAiError(created, { status: [409], codes: ['key_exists'] })
        return 'id taken'
      }
      assert.equal(created.status, 201, created.text)
      const key = JSON.parse(created.text) as { id: string; key: string; tenant: string; models: string[] | null }
      usedIds.add(key.id)
      assert.equal(key.tenant, input.tenant.trim())
      // The key works, and sees only the models it may use.
      const models = await send(`${gateway.url}/v1/models`, { headers: { authorization: `Bearer ${key.key}` } })
      assert.equal(models.status, 200, models.text)
      const visible = (JSON.parse(models.text) as { data: { id: string }[] }).data.map((m) => m.id)
      assert.deepEqual(visible, input.models === undefined || input.models.includes(MODEL) ? [MODEL] : [])
      const revoked = await send(`${gateway.url}/admin/keys/${encodeURIComponent(key.id)}`, {
        method: 'DELETE',
        headers: admin,
      })
      assert.equal(revoked.status, 200, revoked.text)
      assertOpenAiError(await send(`${gateway.url}/v1/models`, { headers: { authorization: `Bearer ${key.key}` } }), {
        status: [401],
      })
      return input.id === undefined ? 'generated id' : 'chosen id'
    })
  })

  test('junk bodies, unknown ids and bad admin credentials get a 4xx and change nothing', async (t) => {
    const list = async () =>
      JSON.parse((await send(`${gateway.url}/admin/keys`, { headers: admin })).text) as { data: { id: string }[] }
    const before = (await list()).data.length
    const cases = fc.oneof(
      junkKey.map((c) => ({ ...c, method: 'POST', path: '/admin/keys', headers: admin, status: [400] })),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }).map((id) => ({
        kind: 'unknown id',
        method: 'DELETE',
        path: `/admin/keys/${encodeURIComponent(id)}`,
        headers: admin,
        text: undefined,
        codes: ['key_not_found', 'not_found'],
        status: [404],
      })),
      badCredentials.chain((headers) =>
        fc.constantFrom('GET', 'POST', 'DELETE').map((method) => ({
          kind: `${method} without the admin token`,
          method,
          path: method === 'DELETE' ? '/admin/keys/fuzz' : '/admin/keys',
          headers,
          text: method === 'POST' ? '{"tenant":"t"}' : undefined,
          codes: ['invalid_api_key'],
          status: [401],
        })),
      ),
    )
    await fuzz(t, 'gateway /admin/keys junk', cases, async (c) => {
      const answer = await send(`${gateway.url}${c.path}`, {
        method: c.method,
        headers: { ...c.headers, 'content-type': 'application/json' },
        body: c.text === undefined ? undefined : encode(c.text),
      })
      assertOpenAiError(answer, { status: c.status, codes: c.codes })
      return c.kind
    })
    const after = await list()
    assert.equal(after.data.length, before, 'no key was created')
    assert.ok(!/"(key|hash)":/.test(JSON.stringify(after)), 'the list holds no secrets')
  })
})

describe('gateway after the fuzz', () => {
  test('the process is alive, healthy, and counted no 5xx', async (t) => {
    assert.equal(gateway.child.exitCode, null, 'still running')
    assert.equal((await send(`${gateway.url}/health`)).status, 200)
    const completion = await send(`${gateway.url}/v1/completions`, {
      headers: { ...auth, 'content-type': 'application/json' },
      body: encode({ model: MODEL, prompt: 'Once upon a time', max_tokens: 4, temperature: 0 }),
    })
    assert.equal(completion.status, 200, completion.text)
    const metrics = (await send(`${gateway.url}/metrics`, { headers: admin })).text
    const fivexx = metrics
      .split('\n')
      .filter((line) => line.startsWith('switchyard_gateway_requests_total{') && /status="5\d\d"/.test(line))
    assert.deepEqual(fivexx, [], 'no request was answered with a 5xx')
    assert.ok(
      !/"level":50/.test(gateway.output()),
      `no error was logged:\n${gateway
        .output()
        .split('\n')
        .filter((l) => l.includes('"level":50'))
        .slice(0, 5)
        .join('\n')}`,
    )
    printSummary(t)
  })
})
