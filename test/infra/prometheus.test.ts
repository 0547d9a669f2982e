import assert from 'node:assert/strict'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { parse, stringify } from 'yaml'
import { assertOk, readJson, readText, readYaml, repoPath, requireTool, run } from './tools.ts'

// promtool checks the Prometheus config, the alert rules and their unit tests, and every
// PromQL expression of the Grafana dashboard. The metric names they use must be ones the
// code exports. The PrometheusRule for Kubernetes must carry exactly the same rules:
// UPDATE_PROMETHEUS_RULE=1 rewrites it from the rules file.

const RULES = 'infra/prometheus/rules/switchyard.rules.yml'
const RULE_TESTS = 'infra/prometheus/rules/switchyard.rules.test.yml'
const PROMETHEUS_RULE = 'infra/k8s/base/prometheus-rule.yaml'
const DASHBOARD = 'infra/grafana/dashboards/switchyard.json'

type Rule = {
  alert?: string
  record?: string
  expr: string
  for?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
}
type Groups = { groups: { name: string; rules: Rule[] }[] }
type Panel = {
  id: number
  type: string
  title: string
  datasource?: { uid: string }
  targets?: { expr: string; refId: string }[]
  panels?: Panel[]
  gridPos: { x: number; w: number }
}

let tmp: string
before(() => {
  requireTool('promtool', "Debian's prometheus package")
  tmp = mkdtempSync(join(tmpdir(), 'switchyard-promtool-'))
})
after(() => rmSync(tmp, { recursive: true, force: true }))

const alerts = () => (readYaml(RULES) as Groups).groups.flatMap((g) => g.rules)

/** Every metric name the code registers (prom-client `name: '...'`), histograms with their series. */
function exportedMetrics(): Set<string> {
  const names = new Set(['up'])
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    )
  for (const file of [...walk(repoPath('backend')), ...walk(repoPath('gateway'))]) {
    for (const [, name] of readFileSync(file, 'utf8').matchAll(/name: '(switchyard_[a-z0-9_]+)'/g)) {
      for (const suffix of ['', '_bucket', '_sum', '_count']) names.add(name + suffix)
    }
  }
  return names
}
const metricsIn = (expr: string) =>
  [...expr.replace(/"[^"]*"/g, '""').matchAll(/\b(switchyard_[a-z0-9_]+|up)\b/g)].map((m) => m[1])

/** Grafana's variables, replaced by values Prometheus accepts, so promtool can parse the query. */
const grafanaToPromql = (expr: string) =>
  expr
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replaceAll('$region', '.*')

function dashboardPanels(): Panel[] {
  const dashboard = readJson(DASHBOARD) as { panels: Panel[] }
  return dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])])
}

/** Each expression as a recording rule: `promtool check rules` parses and type-checks it. */
function checkExpressions(exprs: { name: string; expr: string }[]) {
  const file = join(tmp, `exprs-${Math.random().toString(36).slice(2)}.yml`)
  writeFileSync(
    file,
    stringify({ groups: [{ name: 'dashboard', rules: exprs.map((e) => ({ record: e.name, expr: e.expr })) }] }),
  )
  return run('promtool', ['check', 'rules', file])
}

describe('Prometheus and Grafana', () => {
  test('promtool check config (rule files resolve beside the config)', () => {
    assertOk(run('promtool', ['check', 'config', repoPath('infra/prometheus/prometheus.yml')]), 'promtool check config')
  })

  test('promtool check rules', () => {
    assertOk(run('promtool', ['check', 'rules', repoPath(RULES)]), 'promtool check rules')
  })

  test('promtool test rules: the unit tests pass', () => {
    const result = run('promtool', ['test', 'rules', repoPath(RULE_TESTS)])
    assertOk(result, 'promtool test rules')
    assert.match(result.stdout, /SUCCESS/)
  })

  test('every alert has a test where it fires, and stays silent on the healthy stack', () => {
    const tests = (
      readYaml(RULE_TESTS) as {
        tests: { name: string; alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[]
      }
    ).tests
    const healthy = tests.find((t) => t.name === 'a healthy stack fires nothing')
    assert.ok(healthy, 'a healthy-stack test')
    for (const rule of alerts()) {
      assert.ok(rule.alert, 'alerting rules only')
      assert.ok(['warning', 'critical'].includes(rule.labels?.severity ?? ''), `${rule.alert}: severity`)
      assert.ok(rule.annotations?.summary && rule.annotations.description, `${rule.alert}: summary and description`)
      const fires = tests.some((t) =>
        t.alert_rule_test?.some((a) => a.alertname === rule.alert && a.exp_alerts.length > 0),
      )
      assert.ok(fires, `${rule.alert} has no test where it fires`)
      assert.ok(
        healthy.alert_rule_test?.some((a) => a.alertname === rule.alert && a.exp_alerts.length === 0),
        `${rule.alert} is not checked on the healthy stack`,
      )
    }
    const names = alerts().map((r) => r.alert)
    for (const wanted of [
      'SwitchyardBackendDown',
      'SwitchyardBreakerOpen',
      'SwitchyardHighErrorRate',
      'SwitchyardHighLatencyP99',
      'SwitchyardQueueSaturated',
      'SwitchyardRedisDown',
      'SwitchyardRetryBudgetExhausted',
    ]) {
      assert.ok(names.includes(wanted), `alert ${wanted}`)
    }
  })

  test('the PrometheusRule carries exactly the rules file', () => {
    const rules = readYaml(RULES) as Groups
    const current = readYaml(PROMETHEUS_RULE) as { kind: string; spec: Groups }
    if (process.env.UPDATE_PROMETHEUS_RULE === '1') {
      const header = readText(PROMETHEUS_RULE)
        .split('\n')
        .filter((l) => l.startsWith('#'))
      const body = stringify(
        {
          apiVersion: 'monitoring.coreos.com/v1',
          kind: 'PrometheusRule',
          metadata: { name: 'switchyard' },
          spec: { groups: rules.groups },
        },
        { lineWidth: 0 },
      )
      writeFileSync(repoPath(PROMETHEUS_RULE), `${header.join('\n')}\n${body}`)
      return
    }
    assert.equal(current.kind, 'PrometheusRule')
    assert.deepEqual(
      current.spec.groups,
      rules.groups,
      `${PROMETHEUS_RULE} differs from ${RULES}: run UPDATE_PROMETHEUS_RULE=1 node --import tsx --test test/infra/prometheus.test.ts`,
    )
  })

  test('rules and dashboard use only metrics the code exports', () => {
    const known = exportedMetrics()
    const used = [
      ...alerts().map((r) => r.expr),
      ...dashboardPanels().flatMap((p) => (p.targets ?? []).map((t) => t.expr)),
    ]
    for (const expr of used)
      for (const name of metricsIn(expr))
        assert.ok(known.has(name), `${name} is not a metric of backend/ or gateway/ (in: ${expr})`)
  })

  test('every dashboard query is valid PromQL (promtool)', () => {
    const exprs = dashboardPanels().flatMap((p) =>
      (p.targets ?? []).map((t) => ({ name: `dashboard:panel_${p.id}_${t.refId}`, expr: grafanaToPromql(t.expr) })),
    )
    assert.ok(exprs.length >= 20, `${exprs.length} queries`)
    for (const { expr } of exprs) assert.doesNotMatch(expr, /\$/, `a Grafana variable is left: ${expr}`)
    assertOk(checkExpressions(exprs), 'promtool check rules on the dashboard queries')
  })

  test('the PromQL check really refuses a bad query', () => {
    assert.notEqual(
      checkExpressions([{ name: 'dashboard:bad', expr: 'sum by (le) (rate(switchyard_gateway_requests_total[5m])' }])
        .status,
      0,
    )
    assert.notEqual(
      checkExpressions([{ name: 'dashboard:bad', expr: 'rate(switchyard_backend_queue_depth)' }]).status,
      0,
    )
  })

  test('dashboard: the panels the operators need, on the data source variable, laid out on the grid', () => {
    const dashboard = readJson(DASHBOARD) as { uid: string; templating: { list: { name: string; type: string }[] } }
    assert.equal(dashboard.uid, 'switchyard')
    assert.ok(dashboard.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource'))
    const panels = dashboardPanels()
    assert.equal(new Set(panels.map((p) => p.id)).size, panels.length, 'unique panel ids')
    const queries = panels
      .flatMap((p) => p.targets ?? [])
      .map((t) => t.expr)
      .join('\n')
    for (const metric of [
      'switchyard_gateway_requests_total',
      'switchyard_gateway_request_duration_seconds_bucket',
      'switchyard_backend_time_to_first_token_seconds_bucket',
      'switchyard_gateway_tokens_total',
      'switchyard_gateway_cache_total',
      'switchyard_gateway_breaker_state',
      'switchyard_backend_queue_depth',
      'switchyard_gateway_backend_in_flight',
    ]) {
      assert.ok(queries.includes(metric), `the dashboard shows ${metric}`)
    }
    assert.match(queries, /histogram_quantile\(0\.5,/)
    assert.match(queries, /histogram_quantile\(0\.99,/)
    for (const p of panels) {
      assert.ok(p.gridPos.x + p.gridPos.w <= 24, `panel ${p.title} fits the 24-column grid`)
      // biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's own variable syntax, not a template
      const grafanaVariable = '${datasource}'
      if (p.type !== 'row')
        assert.equal(p.datasource?.uid, grafanaVariable, `panel ${p.title} uses the data source variable`)
    }
  })

  test('Grafana provisioning points at the compose Prometheus', () => {
    const datasources = parse(readText('infra/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: { type: string; url: string }[]
    }
    assert.deepEqual(
      datasources.datasources.map((d) => [d.type, d.url]),
      [['prometheus', 'http://prometheus:9090']],
    )
  })
})
