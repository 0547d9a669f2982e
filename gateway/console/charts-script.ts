/**
 * /console/charts.js: line charts drawn as inline SVG (no chart library, nothing fetched).
 * Kept as a string so Node and Workers serve it alike; written without template literals.
 */
export const CHARTS_JS = String.raw`// Line charts of the console, drawn as inline SVG.
const SVG = 'http://www.w3.org/2000/svg'
const WIDTH = 480
const HEIGHT = 168
const PAD = { left: 48, right: 12, top: 10, bottom: 22 }
const PLOT_W = WIDTH - PAD.left - PAD.right
const PLOT_H = HEIGHT - PAD.top - PAD.bottom

function svg(name, attrs, parent) {
  const node = document.createElementNS(SVG, name)
  for (const key of Object.keys(attrs)) node.setAttribute(key, String(attrs[key]))
  if (parent) parent.appendChild(node)
  return node
}

function html(name, className, text) {
  const node = document.createElement(name)
  if (className) node.className = className
  if (text !== undefined) node.textContent = text
  return node
}

/** Rounds up to 1, 2 or 5 times a power of ten, so gridlines fall on round numbers. */
export function niceMax(value) {
  if (!(value > 0)) return 1
  const power = Math.pow(10, Math.floor(Math.log10(value)))
  for (const m of [1, 2, 5, 10]) if (value <= m * power * 1.0000001) return m * power
  return 10 * power
}

/**
 * A chart in a <figure>: a title, a legend with the latest value of each series, the SVG, and a
 * read-out of the values under the pointer. spec: { title, series: [{ key, label, area? }],
 * format(value), axis(value)?, max? (fixed top), floor? (lowest top), empty? (text when no data) }.
 */
export function createChart(figure, spec) {
  const caption = html('figcaption')
  const title = html('h3', 'chart-title', spec.title)
  title.id = figure.id + '-title'
  const legend = html('ul', 'legend')
  const values = spec.series.map((s, i) => {
    const item = html('li', 's' + (i + 1))
    item.append(html('span', 'swatch'), html('span', 'legend-label', s.label + ' '))
    const value = html('span', 'legend-value', '–')
    item.append(value)
    legend.append(item)
    return value
  })
  caption.append(title, legend)
  const root = svg('svg', { viewBox: '0 0 ' + WIDTH + ' ' + HEIGHT, role: 'img', class: 'chart-svg' })
  // Always there (empty when not pointing), so hovering does not move the page.
  const readout = html('p', 'readout')
  figure.replaceChildren(caption, root, readout)
  let points = []
  let stepMs = 5000

  const x = (i) => PAD.left + ((i + 0.5) / Math.max(points.length, 1)) * PLOT_W
  let top = 1
  const y = (v) => PAD.top + PLOT_H - (v / top) * PLOT_H

  function draw() {
    root.replaceChildren()
    let highest = 0
    for (const p of points) for (const s of spec.series) if (p[s.key] != null) highest = Math.max(highest, p[s.key])
    top = spec.max || niceMax(Math.max(highest, spec.floor || 0))
    const axis = spec.axis || spec.format
    for (const f of [0, 0.5, 1]) {
      const gy = y(top * f)
      svg('line', { x1: PAD.left, x2: WIDTH - PAD.right, y1: gy, y2: gy, class: 'grid' }, root)
      svg('text', { x: PAD.left - 6, y: gy + 4, 'text-anchor': 'end', class: 'axis' }, root).textContent = axis(top * f)
    }
    const windowMinutes = Math.round((points.length * stepMs) / 60000)
    for (let m = 0; m <= windowMinutes; m++) {
      const tx = PAD.left + PLOT_W - (m / Math.max(windowMinutes, 1)) * PLOT_W
      svg('text', { x: tx, y: HEIGHT - 6, 'text-anchor': m === 0 ? 'end' : m === windowMinutes ? 'start' : 'middle', class: 'axis' }, root).textContent = m === 0 ? 'now' : '−' + m + 'm'
    }
    // The first series is the main one: drawn last, so it is on top where lines overlap.
    for (let i = spec.series.length - 1; i >= 0; i--) {
      const s = spec.series[i]
      const group = svg('g', { class: 's' + (i + 1) }, root)
      let run = []
      const flush = () => {
        if (run.length === 1) svg('circle', { cx: run[0][0], cy: run[0][1], r: 2.5, class: 'dot' }, group)
        else if (run.length > 1) {
          const line = run.map((p) => p[0].toFixed(1) + ',' + p[1].toFixed(1)).join(' ')
          if (s.area) svg('polygon', { points: run[0][0].toFixed(1) + ',' + y(0) + ' ' + line + ' ' + run[run.length - 1][0].toFixed(1) + ',' + y(0), class: 'area' }, group)
          svg('polyline', { points: line, class: 'line' }, group)
        }
        run = []
      }
      points.forEach((p, j) => {
        if (p[s.key] == null) flush()
        else run.push([x(j), y(Math.min(p[s.key], top))])
      })
      flush()
    }
    const empty = points.every((p) => spec.series.every((s) => p[s.key] == null))
    if (empty) svg('text', { x: PAD.left + PLOT_W / 2, y: PAD.top + PLOT_H / 2, 'text-anchor': 'middle', class: 'empty' }, root).textContent = spec.empty || 'No data yet'
    const latest = points[points.length - 1] || {}
    const summary = spec.series.map((s, i) => {
      const text = latest[s.key] == null ? '–' : spec.format(latest[s.key])
      values[i].textContent = text
      return s.label + ' ' + text
    })
    root.setAttribute('aria-label', spec.title + ', latest ' + stepMs / 1000 + '-second step: ' + summary.join(', '))
  }

  // The values of the step under the pointer, with a marker line; kept across redraws.
  let marker = null
  let hovered = null
  function showAt(j) {
    hovered = j
    if (!marker) marker = svg('line', { y1: PAD.top, y2: PAD.top + PLOT_H, class: 'marker' })
    marker.setAttribute('x1', x(j))
    marker.setAttribute('x2', x(j))
    root.appendChild(marker)
    const p = points[j]
    readout.textContent = new Date(p.at).toLocaleTimeString() + ' · ' + spec.series.map((s) => s.label + ' ' + (p[s.key] == null ? '–' : spec.format(p[s.key]))).join(' · ')
  }
  function hide() {
    hovered = null
    if (marker) marker.remove()
    readout.textContent = ''
  }
  root.addEventListener('pointermove', (event) => {
    const box = root.getBoundingClientRect()
    const px = ((event.clientX - box.left) / box.width) * WIDTH
    const j = Math.round(((px - PAD.left) / PLOT_W) * points.length - 0.5)
    if (j >= 0 && j < points.length) showAt(j)
    else hide()
  })
  root.addEventListener('pointerleave', hide)

  return {
    update(nextPoints, nextStepMs) {
      points = nextPoints
      stepMs = nextStepMs
      draw()
      if (hovered !== null && hovered < points.length) showAt(hovered)
      else hide()
    },
  }
}
`
