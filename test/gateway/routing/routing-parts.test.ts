import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseGatewayConfig } from '../../../gateway/config/parse.ts'
import { resolveModel } from '../../../gateway/routing/aliases.ts'
import { BackendNode } from '../../../gateway/routing/backend-node.ts'
import { pickNode } from '../../../gateway/routing/balancer.ts'
import { expandNodes, startDnsDiscovery } from '../../../gateway/routing/discovery.ts'
import { RetryBudget } from '../../../gateway/routing/retry-budget.ts'
import { noopRoutingMetrics } from '../../../gateway/types.ts'

const quiet = { info() {}, warn() {}, error() {} }
const settings = parseGatewayConfig({}, { BACKEND_URL: 'http://127.0.0.1:1' }).routing
const node = (id: string, weight = 1, models: string[] | null = null) =>
  new BackendNode(id, 'eu', `http://${id}`, weight, models && new Set(models), settings, {
    metrics: noopRoutingMetrics,
    logger: quiet,
  })

describe('pickNode', () => {
  test('power of two choices prefers the less loaded of two picks, per unit of weight', () => {
    const [a, b] = [node('a'), node('b')]
    a.inFlight = 10
    const counts = { a: 0, b: 0 }
    for (let i = 0; i < 200; i++) counts[pickNode([a, b], undefined, new Set())!.id as 'a' | 'b']++
    assert.equal(counts.a, 0)
    const heavy = node('heavy', 10)
    heavy.inFlight = 5 // 6/10 per weight against 1/1
    assert.equal(pickNode([heavy, node('light')], undefined, new Set())!.id, 'heavy')
  })

  test('weights set the share of traffic when loads are equal', () => {
    const [a, b] = [node('a', 3), node('b', 1)]
    let sequence = 0
    const values = Array.from({ length: 1000 }, (_, i) => (i * 0.618034) % 1)
    const counts = { a: 0, b: 0 }
    for (let i = 0; i < 500; i++)
      counts[
        pickNode([a, b], undefined, new Set(), { random: () => values[sequence++ % values.length] })!.id as 'a' | 'b'
      ]++
    assert.ok(counts.a > counts.b * 1.5, JSON.stringify(counts))
  })

  test('only nodes that serve the model, are usable and were not tried', () => {
    const [a, b, c] = [node('a', 1, ['m1']), node('b', 1, ['m2']), node('c')]
    assert.equal(pickNode([a, b], 'm2', new Set())!.id, 'b')
    assert.equal(pickNode([a, b], 'm3', new Set()), undefined)
    assert.equal(pickNode([a, c], 'm3', new Set())!.id, 'c')
    assert.equal(pickNode([a, c], 'm1', new Set([a, c])), undefined)
    c.healthy = false
    assert.equal(pickNode([c], undefined, new Set()), undefined)
    assert.equal(
      pickNode([c], undefined, new Set(), { panic: true })!.id,
      'c',
      'panic mode tries nodes the health checks took out',
    )
    for (const n of [a, b, c]) n.shutdown()
  })
})

describe('RetryBudget', () => {
  test('retries stay under ratio × requests + the floor, over a sliding window', () => {
    let now = 1_000_000
    const budget = new RetryBudget({ budgetRatio: 0.2, budgetMinPerSecond: 0, budgetWindowSeconds: 10 }, () => now)
    for (let i = 0; i < 50; i++) budget.recordRequest()
    let granted = 0
    while (budget.tryRetry()) granted++
    assert.equal(granted, 10)
    now += 11_000 // the window slides past every request
    assert.equal(budget.tryRetry(), false)
    for (let i = 0; i < 5; i++) budget.recordRequest()
    assert.equal(budget.tryRetry(), true)
    assert.equal(budget.tryRetry(), false)
  })

  test('the floor allows a few retries when traffic is low', () => {
    const budget = new RetryBudget({ budgetRatio: 0, budgetMinPerSecond: 1, budgetWindowSeconds: 3 }, () => 5_000)
    assert.deepEqual(
      [budget.tryRetry(), budget.tryRetry(), budget.tryRetry(), budget.tryRetry()],
      [true, true, true, false],
    )
  })
})

describe('resolveModel', () => {
  const aliases = {
    stories: {
      versions: [
        { model: 'v1', weight: 90 },
        { model: 'v2', weight: 10 },
      ],
      sticky: false,
    },
    pinned: {
      versions: [
        { model: 'v1', weight: 1 },
        { model: 'v2', weight: 1 },
      ],
      sticky: true,
    },
  }
  test('weights split traffic between versions; other names pass through', () => {
    let i = 0
    const counts: Record<string, number> = {}
    for (let n = 0; n < 1000; n++) {
      const resolved = resolveModel(aliases, 'stories', 'key', () => (i++ % 100) / 100)!
      counts[resolved.model] = (counts[resolved.model] ?? 0) + 1
      assert.equal(resolved.alias, 'stories')
    }
    assert.deepEqual(counts, { v1: 900, v2: 100 })
    assert.deepEqual(resolveModel(aliases, 'plain', 'key'), { model: 'plain' })
    assert.equal(resolveModel(aliases, undefined, 'key'), undefined)
  })
  test('sticky aliases give one caller one version, and spread callers over versions', () => {
    const versions = new Set<string>()
    for (let k = 0; k < 50; k++) {
      const first = resolveModel(aliases, 'pinned', `key-${k}`)!.model
      for (let r = 0; r < 5; r++) assert.equal(resolveModel(aliases, 'pinned', `key-${k}`)!.model, first)
      versions.add(first)
    }
    assert.deepEqual([...versions].sort(), ['v1', 'v2'])
  })
})

describe('routing config', () => {
  const parse = (routing: object, env: Record<string, string> = {}) => parseGatewayConfig({ routing }, env)
  const regions = [
    { name: 'eu', fallback: ['us'], nodes: [{ id: 'eu-1', url: 'http://10.0.0.1:8000/' }] },
    { name: 'us', nodes: [{ id: 'us-1', url: 'http://10.0.1.1:8000', weight: 2, models: ['m'] }] },
  ]
  test('defaults, trailing slashes, and the gateway region from the environment', () => {
    const config = parse({ regions }, { GATEWAY_REGION: 'us' })
    assert.equal(config.routing.region, 'us')
    assert.deepEqual(config.routing.regions[0].nodes[0], { id: 'eu-1', url: 'http://10.0.0.1:8000', weight: 1 })
    assert.equal(config.routing.retry.maxAttempts, 3)
    assert.equal(parse({ regions }).routing.region, 'eu')
  })
  test('bad topologies are refused with the key named', () => {
    const bad: [object, RegExp][] = [
      [{ regions: [] }, /routing\.regions/],
      [{ regions: [{ ...regions[0], fallback: ['mars'] }] }, /unknown region mars/],
      [
        { regions: [regions[0], { ...regions[1], nodes: [{ id: 'eu-1', url: 'http://x' }] }] },
        /node id eu-1 is used twice/,
      ],
      [{ regions: [regions[1], regions[1]] }, /region us is declared twice/],
      [{ regions, region: 'ap' }, /unknown region ap/],
      [{ regions: [{ name: 'eu', nodes: [{ id: 'a', url: 'not a url' }] }] }, /url/],
      [{ regions: [{ name: 'eu', nodes: [{ id: 'a', url: 'http://x', weight: 0 }] }] }, /weight/],
      [{ regions, aliases: { s: { versions: [{ model: 'v', weight: 0 }] } } }, /weight above 0/],
      [{ regions, retry: { maxAttempts: 0 } }, /maxAttempts/],
      [{ regions, extra: true }, /extra/],
    ]
    for (const [routing, message] of bad) assert.throws(() => parse(routing), message, JSON.stringify(routing))
    assert.throws(() => parse({ regions }, { GATEWAY_REGION: 'ap' }), /GATEWAY_REGION: unknown region ap/)
    assert.throws(() => parseGatewayConfig({ routing: { regions }, backend: { url: 'http://x' } }, {}), /not both/)
    assert.throws(() => parseGatewayConfig({}, {}), /no backend/)
  })
})

describe('DNS discovery', () => {
  const routingWith = (nodes: object[]) =>
    parseGatewayConfig({ routing: { regions: [{ name: 'eu', nodes }], discovery: { intervalMs: 500 } } }, {}).routing
  test('a dns entry becomes one node per address; unresolved gives none', () => {
    const routing = routingWith([
      { id: 'pool', dns: 'backend.svc', port: 8000, models: ['m'] },
      { id: 'fixed', url: 'http://10.0.0.9:8000' },
    ])
    const nodes = expandNodes(routing.regions[0].nodes, new Map([['backend.svc', ['10.0.0.1', 'fd00::2']]]))
    assert.deepEqual(
      nodes.map((n) => [n.id, n.url, n.models]),
      [
        ['pool-10.0.0.1', 'http://10.0.0.1:8000', ['m']],
        ['pool-fd00::2', 'http://[fd00::2]:8000', ['m']],
        ['fixed', 'http://10.0.0.9:8000', undefined],
      ],
    )
    assert.deepEqual(
      expandNodes(routing.regions[0].nodes, new Map()).map((n) => n.id),
      ['fixed'],
    )
  })
  test('changes are reported; a failed lookup keeps the last addresses', async () => {
    const routing = routingWith([{ id: 'pool', dns: 'backend.svc', port: 8000 }])
    let answer: string[] | Error = ['10.0.0.1']
    const reports: string[][] = []
    const discovery = startDnsDiscovery({
      routing: () => routing,
      lookup: async () => (answer instanceof Error ? Promise.reject(answer) : answer),
      onChange: (r) => reports.push([...(r.get('backend.svc') ?? [])]),
      logger: quiet,
    })
    try {
      await discovery.refresh()
      await discovery.refresh()
      answer = ['10.0.0.2', '10.0.0.1']
      await discovery.refresh()
      answer = new Error('SERVFAIL')
      await discovery.refresh()
      assert.deepEqual(reports, [['10.0.0.1'], ['10.0.0.1', '10.0.0.2']])
    } finally {
      discovery.stop()
    }
  })
})
