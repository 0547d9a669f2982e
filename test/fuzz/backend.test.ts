import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import fc from 'fast-check'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { junkCase, MAX_BODY_BYTES, MODEL, PATHS } from './bodies.ts'
import { FUZZ_RUNS, fuzz, printSummary, send } from './harness.ts'
import { checkJunk, checkJunkPath, checkValid, junkPath, oddHeaders, oddQuery, ROUTES, validCases } from './requests.ts'

/**
 * Property-based fuzzing of every public endpoint of a real backend node (stories260K): bodies
 * derived from the request schemas that are valid but odd must be served; junk must get a 4xx
 * in OpenAI's error shape; nothing may get a 5xx or hang, and the node must keep serving.
 */

let backend: BackendProcess
/** 5xx counts per route before the fuzz (start-up polls /ready while it is still 503). */
let fivexxBefore: Map<string, number>
before(async () => {
  backend = await startBackend({ MAX_BODY_BYTES: String(MAX_BODY_BYTES) })
  fivexxBefore = fivexx((await send(`${backend.url}/metrics`)).text)
})

function fivexx(metrics: string): Map<string, number> {
  const lines = metrics
    .split('\n')
    .filter((line) => line.startsWith('switchyard_backend_requests_total{') && /status="5\d\d"/.test(line))
  return new Map(
    lines.map((line) => [line.slice(0, line.lastIndexOf(' ')), Number(line.slice(line.lastIndexOf(' ') + 1))]),
  )
}
after(async () => {
  await backend?.stop()
})

for (const route of ROUTES) {
  describe(`backend POST ${PATHS[route]}`, () => {
    test('valid but odd bodies are served', async (t) => {
      let refused = 0
      await fuzz(t, `backend POST ${PATHS[route]} valid`, validCases(route), async (c) => {
        const kind = await checkValid(backend.url, route, c)
        if (kind.startsWith('refused')) refused++
        return kind
      })
      assert.ok(refused <= FUZZ_RUNS / 20, `${refused} valid bodies refused for the context window`)
    })

    test('junk gets a 4xx in OpenAI shape', async (t) => {
      await fuzz(t, `backend POST ${PATHS[route]} junk`, junkCase(route, { gateway: false }), (c) =>
        checkJunk(backend.url, route, c),
      )
    })
  })
}

/** What each GET route answers, checked beyond the status. */
const GET_ROUTES: Record<string, (json: any) => void> = {
  '/health': (json) => assert.deepEqual(json, { status: 'ok' }),
  '/ready': (json) => assert.deepEqual(json, { status: 'ready' }),
  '/v1/models': (json) =>
    assert.deepEqual(
      json.data.map((m: { id: string }) => m.id),
      [MODEL],
    ),
  '/model/info': (json) => assert.equal(json.models[0].name, MODEL),
}

for (const [path, check] of Object.entries(GET_ROUTES)) {
  describe(`backend GET ${path}`, () => {
    test('odd query strings and headers are served', async (t) => {
      await fuzz(t, `backend GET ${path} valid`, fc.tuple(oddQuery, oddHeaders), async ([query, headers]) => {
        const answer = await send(`${backend.url}${path}${query ? `?${query}` : ''}`, { headers })
        assert.equal(answer.status, 200, answer.text)
        check(JSON.parse(answer.text))
      })
    })

    test('near-miss paths and wrong methods get a 404 or 405 in OpenAI shape', async (t) => {
      await fuzz(t, `backend GET ${path} junk`, junkPath(path), async (target) => {
        await checkJunkPath(backend.url, target)
        return target.method
      })
    })
  })
}

describe('backend after the fuzz', () => {
  test('the process is alive, healthy, and counted no 5xx', async (t) => {
    assert.equal(backend.child.exitCode, null, 'still running')
    assert.equal((await send(`${backend.url}/health`)).status, 200)
    const completion = await send(`${backend.url}/v1/completions`, {
      headers: { 'content-type': 'application/json' },
      body: new TextEncoder().encode(
        JSON.stringify({ model: MODEL, prompt: 'Once upon a time', max_tokens: 4, temperature: 0 }),
      ),
    })
    assert.equal(completion.status, 200)
    const after = fivexx((await send(`${backend.url}/metrics`)).text)
    const added = [...after].filter(([series, n]) => n > (fivexxBefore.get(series) ?? 0))
    assert.deepEqual(added, [], 'no request during the fuzz was answered with a 5xx')
    printSummary(t)
  })
})
