import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { exportJWK, generateKeyPair } from 'jose'
import { type BackendProcess, postJson, readSse, startBackend } from '../helpers/backend-process.ts'
import { readStreamKillingItsNode } from '../helpers/failover-stream.ts'
import { startFakeNode } from '../helpers/fake-node.ts'
import { ADMIN_TOKEN, type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'

// Routing, health, breakers, retries and failover through a real gateway in front of real
// backend processes (stories260K) in two regions; fake nodes only where a failure must be made.
const KEY = 'sy-test-key-for-routing-tests-000000'
const auth = { authorization: `Bearer ${KEY}` }
const apiKeys = [
  {
    id: 'routing',
    tenant: 'acme',
    hash: createHash('sha256').update(KEY).digest('hex'),
    limits: { requestsPerWindow: 100_000, tokensPerMinute: 100_000_000, maxConcurrent: 10_000 },
  },
]
const greedy = (extra: object = {}) => ({
  model: 'stories260K',
  prompt: 'Once upon a time',
  max_tokens: 24,
  temperature: 0,
  ...extra,
})
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const status = async (gateway: GatewayProcess) =>
  (await (await fetch(`${gateway.url}/status`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).json()) as {
    regions: {
      name: string
      nodes: { id: string; healthy: boolean; ejected: boolean; breaker: string; usable: boolean }[]
    }[]
    retryBudget: { requests: number; retries: number }
  }
const nodeStatus = async (gateway: GatewayProcess, id: string) =>
  (await status(gateway)).regions.flatMap((r) => r.nodes).find((n) => n.id === id)!
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}
const routing = (regions: object[], extra: object = {}) => ({
  auth: { apiKeys },
  cache: { enabled: false },
  routing: {
    regions,
    region: 'eu',
    healthCheck: { intervalMs: 200, timeoutMs: 1000, unhealthyAfter: 2, healthyAfter: 1 },
    retry: { maxAttempts: 3, perTryTimeoutMs: 30_000, budgetRatio: 0.5, budgetMinPerSecond: 10 },
    ...extra,
  },
})

describe('routing across regions', () => {
  const backends: Record<string, BackendProcess> = {}
  let gateway: GatewayProcess
  const topology = () => [
    {
      name: 'eu',
      fallback: ['us'],
      nodes: [
        { id: 'eu-1', url: backends['eu-1'].url },
        { id: 'eu-2', url: backends['eu-2'].url },
      ],
    },
    { name: 'us', fallback: ['eu'], nodes: [{ id: 'us-1', url: backends['us-1'].url }] },
  ]

  before(async () => {
    const [a, b, c] = await Promise.all([startBackend(), startBackend(), startBackend()])
    Object.assign(backends, { 'eu-1': a, 'eu-2': b, 'us-1': c })
    gateway = await startGateway(routing(topology()))
  })
  after(async () => {
    await gateway?.stop()
    await Promise.all(Object.values(backends).map((b) => b.stop('SIGKILL')))
  })

  test('the preferred region serves; the header picks another; an unknown region is a 400', async () => {
    const own = await postJson(`${gateway.url}/v1/completions`, greedy(), auth)
    assert.equal(own.status, 200)
    assert.equal(own.headers.get('x-switchyard-region'), 'eu')
    assert.match(own.headers.get('x-switchyard-backend')!, /^eu-[12]$/)
    assert.equal(own.headers.get('x-switchyard-attempts'), '1')
    const us = await postJson(`${gateway.url}/v1/completions`, greedy(), { ...auth, 'x-switchyard-region': 'us' })
    assert.equal(us.headers.get('x-switchyard-backend'), 'us-1')
    assert.deepEqual(
      ((await us.json()) as { choices: { text: string }[] }).choices[0].text,
      ((await own.json()) as { choices: { text: string }[] }).choices[0].text,
    )
    const unknown = await postJson(`${gateway.url}/v1/completions`, greedy(), {
      ...auth,
      'x-switchyard-region': 'mars',
    })
    assert.equal(unknown.status, 400)
    assert.equal(((await unknown.json()) as { error: { code: string } }).error.code, 'invalid_region')
  })

  test('a hanging region is left while it has no healthy node, and used again when it recovers', async () => {
    // SIGSTOP: the processes keep their sockets (connections are accepted) but never answer.
    backends['eu-1'].child.kill('SIGSTOP')
    backends['eu-2'].child.kill('SIGSTOP')
    try {
      await until(
        'eu nodes unhealthy',
        async () => !(await nodeStatus(gateway, 'eu-1')).healthy && !(await nodeStatus(gateway, 'eu-2')).healthy,
      )
      const started = Date.now()
      const moved = await postJson(`${gateway.url}/v1/completions`, greedy(), auth)
      assert.equal(moved.status, 200)
      assert.equal(moved.headers.get('x-switchyard-region'), 'us')
      assert.ok(Date.now() - started < 1500, 'unhealthy nodes are not tried at all')
    } finally {
      backends['eu-1'].child.kill('SIGCONT')
      backends['eu-2'].child.kill('SIGCONT')
    }
    await until(
      'eu nodes healthy again',
      async () => (await nodeStatus(gateway, 'eu-1')).healthy && (await nodeStatus(gateway, 'eu-2')).healthy,
    )
    const back = await postJson(`${gateway.url}/v1/completions`, greedy(), auth)
    assert.equal(back.headers.get('x-switchyard-region'), 'eu')
  })

  test('kill -9 of a node while 200 non-streaming requests are in flight: all 200 succeed', async () => {
    const requests = Array.from({ length: 200 }, (_, i) =>
      postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 48, seed: i, temperature: 0.8 }), auth),
    )
    await sleep(150)
    backends['eu-1'].child.kill('SIGKILL')
    const responses = await Promise.all(requests)
    const bodies = await Promise.all(
      responses.map((r) => r.json() as Promise<{ choices?: { text: string }[]; error?: { code: string } }>),
    )
    const failures = responses.flatMap((r, i) =>
      r.status === 200
        ? []
        : [`${r.status} ${bodies[i].error?.code} after ${r.headers.get('x-switchyard-attempts')} tries`],
    )
    assert.deepEqual(failures, [], 'every request succeeded')
    assert.ok(bodies.every((b) => typeof b.choices?.[0].text === 'string'))
    const retried = responses.filter((r) => r.headers.get('x-switchyard-attempts') !== '1').length
    assert.ok(retried > 0, 'some requests were in flight on the killed node and were retried')
    backends['eu-1'] = await startBackend({ PORT: String(backends['eu-1'].port) })
    await until('eu-1 back', async () => (await nodeStatus(gateway, 'eu-1')).usable)
  })

  test('a node killed mid-stream: the stream completes, identical to an uninterrupted run (greedy and seeded)', async () => {
    for (const params of [{ temperature: 0 }, { temperature: 0.9, top_p: 0.95, seed: 11 }]) {
      const body = {
        model: 'stories260K',
        prompt: 'Once upon a time',
        max_tokens: 400,
        ignore_eos: true,
        stream: true,
        ...params,
      }
      const reference = await postJson(`${gateway.url}/v1/completions`, { ...body, stream: false }, auth)
      const referenceText = ((await reference.json()) as { choices: { text: string }[] }).choices[0].text
      const response = await postJson(`${gateway.url}/v1/completions`, body, auth)
      assert.equal(response.status, 200)
      const { serving, events } = await readStreamKillingItsNode(response, (node) =>
        backends[node].child.kill('SIGKILL'),
      )
      assert.equal(events.at(-1), '[DONE]', 'the stream ended normally')
      const chunks = events
        .slice(0, -1)
        .map((e) => JSON.parse(e) as { id: string; choices: { text: string; token_ids?: number[] }[] })
      assert.equal(new Set(chunks.map((c) => c.id)).size, 1, 'one stream id throughout')
      assert.ok(
        chunks.every((c) => c.choices.every((choice) => choice.token_ids === undefined)),
        'the gateway’s token ids are not shown',
      )
      assert.equal(chunks.map((c) => c.choices[0]?.text ?? '').join(''), referenceText)
      backends[serving] = await startBackend({ PORT: String(backends[serving].port) })
      await until(`${serving} back`, async () => (await nodeStatus(gateway, serving)).usable)
    }
  })

  test('a node that stalls mid-stream is left after stream.stallTimeoutMs and the stream continues exactly', async () => {
    const stalling = await startGateway(routing(topology(), { stream: { stallTimeoutMs: 800 } }))
    try {
      const body = {
        model: 'stories260K',
        messages: [{ role: 'user', content: 'Tell me a story' }],
        max_tokens: 300,
        temperature: 0.7,
        seed: 5,
        stream: true,
      }
      const reference = await postJson(`${stalling.url}/v1/chat/completions`, body, auth)
      const text = (events: unknown[]) =>
        (events.slice(0, -1) as { choices: { delta: { content?: string } }[] }[])
          .map((e) => e.choices[0]?.delta.content ?? '')
          .join('')
      const referenceText = text(await readSse(reference))
      const response = await postJson(`${stalling.url}/v1/chat/completions`, body, auth)
      const serving = backends[response.headers.get('x-switchyard-backend')!]
      const reader = response.body!.getReader()
      const decoder = new TextDecoder()
      let raw = decoder.decode((await reader.read()).value, { stream: true })
      serving.child.kill('SIGSTOP')
      const started = Date.now()
      try {
        for (let r = await reader.read(); !r.done; r = await reader.read())
          raw += decoder.decode(r.value, { stream: true })
      } finally {
        serving.child.kill('SIGCONT')
      }
      assert.ok(Date.now() - started >= 700, 'the gateway waited for the stall timeout')
      const events = raw
        .split('\n\n')
        .filter(Boolean)
        .map((e) => {
          const data = e.slice(6)
          return data === '[DONE]' ? data : JSON.parse(data)
        })
      assert.equal(events.at(-1), '[DONE]')
      assert.equal(text(events), referenceText)
      const metrics = await (
        await fetch(`${stalling.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      ).text()
      assert.match(metrics, /switchyard_gateway_failovers_total\{reason="stall",scope="stream"\} 1/)
    } finally {
      await stalling.stop()
    }
  })

  test('nodes found by DNS: one node per address, each with its own state', async () => {
    const port = backends['us-1'].port
    const discovered = await startGateway(routing([{ name: 'eu', nodes: [{ id: 'pool', dns: 'localhost', port }] }]))
    try {
      await until(
        'the discovered node is healthy',
        async () => (await nodeStatus(discovered, 'pool-127.0.0.1'))?.healthy === true,
      )
      const response = await postJson(`${discovered.url}/v1/completions`, greedy(), auth)
      assert.equal(response.status, 200)
      assert.equal(response.headers.get('x-switchyard-backend'), 'pool-127.0.0.1')
      assert.match(discovered.output(), /backend nodes discovered/)
    } finally {
      await discovered.stop()
    }
  })

  test('model aliases: the served version is in the model field and a header', async () => {
    const config = routing(topology(), {
      aliases: { stories: { versions: [{ model: 'stories260K', weight: 1 }], sticky: true } },
    })
    const aliased = await startGateway(config)
    try {
      const response = await postJson(`${aliased.url}/v1/completions`, greedy({ model: 'stories' }), auth)
      assert.equal(response.status, 200)
      assert.equal(response.headers.get('x-switchyard-model-version'), 'stories260K')
      assert.equal(((await response.json()) as { model: string }).model, 'stories260K')
      const models = (await (await fetch(`${aliased.url}/v1/models`, { headers: auth })).json()) as {
        data: { id: string }[]
      }
      assert.deepEqual(models.data.map((m) => m.id).sort(), ['stories', 'stories260K'])
    } finally {
      await aliased.stop()
    }
  })

  test('a config reload adds a node without dropping requests; an invalid one is rejected and the old one kept', async () => {
    const reloadable = await startGateway(routing([{ ...topology()[0], fallback: [] }]))
    try {
      const file = reloadable.configPath
      const inFlight = postJson(`${reloadable.url}/v1/completions`, greedy({ max_tokens: 200, ignore_eos: true }), auth)
      writeFileSync(file, JSON.stringify(routing(topology())))
      await until('reload', async () => /configuration reloaded/.test(reloadable.output()))
      assert.equal((await inFlight).status, 200)
      assert.equal(
        (await postJson(`${reloadable.url}/v1/completions`, greedy(), { ...auth, 'x-switchyard-region': 'us' })).status,
        200,
      )
      writeFileSync(file, '{"routing": {"regions": []}}')
      reloadable.child.kill('SIGHUP')
      await until('rejection', async () => /configuration reload rejected/.test(reloadable.output()))
      assert.equal(
        (await postJson(`${reloadable.url}/v1/completions`, greedy(), { ...auth, 'x-switchyard-region': 'us' })).status,
        200,
      )
    } finally {
      await reloadable.stop()
    }
  })
})

describe('breakers, timeouts and the retry budget', () => {
  let backend: BackendProcess
  before(async () => {
    backend = await startBackend()
  })
  after(async () => {
    await backend?.stop()
  })

  test('a breaker opens on errors, half-opens after its reset timeout, and closes on a good trial', async () => {
    const flaky = await startFakeNode('fail', backend.url)
    const gateway = await startGateway(
      routing(
        [
          {
            name: 'eu',
            nodes: [
              { id: 'flaky', url: flaky.url, weight: 100 },
              { id: 'good', url: backend.url, weight: 1 },
            ],
          },
        ],
        {
          breaker: { errorThresholdPercentage: 50, volumeThreshold: 3, resetTimeoutMs: 1500, rollingWindowMs: 10_000 },
          outlier: { consecutiveFailures: 1000 },
        },
      ),
    )
    try {
      for (let i = 0; i < 8; i++)
        assert.equal((await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), auth)).status, 200)
      assert.equal((await nodeStatus(gateway, 'flaky')).breaker, 'open')
      const before = flaky.state.generations
      for (let i = 0; i < 5; i++) await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), auth)
      assert.equal(flaky.state.generations, before, 'an open breaker sends nothing to its node')
      flaky.setMode('proxy')
      await until('half-open', async () => (await nodeStatus(gateway, 'flaky')).breaker === 'half_open')
      await until('closed after a good trial', async () => {
        await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), auth)
        return (await nodeStatus(gateway, 'flaky')).breaker === 'closed'
      })
      const metrics = await (
        await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      ).text()
      for (const to of ['open', 'half_open', 'closed'])
        assert.match(
          metrics,
          new RegExp(`switchyard_gateway_breaker_transitions_total\\{region="eu",backend="flaky",to="${to}"\\} 1`),
        )
    } finally {
      await gateway.stop()
      await flaky.stop()
    }
  })

  test('a node that accepts and never answers is timed out, retried elsewhere, then avoided', async () => {
    const hanging = await startFakeNode('hang')
    const gateway = await startGateway(
      routing(
        [
          {
            name: 'eu',
            nodes: [
              { id: 'hanging', url: hanging.url, weight: 100 },
              { id: 'good', url: backend.url, weight: 1 },
            ],
          },
        ],
        {
          healthCheck: { intervalMs: 60_000, timeoutMs: 300 },
          retry: { maxAttempts: 3, perTryTimeoutMs: 400, budgetRatio: 1, budgetMinPerSecond: 10 },
          outlier: { consecutiveFailures: 2 },
        },
      ),
    )
    try {
      const first = await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), auth)
      assert.equal(first.status, 200)
      const connections = hanging.state.connections
      const started = Date.now()
      for (let i = 0; i < 5; i++)
        assert.equal((await postJson(`${gateway.url}/v1/completions`, greedy({ max_tokens: 2 }), auth)).status, 200)
      const node = await nodeStatus(gateway, 'hanging')
      assert.ok(node.ejected || !node.healthy || node.breaker === 'open', 'the hanging node is out of rotation')
      assert.ok(hanging.state.connections - connections <= 2, 'at most the tries that found it out went to it')
      assert.ok(Date.now() - started < 5 * 400 + 2000)
    } finally {
      await gateway.stop()
      await hanging.stop()
    }
  })

  test('every node down: 503 in OpenAI’s shape within the deadline, and no more tries than the retry budget allows', async () => {
    const failing = await Promise.all([startFakeNode('fail'), startFakeNode('fail')])
    const gateway = await startGateway({
      ...routing(
        [
          { name: 'eu', fallback: ['us'], nodes: [{ id: 'f1', url: failing[0].url }] },
          { name: 'us', nodes: [{ id: 'f2', url: failing[1].url }] },
        ],
        {
          retry: {
            maxAttempts: 3,
            perTryTimeoutMs: 1000,
            budgetRatio: 0.2,
            budgetMinPerSecond: 0,
            budgetWindowSeconds: 60,
            backoffBaseMs: 1,
            backoffMaxMs: 5,
          },
          breaker: { volumeThreshold: 1_000_000 },
          outlier: { consecutiveFailures: 1_000_000 },
        },
      ),
      server: { requestTimeoutMs: 3000 },
    })
    try {
      const started = Date.now()
      const responses = []
      for (let i = 0; i < 50; i++) responses.push(await postJson(`${gateway.url}/v1/completions`, greedy(), auth))
      assert.ok(Date.now() - started < 50 * 3000)
      for (const r of responses) {
        assert.equal(r.status, 503)
        const body = (await r.json()) as { error: { type: string; code: string } }
        assert.equal(body.error.type, 'server_error')
        assert.equal(body.error.code, 'no_backend_available')
      }
      const sent = failing[0].state.generations + failing[1].state.generations
      assert.ok(sent >= 50, 'every request was tried at least once')
      assert.ok(sent <= 50 + Math.floor(0.2 * 50), `at most 20% retries: ${sent} tries for 50 requests`)
      const metrics = await (
        await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })
      ).text()
      assert.match(metrics, /switchyard_gateway_retry_budget_exhausted_total [1-9]/)
    } finally {
      await gateway.stop()
      await Promise.all(failing.map((f) => f.stop()))
    }
  })

  test('a stream still running at the request deadline ends with a timeout error event', async () => {
    const gateway = await startGateway({
      ...routing([{ name: 'eu', nodes: [{ id: 'only', url: backend.url }] }], { stream: { stallTimeoutMs: 10_000 } }),
      server: { requestTimeoutMs: 1500 },
    })
    try {
      const response = await postJson(
        `${gateway.url}/v1/completions`,
        greedy({ max_tokens: 400, ignore_eos: true, stream: true }),
        auth,
      )
      const reader = response.body!.getReader()
      await reader.read()
      backend.child.kill('SIGSTOP')
      const started = Date.now()
      let raw = ''
      try {
        for (let r = await reader.read(); !r.done; r = await reader.read()) raw += new TextDecoder().decode(r.value)
      } finally {
        backend.child.kill('SIGCONT')
      }
      assert.ok(Date.now() - started < 3000, 'ended by the deadline, not the stall timeout')
      const last = JSON.parse(raw.trim().split('\n\n').at(-1)!.slice(6)) as { error: { code: string; type: string } }
      assert.deepEqual([last.error.type, last.error.code], ['server_error', 'timeout'])
    } finally {
      await gateway.stop()
    }
  })

  test('hanging nodes only: 503 within the deadline', async () => {
    const hanging = await startFakeNode('hang')
    const gateway = await startGateway({
      ...routing([{ name: 'eu', nodes: [{ id: 'h', url: hanging.url }] }], {
        retry: { maxAttempts: 3, perTryTimeoutMs: 600, budgetRatio: 1, budgetMinPerSecond: 10 },
      }),
      server: { requestTimeoutMs: 1500 },
    })
    try {
      const started = Date.now()
      const response = await postJson(`${gateway.url}/v1/completions`, greedy(), auth)
      assert.ok([503, 504].includes(response.status))
      assert.ok(Date.now() - started < 2500, `answered after ${Date.now() - started} ms`)
      assert.equal(((await response.json()) as { error: { type: string } }).error.type, 'server_error')
    } finally {
      await gateway.stop()
      await hanging.stop()
    }
  })
})

describe('gateway → backend authentication', () => {
  test('backends with the verification key serve the gateway (requests and health checks) and refuse direct calls', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-routing-keys-'))
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
    writeFileSync(
      join(dir, 'signing.json'),
      JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'k1', alg: 'EdDSA' }),
    )
    writeFileSync(
      join(dir, 'verify.json'),
      JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1', alg: 'EdDSA', use: 'sig' }] }),
    )
    const backend = await startBackend({ GATEWAY_VERIFY_KEYS_FILE: join(dir, 'verify.json') })
    const gateway = await startGateway(routing([{ name: 'eu', nodes: [{ id: 'eu-1', url: backend.url }] }]), {
      BACKEND_SIGNING_KEY_FILE: join(dir, 'signing.json'),
    })
    try {
      const direct = await postJson(`${backend.url}/v1/completions`, greedy())
      assert.equal(direct.status, 401)
      assert.equal(((await direct.json()) as { error: { code: string } }).error.code, 'invalid_gateway_token')
      const through = await postJson(`${gateway.url}/v1/completions`, greedy(), auth)
      assert.equal(through.status, 200)
      const stream = await postJson(
        `${gateway.url}/v1/chat/completions`,
        { model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8, stream: true },
        auth,
      )
      assert.equal((await readSse(stream)).at(-1), '[DONE]')
      assert.ok((await nodeStatus(gateway, 'eu-1')).healthy)
      // The direct call above is refused for its missing token; nothing else may be.
      assert.doesNotMatch(
        backend.output(),
        /"reason":"(?!missing_token")[^"]+","msg":"refused/,
        'no request from the gateway was refused',
      )
    } finally {
      await gateway.stop()
      await backend.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
