import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { parse } from 'yaml'
import { parseGatewayConfig } from '../../gateway/config/parse.ts'
import { gatewayFileSchema } from '../../gateway/config/schema.ts'
import { assertOk, durationSeconds, readJson, readYaml, repoPath, requireTool, run } from './tools.ts'

// docker-compose v1.29 validates the stack (no Docker engine needed), then the merged
// config is checked for what matters: GPU or not, drain time, mounts, ports, secrets.

type Service = {
  image?: string
  runtime?: string
  environment?: Record<string, string>
  volumes?: string[]
  stop_grace_period?: string
  deploy?: { resources?: { reservations?: { devices?: unknown[] } } }
  build?: { args?: Record<string, string> }
  ports?: unknown[]
  secrets?: { source: string }[]
  networks?: Record<string, unknown>
  healthcheck?: { test?: string[] }
}
type Compose = {
  services: Record<string, Service>
  secrets: Record<string, { file: string }>
  networks: Record<string, { internal?: boolean }>
}

const BACKENDS = ['backend-eu-1', 'backend-eu-2', 'backend-us-1']
// Only the tool's own variables, and an empty env file instead of a developer's .env: the
// committed defaults are what is checked.
const env = { PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8' }
let tmp: string
const compose = (...files: string[]) => [
  '--env-file',
  join(tmp, 'empty.env'),
  ...files.flatMap((f) => ['-f', repoPath(f)]),
]

before(() => {
  requireTool('docker-compose', "Debian's docker-compose package (v1.29)")
  tmp = mkdtempSync(join(tmpdir(), 'switchyard-compose-'))
  writeFileSync(join(tmp, 'empty.env'), '')
})
after(() => rmSync(tmp, { recursive: true, force: true }))

/** v1.29 prints volumes in the short form, source:target[:ro]. */
function volumes(service: Service): { source: string; target: string; readOnly: boolean }[] {
  return (service.volumes ?? []).map((v) => {
    const [source, target, mode] = v.split(':')
    return { source, target, readOnly: mode === 'ro' }
  })
}

const configs = new Map<string, string>()
/** The merged config docker-compose prints (a fresh copy each time; one run per variant). */
function config(...files: string[]): Compose {
  const key = files.join(' + ')
  if (!configs.has(key)) {
    const result = run('docker-compose', [...compose(...files), 'config'], { env })
    assertOk(result, `docker-compose ${key} config`)
    configs.set(key, result.stdout)
  }
  return parse(configs.get(key)!) as Compose
}

describe('docker-compose', () => {
  test('both variants pass `docker-compose config -q`', () => {
    assertOk(run('docker-compose', [...compose('docker-compose.yml'), 'config', '-q'], { env }), 'docker-compose.yml')
    assertOk(
      run('docker-compose', [...compose('docker-compose.yml', 'docker-compose.cpu.yml'), 'config', '-q'], { env }),
      'docker-compose.yml + docker-compose.cpu.yml',
    )
  })

  test('the validator really refuses what v1.29 cannot run', () => {
    const bad = join(tmp, 'bad.yml')
    writeFileSync(bad, 'name: switchyard\nservices:\n  a:\n    image: x\n')
    assert.notEqual(run('docker-compose', ['-f', bad, 'config', '-q'], { env }).status, 0)
  })

  test('the GPU stack: every backend on the NVIDIA runtime with DEVICE=cuda', () => {
    const { services } = config('docker-compose.yml')
    for (const name of ['gateway', 'redis', 'prometheus', 'grafana', ...BACKENDS])
      assert.ok(services[name], `service ${name}`)
    for (const name of BACKENDS) {
      assert.equal(services[name].runtime, 'nvidia', name)
      assert.equal(services[name].environment?.DEVICE, 'cuda', name)
    }
  })

  test('the CPU override removes every GPU need', () => {
    const { services } = config('docker-compose.yml', 'docker-compose.cpu.yml')
    for (const [name, service] of Object.entries(services)) {
      assert.notEqual(service.runtime, 'nvidia', `${name} still asks for the NVIDIA runtime`)
      assert.equal(service.deploy?.resources?.reservations?.devices, undefined, `${name} still reserves devices`)
    }
    for (const name of BACKENDS) {
      assert.equal(services[name].environment?.DEVICE, 'cpu', name)
      assert.equal(
        services[name].build?.args?.ONNXRUNTIME_NODE_INSTALL,
        'skip',
        `${name}: no CUDA download in the CPU image`,
      )
      assert.match(
        services[name].build?.args?.RUNTIME_IMAGE ?? '',
        /^node:20-/,
        `${name}: CPU image on a plain Node base`,
      )
      assert.match(services[name].image ?? '', /-cpu$/, `${name}: the CPU image has its own tag`)
    }
  })

  test('backends: drain before SIGKILL, models read-only, verify keys, not published', () => {
    for (const files of [['docker-compose.yml'], ['docker-compose.yml', 'docker-compose.cpu.yml']]) {
      const { services } = config(...files)
      for (const name of BACKENDS) {
        const s = services[name]
        const drainSeconds = Number(s.environment?.DRAIN_TIMEOUT_MS ?? 30_000) / 1000
        assert.ok(
          durationSeconds(s.stop_grace_period ?? '10s') > drainSeconds,
          `${name}: stop_grace_period must exceed DRAIN_TIMEOUT_MS`,
        )
        assert.ok(volumes(s).find((v) => v.target === '/models')?.readOnly, `${name}: /models mounted read-only`)
        assert.match(s.environment?.MODEL_DIR ?? '', /^\/models(\/|$)/, `${name}: MODEL_DIR inside /models`)
        assert.equal(s.environment?.HOST, '0.0.0.0', `${name}: listens beyond loopback`)
        assert.equal(s.environment?.GATEWAY_VERIFY_KEYS_FILE, '/run/secrets/gateway_verify_keys')
        assert.ok(
          s.secrets?.some((x) => x.source === 'gateway_verify_keys'),
          `${name}: gets the verify keys`,
        )
        assert.equal(s.ports, undefined, `${name}: backends are reached through the gateway only`)
        assert.match(
          JSON.stringify(s.healthcheck?.test ?? []),
          /\/live'/,
          `${name}: health check on /live (engine progress), not /health`,
        )
        assert.deepEqual(Object.keys(s.networks ?? {}), ['internal'])
      }
    }
  })

  test('gateway: config file mounted where GATEWAY_CONFIG points, signing key, Redis, metrics port', () => {
    const { services, secrets, networks } = config('docker-compose.yml')
    const gateway = services.gateway
    const e = gateway.environment ?? {}
    const mount = volumes(gateway).find((v) => v.target === e.GATEWAY_CONFIG)
    assert.ok(mount, 'GATEWAY_CONFIG is mounted')
    assert.equal(mount.source, repoPath('infra/gateway/compose.json'))
    assert.ok(mount.readOnly)
    readJson('infra/gateway/compose.json')
    assert.equal(e.BACKEND_SIGNING_KEY_FILE, '/run/secrets/gateway_signing_key')
    assert.ok(gateway.secrets?.some((x) => x.source === 'gateway_signing_key'))
    assert.equal(e.REDIS_URL, 'redis://redis:6379')
    assert.equal(e.ADMIN_TOKEN, '', 'no admin token unless .env sets one')
    assert.equal(e.HOST, '0.0.0.0')
    assert.ok(e.GATEWAY_REGION)
    // Secrets come from files outside the repository's tracked content.
    for (const s of Object.values(secrets)) assert.ok(s.file.startsWith(`${repoPath('secrets')}/`), s.file)
    assert.equal(networks.internal.internal, true)

    const prometheus = readYaml('infra/prometheus/prometheus.yml') as {
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[]
    }
    const targets = (job: string) =>
      prometheus.scrape_configs.find((c) => c.job_name === job)?.static_configs.flatMap((c) => c.targets) ?? []
    assert.deepEqual(targets('switchyard-gateway'), [`gateway:${e.METRICS_PORT}`])
    assert.deepEqual(
      targets('switchyard-backend').sort(),
      BACKENDS.map((b) => `${b}:${services[b].environment?.PORT}`).sort(),
    )
  })

  test('the gateway accepts compose.json with its compose environment; its nodes are the backend services', (t) => {
    if (!('routing' in gatewayFileSchema.shape)) return t.skip('gateway/config/schema.ts has no routing key yet')
    const { services } = config('docker-compose.yml')
    // Loosely typed: this file must type-check before and after the routing config lands.
    const parsed = parseGatewayConfig(readJson('infra/gateway/compose.json'), {
      ...services.gateway.environment,
      ADMIN_TOKEN: 'x'.repeat(32),
    }) as unknown as {
      routing: { regions: { name: string; nodes: { id: string; url: string; models?: string[] }[] }[] }
    }
    const nodes = parsed.routing.regions.flatMap((r) => r.nodes.map((n) => ({ ...n, region: r.name })))
    assert.deepEqual(
      nodes.map((n) => new URL(n.url).host).sort(),
      BACKENDS.map((b) => `${b}:${services[b].environment?.PORT}`).sort(),
    )
    const prometheus = readYaml('infra/prometheus/prometheus.yml') as {
      scrape_configs: { job_name: string; static_configs: { targets: string[]; labels?: Record<string, string> }[] }[]
    }
    const scraped = prometheus.scrape_configs.find((c) => c.job_name === 'switchyard-backend')!.static_configs
    for (const node of nodes) {
      const service = services[new URL(node.url).hostname]
      const model = service.environment?.MODEL_DIR?.split('/').pop()
      assert.ok(!node.models || node.models.includes(model!), `${node.id} serves ${model}`)
      const target = scraped.find((c) => c.targets.includes(new URL(node.url).host))
      assert.deepEqual(
        target?.labels,
        { region: node.region, backend: node.id },
        `Prometheus labels of ${node.id} match the routing config`,
      )
    }
  })

  test('grafana gets the provisioning and the dashboard', () => {
    const { services } = config('docker-compose.yml')
    const targets = volumes(services.grafana).map((v) => `${v.source}:${v.target}`)
    assert.ok(targets.includes(`${repoPath('infra/grafana/provisioning')}:/etc/grafana/provisioning`))
    const provider = readYaml('infra/grafana/provisioning/dashboards/switchyard.yml') as {
      providers: { options: { path: string } }[]
    }
    assert.ok(targets.includes(`${repoPath('infra/grafana/dashboards')}:${provider.providers[0].options.path}`))
  })
})
