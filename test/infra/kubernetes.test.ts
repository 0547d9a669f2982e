import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { parseGatewayConfig } from '../../gateway/config/parse.ts'
import { gatewayFileSchema } from '../../gateway/config/schema.ts'
import { assertOk, type K8sObject, readYaml, repoPath, requireTool, run, yamlDocuments } from './tools.ts'

// Renders every kustomization with `kubectl kustomize`, checks every object against the
// Kubernetes schemas (kubernetes-models: types and required fields; the TypeScript compiler
// on the same interfaces: misspelt field names), then what the deployment depends on.

const OVERLAYS = readdirSync(repoPath('infra/k8s/overlays'))
const CRD_GROUP = 'monitoring.coreos.com/v1'
const rendered = new Map<string, K8sObject[]>()
let typecheckDir: string

before(() => {
  typecheckDir = mkdtempSync(join(tmpdir(), 'switchyard-k8s-types-'))
  requireTool('kubectl', 'the kubectl package (preinstalled on the CI machine; `kubectl kustomize` works offline)')
  for (const dir of ['base', ...OVERLAYS.map((o) => `overlays/${o}`)]) {
    const result = run('kubectl', ['kustomize', repoPath('infra/k8s', dir)])
    assertOk(result, `kubectl kustomize infra/k8s/${dir}`)
    rendered.set(dir, yamlDocuments(result.stdout))
  }
})
after(() => rmSync(typecheckDir, { recursive: true, force: true }))

const find = (objects: K8sObject[], kind: string, name: string): K8sObject => {
  const found = objects.find((o) => o.kind === kind && o.metadata.name === name)
  assert.ok(found, `${kind}/${name} is rendered`)
  return found
}
const matches = (selector: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  Boolean(selector && Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels?.[k] === v))
const workloads = (objects: K8sObject[]) => objects.filter((o) => ['Deployment', 'StatefulSet'].includes(o.kind))
/** Plain env values by name ('' for values taken from a Secret). */
const envOf = (container: { env?: { name: string; value?: string }[] }): Record<string, string> =>
  Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? '']))

/** Writes a .ts file typing each object as its kubernetes-models interface; returns tsc's result. */
function typecheck(name: string, objects: K8sObject[]) {
  const dir = join(typecheckDir, name)
  mkdirSync(dir, { recursive: true })
  const lines = objects.map((o, i) => {
    const module = `kubernetes-models/${o.apiVersion}/${o.kind}`
    return `import type { I${o.kind} as T${i} } from '${module}'\nexport const o${i}: T${i} = ${JSON.stringify(o)}\n`
  })
  writeFileSync(join(dir, 'manifests.ts'), lines.join(''))
  const paths = { 'kubernetes-models/*': [repoPath('node_modules/kubernetes-models/*')] }
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        skipLibCheck: true,
        types: [],
        paths,
      },
      files: ['manifests.ts'],
    }),
  )
  return run(repoPath('node_modules/.bin/tsc'), ['-p', join(dir, 'tsconfig.json')])
}

describe('Kubernetes manifests (kustomize)', () => {
  test('there is an overlay per region', () => {
    assert.deepEqual([...OVERLAYS].sort(), ['eu', 'us'])
  })

  test('every built-in object passes the kubernetes-models schema', async () => {
    for (const [dir, objects] of rendered) {
      for (const o of objects) {
        if (o.apiVersion === CRD_GROUP) continue // Prometheus Operator CRDs: checked structurally below
        const module = (await import(`kubernetes-models/${o.apiVersion}`)) as Record<
          string,
          new (
            data: unknown,
          ) => { validate(): void }
        >
        assert.ok(module[o.kind], `${dir}: kubernetes-models has no ${o.apiVersion} ${o.kind}`)
        assert.doesNotThrow(() => new module[o.kind](o).validate(), `${dir}: ${o.kind}/${o.metadata.name}`)
      }
    }
  })

  test('no misspelt or unknown fields (TypeScript excess-property check)', () => {
    for (const [dir, objects] of rendered) {
      const result = typecheck(
        dir.replace('/', '-'),
        objects.filter((o) => o.apiVersion !== CRD_GROUP),
      )
      assertOk(result, `type check of ${dir}`)
    }
  })

  test('the field check really catches a misspelt field', () => {
    const deployment = structuredClone(find(rendered.get('base')!, 'Deployment', 'switchyard-backend'))
    const container = deployment.spec.template.spec.containers[0]
    container.readinesProbe = container.readinessProbe
    delete container.readinessProbe
    const result = typecheck('negative', [deployment])
    assert.notEqual(result.status, 0)
    assert.match(result.stdout, /readinesProbe/)
  })

  for (const region of OVERLAYS) {
    describe(`overlay ${region}`, () => {
      const objects = () => rendered.get(`overlays/${region}`)!

      test('everything lives in the region namespace', () => {
        find(objects(), 'Namespace', `switchyard-${region}`)
        for (const o of objects())
          if (o.kind !== 'Namespace')
            assert.equal(o.metadata.namespace, `switchyard-${region}`, `${o.kind}/${o.metadata.name}`)
      })

      test('backend: readiness /ready, liveness and startup /live (engine progress), drain on preStop and grace period, GPU', () => {
        const backend = find(objects(), 'Deployment', 'switchyard-backend').spec.template.spec
        const container = backend.containers.find((c: { name: string }) => c.name === 'backend')
        assert.equal(container.readinessProbe.httpGet.path, '/ready')
        assert.equal(container.livenessProbe.httpGet.path, '/live')
        assert.equal(container.startupProbe.httpGet.path, '/live')
        const preStop = container.lifecycle?.preStop?.exec?.command as string[] | undefined
        assert.ok(preStop, 'preStop hook')
        const preStopSeconds = preStop[0] === 'sleep' ? Number(preStop[1]) : 0
        const drainSeconds = Number(envOf(container).DRAIN_TIMEOUT_MS ?? 30_000) / 1000
        assert.ok(
          backend.terminationGracePeriodSeconds > preStopSeconds + drainSeconds,
          `grace ${backend.terminationGracePeriodSeconds} s must exceed preStop ${preStopSeconds} s + drain ${drainSeconds} s`,
        )
        assert.equal(String(container.resources.limits['nvidia.com/gpu']), '1')
        assert.ok(backend.tolerations.some((t: { key: string }) => t.key === 'nvidia.com/gpu'))
        assert.equal(envOf(container).DEVICE, 'cuda')
        assert.equal(envOf(container).HOST, '0.0.0.0')
      })

      test('backend: models from a read-only PVC, verify keys only', () => {
        const spec = find(objects(), 'Deployment', 'switchyard-backend').spec.template.spec
        const container = spec.containers[0]
        const models = spec.volumes.find((v: { persistentVolumeClaim?: unknown }) => v.persistentVolumeClaim)
        assert.ok(models.persistentVolumeClaim.readOnly)
        find(objects(), 'PersistentVolumeClaim', models.persistentVolumeClaim.claimName)
        const mount = container.volumeMounts.find((m: { name: string }) => m.name === models.name)
        assert.ok(mount.readOnly)
        assert.ok(envOf(container).MODEL_DIR.startsWith(mount.mountPath))
        const keys = spec.volumes.find((v: { secret?: unknown }) => v.secret)
        assert.deepEqual(
          keys.secret.items.map((i: { key: string }) => i.key),
          ['gateway-verify-keys.json'],
          'never the private key',
        )
        const keysMount = container.volumeMounts.find((m: { name: string }) => m.name === keys.name)
        assert.equal(envOf(container).GATEWAY_VERIFY_KEYS_FILE, `${keysMount.mountPath}/gateway-verify-keys.json`)
      })

      test('every container runs as non-root, read-only, without privileges', () => {
        for (const w of workloads(objects())) {
          const pod = w.spec.template.spec
          assert.equal(pod.automountServiceAccountToken, false, w.metadata.name)
          for (const c of pod.containers) {
            const runAsNonRoot = c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot
            const uid = c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser
            assert.equal(runAsNonRoot, true, `${w.metadata.name}/${c.name}: runAsNonRoot`)
            assert.ok(Number.isInteger(uid) && uid > 0, `${w.metadata.name}/${c.name}: numeric non-root uid`)
            assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${w.metadata.name}/${c.name}`)
            assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${w.metadata.name}/${c.name}`)
            assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL'], `${w.metadata.name}/${c.name}`)
          }
        }
      })

      test('only gateway pods (and Prometheus, for /metrics) reach the backends', () => {
        const backendPod = find(objects(), 'Deployment', 'switchyard-backend').spec.template.metadata.labels
        const gatewayPod = find(objects(), 'Deployment', 'switchyard-gateway').spec.template.metadata.labels
        const namespace = find(objects(), 'Namespace', `switchyard-${region}`).metadata.labels
        const policies = objects().filter(
          (o) => o.kind === 'NetworkPolicy' && matches(o.spec.podSelector.matchLabels, backendPod),
        )
        assert.equal(policies.length, 1, 'one NetworkPolicy selects the backend pods')
        const policy = policies[0].spec
        assert.deepEqual(policy.policyTypes, ['Ingress'])
        const peers = policy.ingress.flatMap((rule: { from?: unknown[] }) => {
          assert.ok(rule.from && rule.from.length > 0, 'a rule without `from` admits everyone')
          return rule.from
        }) as {
          podSelector?: { matchLabels: Record<string, string> }
          namespaceSelector?: { matchLabels: Record<string, string> }
          ipBlock?: unknown
        }[]
        for (const peer of peers) {
          assert.equal(peer.ipBlock, undefined)
          assert.ok(
            peer.podSelector && Object.keys(peer.podSelector.matchLabels ?? {}).length > 0,
            'every peer names its pods',
          )
          const isGateway =
            matches(peer.podSelector.matchLabels, gatewayPod) && matches(peer.namespaceSelector?.matchLabels, namespace)
          const isPrometheus =
            peer.namespaceSelector?.matchLabels?.['kubernetes.io/metadata.name'] === 'monitoring' &&
            peer.podSelector.matchLabels['app.kubernetes.io/name'] === 'prometheus'
          assert.ok(isGateway || isPrometheus, `unexpected peer ${JSON.stringify(peer)}`)
        }
        assert.ok(
          peers.some((p) => matches(p.podSelector?.matchLabels, gatewayPod)),
          'the gateway is admitted',
        )
        const redisPod = find(objects(), 'StatefulSet', 'switchyard-redis').spec.template.metadata.labels
        const redisPolicy = objects().find(
          (o) => o.kind === 'NetworkPolicy' && matches(o.spec.podSelector.matchLabels, redisPod),
        )
        assert.ok(redisPolicy, 'Redis has a NetworkPolicy')
        for (const rule of redisPolicy.spec.ingress)
          for (const peer of rule.from) assert.ok(matches(peer.podSelector.matchLabels, gatewayPod))
      })

      test('Services, HPAs and PDBs point at what exists', () => {
        const pods = workloads(objects())
        for (const svc of objects().filter((o) => o.kind === 'Service')) {
          const target = pods.find((w) => matches(svc.spec.selector, w.spec.template.metadata.labels))
          assert.ok(target, `Service ${svc.metadata.name} selects pods`)
          const ports = target.spec.template.spec.containers.flatMap((c: { ports?: { name: string }[] }) =>
            (c.ports ?? []).map((p) => p.name),
          )
          for (const p of svc.spec.ports)
            assert.ok(ports.includes(p.targetPort), `Service ${svc.metadata.name} port ${p.name} -> ${p.targetPort}`)
        }
        for (const pdb of objects().filter((o) => o.kind === 'PodDisruptionBudget')) {
          assert.ok(
            pods.some((w) => matches(pdb.spec.selector.matchLabels, w.spec.template.metadata.labels)),
            `PDB ${pdb.metadata.name}`,
          )
        }
        for (const hpa of objects().filter((o) => o.kind === 'HorizontalPodAutoscaler')) {
          const target = find(objects(), hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name)
          assert.equal(target.spec.replicas, undefined, `${target.metadata.name}: replicas belong to the HPA`)
        }
        const backendHpa = find(objects(), 'HorizontalPodAutoscaler', 'switchyard-backend')
        assert.deepEqual(
          backendHpa.spec.metrics.map((m: { type: string; pods?: { metric: { name: string } } }) => [
            m.type,
            m.pods?.metric.name,
          ]),
          [['Pods', 'switchyard_backend_queue_depth']],
        )
        assert.ok(backendHpa.spec.minReplicas >= 2 && backendHpa.spec.maxReplicas >= backendHpa.spec.minReplicas)
      })

      test('gateway: its region, config map and signing key; nodes are the pods of headless backend Services', () => {
        const deployment = find(objects(), 'Deployment', 'switchyard-gateway').spec.template.spec
        const container = deployment.containers[0]
        const env = envOf(container)
        assert.equal(env.GATEWAY_REGION, region)
        assert.equal(container.readinessProbe.httpGet.path, '/ready')
        assert.equal(container.livenessProbe.httpGet.path, '/health')
        const configVolume = deployment.volumes.find((v: { configMap?: unknown }) => v.configMap)
        const configMap = find(objects(), 'ConfigMap', configVolume.configMap.name)
        const mount = container.volumeMounts.find((m: { name: string }) => m.name === configVolume.name)
        const file = env.GATEWAY_CONFIG.slice(mount.mountPath.length + 1)
        const config = JSON.parse(configMap.data![file]) as {
          routing: { regions: { name: string; nodes: { dns?: string; port?: number }[] }[] }
        }
        assert.ok(
          config.routing.regions.some((r) => r.name === region),
          `region ${region} is in the routing config`,
        )
        const keys = deployment.volumes.find((v: { secret?: unknown }) => v.secret)
        assert.deepEqual(
          keys.secret.items.map((i: { key: string }) => i.key),
          ['gateway-signing-key.json'],
        )
        // Every node entry names a headless backend Service of some overlay, on its port, so
        // the gateway sees each pod as a node.
        for (const node of config.routing.regions.flatMap((r) => r.nodes)) {
          assert.ok(node.dns && node.port, `${JSON.stringify(node)}: nodes are discovered by DNS`)
          const [service, namespace] = node.dns.split('.')
          const owner = [...rendered.entries()]
            .filter(([dir]) => dir.startsWith('overlays/'))
            .flatMap(([, objs]) => objs)
          const svc = owner.find(
            (o) => o.kind === 'Service' && o.metadata.name === service && o.metadata.namespace === namespace,
          )
          assert.ok(svc, `${node.dns}: no Service ${service} in namespace ${namespace}`)
          assert.equal(svc.spec.clusterIP, 'None', `${node.dns}: the Service is headless`)
          assert.ok(
            svc.spec.ports.some((p: { port: number }) => p.port === node.port),
            `${node.dns}: port`,
          )
        }
      })

      test('the gateway accepts its config with the environment of its Deployment', (t) => {
        if (!('routing' in gatewayFileSchema.shape)) return t.skip('gateway/config/schema.ts has no routing key yet')
        const deployment = find(objects(), 'Deployment', 'switchyard-gateway').spec.template.spec
        const container = deployment.containers[0]
        // Secrets get stand-ins of the right shape; $(VAR) references expand as the kubelet does.
        const env: Record<string, string> = {}
        for (const e of container.env as { name: string; value?: string; valueFrom?: unknown }[]) {
          env[e.name] = e.valueFrom
            ? e.name === 'ADMIN_TOKEN'
              ? 'x'.repeat(32)
              : '0123abcd'
            : (e.value ?? '').replace(/\$\((\w+)\)/g, (_, name: string) => env[name] ?? '')
        }
        const configMap = find(
          objects(),
          'ConfigMap',
          deployment.volumes.find((v: { configMap?: unknown }) => v.configMap).configMap.name,
        )
        const parsed = parseGatewayConfig(JSON.parse(configMap.data!['gateway.json']), env) as unknown as {
          routing: { region: string; regions: { name: string; nodes: { url: string; models?: string[] }[] }[] }
        }
        assert.equal(parsed.routing.region, region)
        const backend = find(objects(), 'Deployment', 'switchyard-backend').spec.template.spec.containers[0]
        const model = envOf(backend).MODEL_DIR.split('/').pop() ?? ''
        const local = parsed.routing.regions.find((r) => r.name === region)!
        for (const node of local.nodes)
          assert.ok(!node.models || node.models.includes(model), `${node.url} serves ${model}`)
      })

      test('no Secret is applied; every reference names a key of the documented Secret', () => {
        assert.deepEqual(
          objects().filter((o) => o.kind === 'Secret'),
          [],
          'the operator creates the Secret',
        )
        const secret = find(rendered.get('base')!, 'Secret', 'switchyard-secrets')
        for (const w of workloads(objects())) {
          const pod = w.spec.template.spec
          const refs = [
            ...pod.containers.flatMap(
              (c: { env?: { valueFrom?: { secretKeyRef?: { name: string; key: string } } }[] }) =>
                (c.env ?? []).flatMap((e) => (e.valueFrom?.secretKeyRef ? [e.valueFrom.secretKeyRef] : [])),
            ),
            ...(pod.volumes ?? []).flatMap((v: { secret?: { secretName: string; items: { key: string }[] } }) =>
              v.secret ? v.secret.items.map((i) => ({ name: v.secret!.secretName, key: i.key })) : [],
            ),
          ]
          for (const ref of refs) {
            assert.equal(ref.name, secret.metadata.name, w.metadata.name)
            assert.ok(ref.key in (secret.stringData ?? {}), `${w.metadata.name}: secret key ${ref.key}`)
          }
        }
      })

      test('ServiceMonitors select the Services and ports that serve /metrics', () => {
        const monitors = objects().filter((o) => o.kind === 'ServiceMonitor')
        assert.deepEqual(monitors.map((m) => m.metadata.name).sort(), ['switchyard-backend', 'switchyard-gateway'])
        for (const monitor of monitors) {
          assert.equal(monitor.apiVersion, CRD_GROUP)
          const services = objects().filter(
            (o) => o.kind === 'Service' && matches(monitor.spec.selector.matchLabels, o.metadata.labels),
          )
          assert.equal(services.length, 1, `${monitor.metadata.name} selects one Service`)
          // Prometheus names the job after the Service: the rules and the dashboard use these.
          assert.equal(services[0].metadata.name, monitor.metadata.name)
          for (const endpoint of monitor.spec.endpoints) {
            assert.equal(endpoint.path, '/metrics')
            assert.ok(
              services[0].spec.ports.some((p: { name: string }) => p.name === endpoint.port),
              `${monitor.metadata.name}: port ${endpoint.port}`,
            )
          }
        }
        const relabel = find(objects(), 'ServiceMonitor', 'switchyard-backend').spec.endpoints[0].relabelings[0]
        const label = relabel.sourceLabels[0].replace('__meta_kubernetes_service_label_', '')
        const service = find(objects(), 'Service', 'switchyard-backend')
        const source = Object.keys(service.metadata.labels ?? {}).find(
          (k) => k.replace(/[^a-zA-Z0-9_]/g, '_') === label,
        )
        assert.ok(source, `the backend Service carries the label ${label} relabels from`)
        assert.equal(service.metadata.labels?.[source], region)
      })

      test('the PrometheusRule carries the rules file', () => {
        const rule = find(objects(), 'PrometheusRule', 'switchyard')
        assert.equal(rule.apiVersion, CRD_GROUP)
        assert.deepEqual(
          rule.spec.groups,
          (readYaml('infra/prometheus/rules/switchyard.rules.yml') as { groups: unknown }).groups,
        )
      })
    })
  }

  test('the base Secret holds placeholders only', () => {
    const secrets = rendered.get('base')!.filter((o) => o.kind === 'Secret')
    assert.equal(secrets.length, 1)
    assert.equal(secrets[0].data, undefined, 'no base64 data: stringData placeholders only')
    for (const [key, value] of Object.entries(secrets[0].stringData ?? {})) assert.equal(value, 'REPLACE-ME', key)
  })

  test('probes in the base use real paths; gateways outlast backend drains', () => {
    const base = rendered.get('base')!
    for (const w of workloads(base)) {
      for (const c of w.spec.template.spec.containers) {
        for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe].filter(Boolean)) {
          if (probe.httpGet)
            assert.ok(
              ['/health', '/live', '/ready'].includes(probe.httpGet.path),
              `${w.metadata.name}: ${probe.httpGet.path}`,
            )
        }
      }
    }
    // Streams through the gateway outlive a backend drain.
    const backend = find(base, 'Deployment', 'switchyard-backend').spec.template.spec.terminationGracePeriodSeconds
    assert.ok(
      find(base, 'Deployment', 'switchyard-gateway').spec.template.spec.terminationGracePeriodSeconds >= backend,
    )
  })
})
