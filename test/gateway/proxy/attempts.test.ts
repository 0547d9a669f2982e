import assert from 'node:assert/strict'
import { test } from 'node:test'
import { parseGatewayConfig } from '../../../gateway/config/parse.ts'
import { Attempts } from '../../../gateway/proxy/attempts.ts'
import { Router } from '../../../gateway/routing/router.ts'
import { noopRoutingMetrics } from '../../../gateway/types.ts'
import type { UpstreamFetch } from '../../../gateway/upstream/upstream.ts'

// The tries of one request on a real Router (no timers, no health checks run): the first
// answer's tries and a stream's continuations share the tried nodes, the count and the budget.
const quiet = { info() {}, warn() {}, error() {} }
const unused: UpstreamFetch = () => Promise.reject(new Error('no request expected'))
const nodes = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `n${i + 1}`, url: `http://n${i + 1}` }))

function setup(n: number, retry: object = {}) {
  const routing = parseGatewayConfig(
    { routing: { regions: [{ name: 'eu', nodes: nodes(n) }], retry: { backoffBaseMs: 0, ...retry } } },
    {},
  ).routing
  const counted = { retries: 0, exhausted: 0, failovers: [] as string[] }
  const metrics = {
    ...noopRoutingMetrics,
    retry: () => void counted.retries++,
    retryBudgetExhausted: () => void counted.exhausted++,
    failover: (l: { scope: string }) => void counted.failovers.push(l.scope),
  }
  const router = new Router(routing, { metrics, logger: quiet, upstream: unused, timers: false })
  const attempts = () => new Attempts({ router, metrics, regions: ['eu'], deadline: performance.now() + 60_000 })
  return { router, attempts, counted }
}

test('each node is tried at most once and the first answer stops at maxAttempts', async () => {
  const { attempts, counted } = setup(5, { maxAttempts: 3 })
  const a = attempts()
  const seen = []
  for (let node = await a.next(undefined, undefined, 'node'); node; node = await a.afterFailure('node')) {
    seen.push(node.id)
    a.last = { node, outcome: 'server_error' }
  }
  assert.equal(seen.length, 3)
  assert.equal(new Set(seen).size, 3, 'no node twice')
  assert.equal(a.count, 3)
  assert.equal(counted.retries, 2)
  assert.deepEqual(counted.failovers, ['node', 'node'])
})

test('a continuation skips the nodes already tried and is not bound by maxAttempts', async () => {
  const { attempts, counted } = setup(3, { maxAttempts: 1 })
  const a = attempts()
  const first = await a.next(undefined, undefined, 'node')
  assert.ok(first)
  assert.equal(await a.afterFailure('node', 'server_error'), null, 'maxAttempts 1: no second try for the first answer')
  const continued = await a.next('stall', first, 'stream')
  assert.ok(continued && continued !== first)
  a.last = { node: continued, outcome: 'connect_error' }
  const third = await a.afterFailure('stream', 'stall')
  assert.ok(third && third !== first && third !== continued)
  assert.equal(await a.afterFailure('stream'), null, 'out of nodes')
  assert.equal(a.count, 3)
  assert.deepEqual(counted.failovers, ['stream', 'stream'])
})

test('a spent retry budget stops retries and is counted; first tries still start', async () => {
  const { attempts, counted } = setup(3, { budgetRatio: 0, budgetMinPerSecond: 0 })
  const a = attempts()
  const first = await a.next(undefined, undefined, 'node')
  assert.ok(first, 'a first try needs no budget')
  a.last = { node: first, outcome: 'server_error' }
  assert.equal(await a.afterFailure('node'), null)
  assert.equal(counted.exhausted, 1)
  assert.equal(counted.retries, 0)
})

test('no retry starts when its backoff would pass the deadline', async () => {
  const { router, counted } = setup(3, { backoffBaseMs: 1000, backoffMaxMs: 1000 })
  // Math.random() may draw a backoff of 0: a deadline already reached refuses any retry.
  const a = new Attempts({ router, metrics: { ...noopRoutingMetrics }, regions: ['eu'], deadline: performance.now() })
  const first = await a.next(undefined, undefined, 'node')
  assert.ok(first)
  assert.equal(await a.next('timeout', first, 'node'), null)
  assert.equal(a.count, 1)
  assert.equal(counted.retries, 0)
})
