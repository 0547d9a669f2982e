import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseGatewayConfig } from '../../../gateway/config/parse.ts'
import { createPromMetrics } from '../../../gateway/node/prom-metrics.ts'
import { Router } from '../../../gateway/routing/router.ts'
import type { UpstreamFetch } from '../../../gateway/upstream/upstream.ts'

// Per-node series (healthy, breaker state, in flight, tries, checks) go when the node leaves
// the topology: a pod gone from DNS, a node taken out of the config. Otherwise an alert on
// `backend_healthy == 0` fires for a pod that no longer exists, and series grow without bound.
const quiet = { info() {}, warn() {}, error() {} }
const routingOf = (routing: object) =>
  parseGatewayConfig({ routing: { healthCheck: { intervalMs: 100, jitter: 0, unhealthyAfter: 1 }, ...routing } }, {})
    .routing
const discovered = routingOf({ regions: [{ name: 'eu', nodes: [{ id: 'pods', dns: 'backend.test', port: 8000 }] }] })
/** Pod 10.0.0.2 fails its checks; the others pass. */
const upstream: UpstreamFetch = async ({ url }) =>
  url.includes('10.0.0.2') ? new Response('down', { status: 500 }) : new Response('{"status":"ready"}')

/** The values of one metric, by its `backend` label. */
async function seriesOf(metrics: ReturnType<typeof createPromMetrics>, name: string): Promise<Map<string, number>> {
  const text = (await metrics.render())!.body
  const out = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}\\{[^}]*backend="([^"]+)"[^}]*\\} (\\S+)$`).exec(line)
    if (m) out.set(m[1], (out.get(m[1]) ?? 0) + Number(m[2]))
  }
  return out
}

async function checkRound(router: Router) {
  await router.maintain()
}

describe('per-node metrics when nodes leave', () => {
  test('a pod gone from DNS loses its healthy, breaker, in-flight, attempt and check series', async () => {
    const metrics = createPromMetrics({ defaultMetrics: false })
    const router = new Router(discovered, { metrics: metrics.routing, logger: quiet, upstream, timers: false })
    router.setDiscovered(new Map([['backend.test', ['10.0.0.1', '10.0.0.2']]]))
    await checkRound(router)
    const gone = router.nodes().find((n) => n.id === 'pods-10.0.0.2')!
    // A try still running on the pod when it leaves.
    let finish!: () => void
    const late = gone.run(() => new Promise<void>((resolve) => (finish = resolve)))
    metrics.routing.attempt({ ...gone.labels, outcome: 'ok' })
    assert.equal(
      (await seriesOf(metrics, 'switchyard_gateway_backend_healthy')).get('pods-10.0.0.2'),
      0,
      'the pod was unhealthy',
    )

    router.setDiscovered(new Map([['backend.test', ['10.0.0.1']]]))
    for (const name of [
      'switchyard_gateway_backend_healthy',
      'switchyard_gateway_breaker_state',
      'switchyard_gateway_backend_in_flight',
      'switchyard_gateway_upstream_attempts_total',
      'switchyard_gateway_health_checks_total',
    ]) {
      const series = await seriesOf(metrics, name)
      assert.equal(series.has('pods-10.0.0.2'), false, `${name} still has the pod that left`)
    }
    assert.equal(
      (await seriesOf(metrics, 'switchyard_gateway_backend_healthy')).get('pods-10.0.0.1'),
      1,
      'the pod that stayed keeps its series',
    )

    // The try finishing late, and the tries recorded after it, do not bring the series back.
    finish()
    await late
    metrics.routing.attempt({ ...gone.labels, outcome: 'ok' })
    gone.checked(false, 'late check')
    assert.equal((await seriesOf(metrics, 'switchyard_gateway_upstream_attempts_total')).has('pods-10.0.0.2'), false)
    assert.equal((await seriesOf(metrics, 'switchyard_gateway_backend_in_flight')).has('pods-10.0.0.2'), false)
    assert.equal((await seriesOf(metrics, 'switchyard_gateway_backend_healthy')).has('pods-10.0.0.2'), false)

    // The address coming back is a new node with series of its own.
    router.setDiscovered(new Map([['backend.test', ['10.0.0.1', '10.0.0.2']]]))
    assert.ok((await seriesOf(metrics, 'switchyard_gateway_backend_healthy')).has('pods-10.0.0.2'))
    router.close()
  })

  test('a config reload drops a removed node, and keeps the series of one only re-weighted', async () => {
    const metrics = createPromMetrics({ defaultMetrics: false })
    const two = (weightA: number) =>
      routingOf({
        regions: [
          {
            name: 'eu',
            nodes: [
              { id: 'a', url: 'http://a', weight: weightA },
              { id: 'b', url: 'http://b' },
            ],
          },
        ],
      })
    const router = new Router(two(1), { metrics: metrics.routing, logger: quiet, upstream, timers: false })
    await checkRound(router)
    router.update(two(5))
    assert.deepEqual([...(await seriesOf(metrics, 'switchyard_gateway_backend_healthy')).keys()].sort(), ['a', 'b'])
    router.update(routingOf({ regions: [{ name: 'eu', nodes: [{ id: 'a', url: 'http://a' }] }] }))
    assert.deepEqual([...(await seriesOf(metrics, 'switchyard_gateway_backend_healthy')).keys()], ['a'])
    assert.deepEqual([...(await seriesOf(metrics, 'switchyard_gateway_breaker_state')).keys()], ['a'])
    router.close()
  })
})

describe('key id label cardinality', () => {
  test('requests_total and tokens_total label at most keyIdLabels key ids; the rest count as (other)', async () => {
    const metrics = createPromMetrics({ defaultMetrics: false, keyIdLabels: 3 })
    for (let i = 0; i < 50; i++) {
      metrics.request({ route: '/v1/completions', status: 200, keyId: `key-${i}` }, 0.01)
      metrics.tokens({ keyId: `key-${i}`, kind: 'prompt' }, 2)
    }
    metrics.request({ route: '/v1/completions', status: 200, keyId: 'key-1' }, 0.01)
    const body = (await metrics.render())!.body
    const keyIds = (name: string) =>
      new Set([...body.matchAll(new RegExp(`^${name}\\{[^}]*key_id="([^"]+)"`, 'gm'))].map((m) => m[1]))
    assert.deepEqual([...keyIds('switchyard_gateway_requests_total')].sort(), ['(other)', 'key-0', 'key-1', 'key-2'])
    assert.deepEqual([...keyIds('switchyard_gateway_tokens_total')].sort(), ['(other)', 'key-0', 'key-1', 'key-2'])
    assert.match(
      body,
      /switchyard_gateway_requests_total\{route="\/v1\/completions",status="200",key_id="\(other\)"\} 47/,
    )
    assert.match(body, /switchyard_gateway_requests_total\{route="\/v1\/completions",status="200",key_id="key-1"\} 2/)
    assert.match(body, /switchyard_gateway_tokens_total\{key_id="\(other\)",kind="prompt"\} 94/)
  })

  test('the config default bounds it, 0 labels no key, and bad values are refused', () => {
    assert.equal(parseGatewayConfig({ backend: { url: 'http://a' } }, {}).metrics.keyIdLabels, 100)
    assert.throws(
      () => parseGatewayConfig({ backend: { url: 'http://a' }, metrics: { keyIdLabels: -1 } }, {}),
      /metrics\.keyIdLabels/,
    )
    assert.throws(
      () => parseGatewayConfig({ backend: { url: 'http://a' }, metrics: { keyIdLabels: 'all' } }, {}),
      /metrics\.keyIdLabels/,
    )
    const none = createPromMetrics({ defaultMetrics: false, keyIdLabels: 0 })
    none.request({ route: '/v1/completions', status: 200, keyId: 'key-0' }, 0.01)
    return none.render().then((r) => assert.doesNotMatch(r!.body, /key-0/))
  })
})
