/**
 * /console/app.js: signs in with the admin token, polls /console/api/snapshot and renders the
 * summary, charts and node tables. Plain browser JavaScript (an ES module), no framework.
 */
export const APP_JS = String.raw`// The operator console: sign-in, polling and the live view.
import { createChart } from './charts.js'
import { createPlayground } from './playground.js'

const TOKEN_STORAGE = 'switchyard.adminToken'
const POLL_MS = 2000
const $ = (id) => document.getElementById(id)

const rate = (v) => (v === 0 ? '0' : v < 10 ? v.toFixed(1) : Math.round(v).toLocaleString()) + '/s'
const rateAxis = (v) => (v < 10 && v % 1 ? v.toFixed(1) : Math.round(v).toLocaleString())
const ms = (v) => (v < 1000 ? (v < 10 && v % 1 ? v.toFixed(1) : Math.round(v)) + ' ms' : (v / 1000).toFixed(v < 10000 ? 2 : 1) + ' s')
const msAxis = (v) => (v < 1000 ? Math.round(v) + ' ms' : Number((v / 1000).toFixed(2)) + ' s')
const percent = (v) => Math.round(v * 100) + '%'

const CHARTS = [
  { id: 'chart-requests', title: 'Requests per second', format: rate, axis: rateAxis, series: [
    { key: 'requestsPerSecond', label: 'All', area: true }, { key: 'clientErrorsPerSecond', label: '4xx' }, { key: 'serverErrorsPerSecond', label: '5xx' }] },
  { id: 'chart-latency', title: 'Latency of generation requests', format: ms, axis: msAxis, floor: 10, empty: 'No generation requests', series: [
    { key: 'latencyP50Ms', label: 'p50' }, { key: 'latencyP95Ms', label: 'p95' }, { key: 'latencyP99Ms', label: 'p99' }, { key: 'firstByteP50Ms', label: 'First byte p50' }] },
  { id: 'chart-tokens', title: 'Tokens per second', format: rate, axis: rateAxis, series: [
    { key: 'completionTokensPerSecond', label: 'Completion', area: true }, { key: 'promptTokensPerSecond', label: 'Prompt' }] },
  { id: 'chart-cache', title: 'Cache hit rate', format: percent, max: 1, empty: 'No cacheable requests', series: [
    { key: 'cacheHitRate', label: 'Hits', area: true }] },
]

const charts = CHARTS.map((spec) => createChart($(spec.id), spec))
const playground = createPlayground()
let token = sessionStorage.getItem(TOKEN_STORAGE)
let timer = null
let previousStates = null

function el(name, className, text) {
  const node = document.createElement(name)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

function setConnection(state, text) {
  const connection = $('connection')
  connection.dataset.state = state
  connection.textContent = text
}

/** What the operator should know first about a node, worst first. */
function nodeState(node) {
  if (!node.healthy) return { key: 'unhealthy', label: 'Unhealthy', tone: 'bad' }
  if (node.ejected) return { key: 'ejected', label: 'Ejected', tone: 'bad' }
  if (node.breaker === 'open') return { key: 'breaker-open', label: 'Breaker open', tone: 'bad' }
  if (node.breaker === 'half_open') return { key: 'recovering', label: 'Recovering', tone: 'warn' }
  return { key: 'healthy', label: 'Healthy', tone: 'ok' }
}

function badge(text, tone) {
  const span = el('span', 'badge ' + tone)
  span.append(el('span', 'badge-dot'), text)
  return span
}

function ago(iso, now) {
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000)
  return seconds < 60 ? seconds.toFixed(1) + ' s ago' : Math.round(seconds / 60) + ' min ago'
}

function lastCheck(check, now) {
  const cell = el('td')
  if (!check) return cell.append('Not yet'), cell
  const result = el('span', 'check-result' + (check.ok ? '' : ' bad-text'), check.ok ? 'OK' : 'Failed' + (check.detail ? ': ' + check.detail : ''))
  cell.append(result, el('span', 'check-age', ago(check.at, now)))
  return cell
}

const COLUMNS = ['Node', 'State', 'Breaker', 'In flight', 'Requests (1 min)', 'Errors', 'p50', 'p99', 'Last health check']

function regionCard(region, status, now) {
  const card = el('section', 'card region')
  const head = el('div', 'region-head')
  const title = el('h3', 'region-title', region.name)
  title.id = 'region-' + region.name
  head.append(title)
  if (region.name === status.region) head.append(badge('Gateway region', 'info'))
  head.append(el('span', 'muted', region.fallback.length ? 'Falls back to ' + region.fallback.join(', ') : 'No fallback'))
  const wrap = el('div', 'table-wrap')
  const table = el('table', 'nodes')
  table.setAttribute('aria-labelledby', title.id)
  const headRow = el('tr')
  for (const name of COLUMNS) {
    const th = el('th', null, name)
    th.scope = 'col'
    headRow.append(th)
  }
  table.append(el('thead'), el('tbody'))
  table.tHead.append(headRow)
  for (const node of region.nodes) {
    const state = nodeState(node)
    const row = el('tr')
    row.dataset.node = node.id
    row.dataset.state = state.key
    const name = el('th', 'node-name')
    name.scope = 'row'
    const url = el('span', 'node-url', node.url + (node.models ? ' · ' + node.models.join(', ') : ''))
    url.title = url.textContent
    name.append(el('span', 'node-id', node.id), url)
    const stateCell = el('td')
    stateCell.append(badge(state.label, state.tone))
    const recent = node.recent
    const cells = [
      node.breaker.replace('_', '-'),
      String(node.inFlight),
      recent.requests.toLocaleString(),
      recent.requests ? percent(recent.errorRate) : '–',
      recent.p50Ms == null ? '–' : ms(recent.p50Ms),
      recent.p99Ms == null ? '–' : ms(recent.p99Ms),
    ]
    row.append(name, stateCell, ...cells.map((text, i) => el('td', i >= 1 ? 'num' : null, text)), lastCheck(node.lastCheck, now))
    table.tBodies[0].append(row)
  }
  wrap.append(table)
  card.append(head, wrap)
  return card
}

function announceChanges(status) {
  const states = new Map()
  const changes = []
  for (const region of status.regions) {
    for (const node of region.nodes) {
      const state = nodeState(node)
      states.set(node.id, state.key)
      const before = previousStates && previousStates.get(node.id)
      if (before && before !== state.key) changes.push(node.id + ' in ' + region.name + ' is now ' + state.label.toLowerCase())
    }
  }
  previousStates = states
  if (changes.length) $('announcer').textContent = changes.join('. ') + '.'
}

function render(snapshot) {
  const status = snapshot.status
  const now = snapshot.serverTime
  const nodes = status.regions.flatMap((r) => r.nodes)
  $('tile-healthy').textContent = nodes.filter((n) => nodeState(n).tone === 'ok').length + ' of ' + nodes.length
  $('tile-in-flight').textContent = nodes.reduce((sum, n) => sum + n.inFlight, 0).toLocaleString()
  $('tile-requests').textContent = snapshot.totals.requests.toLocaleString()
  $('tile-tokens').textContent = (snapshot.totals.promptTokens + snapshot.totals.completionTokens).toLocaleString()
  for (const chart of charts) chart.update(snapshot.series, snapshot.stepSeconds * 1000)
  $('regions').replaceChildren(...status.regions.map((region) => regionCard(region, status, now)))
  const budget = status.retryBudget
  $('retry-budget').textContent = 'Retries: ' + budget.retries + ' for ' + budget.requests + ' requests in the last ' + budget.windowSeconds + ' s (budget ' + percent(budget.ratio) + ' + ' + budget.minPerSecond + '/s)'
  announceChanges(status)
  playground.setRegions(status.regions.map((r) => r.name), status.region, snapshot.regionHeader)
}

async function fetchSnapshot(withToken) {
  const response = await fetch('/console/api/snapshot', { headers: { authorization: 'Bearer ' + withToken }, cache: 'no-store' })
  if (response.status === 401) return { unauthorized: true }
  if (!response.ok) throw new Error('HTTP ' + response.status)
  return { snapshot: await response.json() }
}

let polling = false

async function poll() {
  clearTimeout(timer)
  // One poll at a time: a tab becoming visible must not start a second chain of polls.
  if (!token || polling) return
  polling = true
  try {
    const result = await fetchSnapshot(token)
    if (!token) return
    if (result.unauthorized) return signOut('The gateway no longer accepts this admin token.')
    render(result.snapshot)
    setConnection('live', 'Live · updated ' + new Date().toLocaleTimeString())
  } catch {
    setConnection('error', 'Connection lost · retrying')
  } finally {
    polling = false
  }
  // Hidden tabs stop polling; the visibilitychange handler resumes it.
  if (token && !document.hidden) timer = setTimeout(poll, POLL_MS)
}

function showDashboard(on) {
  $('sign-in').hidden = on
  $('dashboard').hidden = !on
  $('sign-out').hidden = !on
}

function signOut(message) {
  token = null
  clearTimeout(timer)
  sessionStorage.removeItem(TOKEN_STORAGE)
  previousStates = null
  playground.clear()
  // Nothing the token revealed stays on the page.
  $('regions').replaceChildren()
  for (const chart of charts) chart.update([], 5000)
  showDashboard(false)
  setConnection('signed-out', 'Signed out')
  $('sign-in-error').textContent = message || ''
  $('admin-token').focus()
}

$('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault()
  const candidate = $('admin-token').value.trim()
  const error = $('sign-in-error')
  error.textContent = ''
  try {
    const result = await fetchSnapshot(candidate)
    if (result.unauthorized) return void (error.textContent = 'The gateway did not accept this token.')
    token = candidate
    sessionStorage.setItem(TOKEN_STORAGE, token)
    $('admin-token').value = ''
    showDashboard(true)
    $('dashboard-title').focus() // the form that had focus is gone
    render(result.snapshot)
    setConnection('live', 'Live · updated ' + new Date().toLocaleTimeString())
    timer = setTimeout(poll, POLL_MS)
    if ($('api-key').value) playground.loadModels()
  } catch {
    error.textContent = 'Could not reach the gateway.'
  }
})

$('sign-out').addEventListener('click', () => signOut())
document.addEventListener('visibilitychange', () => {
  if (!document.hidden && token) poll()
})

if (token) {
  showDashboard(true)
  setConnection('connecting', 'Connecting…')
  poll()
  if ($('api-key').value) playground.loadModels()
} else {
  $('admin-token').focus()
}
`
