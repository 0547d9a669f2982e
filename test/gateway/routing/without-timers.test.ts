import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { parseGatewayConfig } from '../../../gateway/config/parse.ts'
import { BackendNode } from '../../../gateway/routing/backend-node.ts'
import { Router } from '../../../gateway/routing/router.ts'
import { type BreakerState, noopRoutingMetrics } from '../../../gateway/types.ts'
import type { UpstreamFetch } from '../../../gateway/upstream/upstream.ts'

// Workers mode (timers: false): a timer dies there with the request that set it, so the
// breakers and health checks must move on only when maintain() is called.
const quiet = { info() {}, warn() {}, error() {} }
const routing = (extra: object = {}) =>
  parseGatewayConfig(
    {
      routing: {
        regions: [
          {
            name: 'eu',
            nodes: [
              { id: 'a', url: 'http://a' },
              { id: 'b', url: 'http://b' },
            ],
          },
        ],
        ...extra,
      },
    },
    {},
  ).routing
const fail = (node: BackendNode) => node.run(() => Promise.reject(new Error('down'))).catch(() => {})

function recordingNode(settings = routing()) {
  const transitions: BreakerState[] = []
  const metrics = {
    ...noopRoutingMetrics,
    breaker: (_: unknown, state: BreakerState, transition: boolean) => void (transition && transitions.push(state)),
  }
  const node = new BackendNode('a', 'eu', 'http://a', 1, null, settings, { metrics, logger: quiet, timers: false })
  return { node, transitions }
}

/** How many timers `make` starts (opossum calls the global setInterval / setTimeout). */
function timersStarted<T>(make: () => T): [T, number] {
  const original = { setInterval: globalThis.setInterval, setTimeout: globalThis.setTimeout }
  let started = 0
  globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
    started++
    return original.setInterval(...args)
  }) as typeof setInterval
  globalThis.setTimeout = ((...args: Parameters<typeof setTimeout>) => {
    started++
    return original.setTimeout(...args)
  }) as typeof setTimeout
  try {
    return [make(), started]
  } finally {
    Object.assign(globalThis, original)
  }
}

describe('BackendNode without timers', () => {
  test('starts no timer; an open breaker half-opens once resetTimeoutMs has passed at a maintain() call, and closes on a good trial', async () => {
    const [withTimers, started] = timersStarted(
      () => new BackendNode('t', 'eu', 'http://t', 1, null, routing(), { metrics: noopRoutingMetrics, logger: quiet }),
    )
    withTimers.shutdown()
    assert.ok(started > 0, 'by default the rolling window turns on a timer')
    const [{ node, transitions }, none] = timersStarted(() => recordingNode())
    assert.equal(none, 0, 'no timer for the rolling window')
    for (let i = 0; i < 5; i++) await fail(node)
    assert.equal(node.breakerState, 'open')
    node.maintain(Date.now() + 9_000)
    assert.equal(node.breakerState, 'open', 'not before resetTimeoutMs')
    node.maintain(Date.now() + 10_000)
    assert.equal(node.breakerState, 'half_open')
    assert.ok(node.breakerAllows)
    await node.run(async () => 'ok')
    assert.equal(node.breakerState, 'closed')
    assert.deepEqual(transitions, ['open', 'half_open', 'closed'])
    node.shutdown()
  })

  test('a failed trial opens the half-open breaker again', async () => {
    const { node, transitions } = recordingNode()
    for (let i = 0; i < 5; i++) await fail(node)
    node.maintain(Date.now() + 10_000)
    await fail(node)
    assert.equal(node.breakerState, 'open')
    assert.deepEqual(transitions, ['open', 'half_open', 'open'])
    node.shutdown()
  })

  test('maintain() rotates the rolling window: failures older than rollingWindowMs no longer count', async () => {
    const rotated = recordingNode()
    for (let i = 0; i < 4; i++) await fail(rotated.node)
    rotated.node.maintain(Date.now() + 10_000)
    await fail(rotated.node)
    assert.equal(rotated.node.breakerState, 'closed', 'one failure in the current window is under the volume threshold')
    const kept = recordingNode()
    for (let i = 0; i < 5; i++) await fail(kept.node)
    assert.equal(kept.node.breakerState, 'open', 'the same five failures within one window open it')
    for (const n of [rotated.node, kept.node]) n.shutdown()
  })
})

describe('Router without timers', () => {
  test('checks nothing until maintain(); then one round at a time, again once the interval has passed', async (t) => {
    // The clock moves only when the test says, so a loaded machine cannot make a round due early.
    t.mock.timers.enable({ apis: ['Date'], now: Date.now() })
    const checked: string[] = []
    const pending: (() => void)[] = []
    const answerAll = () =>
      pending.splice(0).forEach((answer) => {
        answer()
      })
    const upstream: UpstreamFetch = async ({ url }) => {
      checked.push(url)
      await new Promise<void>((resolve) => pending.push(resolve))
      return new Response('{"status":"ready"}')
    }
    const router = new Router(routing({ healthCheck: { intervalMs: 100, jitter: 0 } }), {
      metrics: noopRoutingMetrics,
      logger: quiet,
      upstream,
      timers: false,
    })
    await new Promise((r) => setTimeout(r, 150))
    assert.deepEqual(checked, [], 'nothing runs on its own')
    const round = router.maintain()
    assert.ok(round)
    await new Promise((r) => setTimeout(r, 0))
    assert.deepEqual(checked.sort(), ['http://a/ready', 'http://b/ready'])
    assert.equal(router.maintain(), undefined, 'one round at a time')
    answerAll()
    await round
    assert.ok(router.nodes().every((n) => n.lastCheck?.ok))
    assert.equal(router.maintain(), undefined, 'not due yet')
    t.mock.timers.tick(99)
    assert.equal(router.maintain(), undefined, 'not due before the interval')
    t.mock.timers.tick(21)
    const next = router.maintain()
    assert.ok(next, 'due again after the interval')
    await new Promise((r) => setTimeout(r, 0))
    answerAll()
    await next
    assert.equal(checked.length, 4)
    router.close()
  })
})
