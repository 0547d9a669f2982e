/** A small hand-written SVG: one panel per model, aggregate tokens/s against concurrency (log x). */
export function renderThroughputChart(models: { model: string; points: { streams: number; ours: number; transformers: number }[] }[]): string {
  const panelW = 320
  const panelH = 240
  const pad = { left: 60, right: 15, top: 30, bottom: 40 }
  const width = panelW * models.length
  const height = panelH + 30
  const parts: string[] = []
  models.forEach((m, i) => {
    const x0 = i * panelW
    const max = Math.max(...m.points.flatMap((p) => [p.ours, p.transformers])) * 1.1
    const xs = m.points.map((p) => p.streams)
    const sx = (s: number) => x0 + pad.left + ((Math.log2(s) - Math.log2(xs[0])) / (Math.log2(xs[xs.length - 1]) - Math.log2(xs[0]))) * (panelW - pad.left - pad.right)
    const sy = (v: number) => pad.top + (1 - v / max) * (panelH - pad.top - pad.bottom)
    const line = (key: 'ours' | 'transformers', color: string) =>
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${m.points.map((p) => `${sx(p.streams).toFixed(1)},${sy(p[key]).toFixed(1)}`).join(' ')}"/>` +
      m.points.map((p) => `<circle cx="${sx(p.streams).toFixed(1)}" cy="${sy(p[key]).toFixed(1)}" r="3" fill="${color}"/>`).join('')
    parts.push(`<text x="${x0 + panelW / 2}" y="18" text-anchor="middle" font-weight="bold">${m.model}</text>`)
    parts.push(`<line x1="${x0 + pad.left}" y1="${sy(0)}" x2="${x0 + panelW - pad.right}" y2="${sy(0)}" stroke="#888"/><line x1="${x0 + pad.left}" y1="${pad.top}" x2="${x0 + pad.left}" y2="${sy(0)}" stroke="#888"/>`)
    for (const s of xs) parts.push(`<text x="${sx(s)}" y="${sy(0) + 16}" text-anchor="middle" font-size="11">${s}</text>`)
    for (let k = 0; k <= 4; k++) {
      const v = (max / 4) * k
      parts.push(`<text x="${x0 + pad.left - 6}" y="${sy(v) + 4}" text-anchor="end" font-size="10">${v >= 1000 ? `${(v / 1000).toFixed(1)}k` : v.toFixed(0)}</text>`)
    }
    parts.push(`<text x="${x0 + panelW / 2}" y="${panelH - 5}" text-anchor="middle" font-size="11">concurrent streams</text>`)
    parts.push(line('transformers', '#d9822b'), line('ours', '#2b6cd9'))
  })
  parts.push(`<text x="10" y="${height - 8}" font-size="12"><tspan fill="#2b6cd9">● Switchyard engine</tspan>   <tspan fill="#d9822b">● transformers.js</tspan>   (aggregate tokens/s)</text>`)
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/>${parts.join('')}</svg>\n`
}
