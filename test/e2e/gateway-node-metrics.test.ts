import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { test } from 'node:test'
import { startFakeNode } from '../helpers/fake-node.ts'
import { ADMIN_TOKEN, startGateway } from '../helpers/gateway-process.ts'

// End to end on a gateway process: a node that fails its health checks shows
// backend_healthy 0 (what SwitchyardBackendUnhealthy alerts on); once a config reload takes it
// out, its series are gone from /metrics instead of alerting until the gateway restarts.
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
async function until(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(50)
  }
}

test('a node removed by a config reload loses its per-node series in /metrics', async () => {
  // 'fail' answers /ready 200 (healthy); 'hang' never answers (its checks time out).
  const [kept, dying] = await Promise.all([startFakeNode('fail'), startFakeNode('hang')])
  const routing = (nodes: object[]) => ({
    routing: {
      regions: [{ name: 'eu', nodes }],
      healthCheck: { intervalMs: 200, jitter: 0, timeoutMs: 100, unhealthyAfter: 1 },
    },
  })
  const both = routing([
    { id: 'kept', url: kept.url },
    { id: 'dying', url: dying.url },
  ])
  const gateway = await startGateway(both)
  const metrics = async () =>
    (await fetch(`${gateway.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).text()
  try {
    await until('the dying node is unhealthy', async () =>
      /switchyard_gateway_backend_healthy\{region="eu",backend="dying"\} 0/.test(await metrics()),
    )
    writeFileSync(gateway.configPath, JSON.stringify(routing([{ id: 'kept', url: kept.url }])))
    gateway.child.kill('SIGHUP')
    await until('reload', async () => /configuration reloaded/.test(gateway.output()))
    const text = await metrics()
    assert.doesNotMatch(text, /backend="dying"/, 'no series of the removed node')
    assert.match(text, /switchyard_gateway_backend_healthy\{region="eu",backend="kept"\} 1/)
    assert.match(text, /switchyard_gateway_breaker_state\{region="eu",backend="kept"\} 0/)
  } finally {
    await gateway.stop()
    await Promise.all([kept.stop(), dying.stop()])
  }
})
