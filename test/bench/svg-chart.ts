/**
 * A small hand-written SVG line chart for the backend benchmark: one panel per model (their
 * scales differ by orders of magnitude), x = concurrent streams on a log scale, y = aggregate
 * tokens/s from 0, one line per implementation, every point labelled with its value.
 */
export interface ChartModel {
  model: string
  points: { streams: number; ours: number; transformers: number }[]
}

const OURS = { color: '#1f5fbf', name: 'Switchyard engine' }
const BASELINE = { color: '#d9822b', name: 'transformers.js' }

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const fmt = (v: number) => (v >= 10_000 ? `${(v / 1000).toFixed(1)}k` : v >= 100 ? v.toFixed(0) : v.toFixed(1))
const tick = (v: number) => (v >= 1000 ? `${+(v / 1000).toFixed(1)}k` : `${+v.toFixed(1)}`)

/** A round step giving about four gridlines up to `max`. */
function niceStep(max: number): number {
  const raw = max / 4
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * magnitude >= raw) return m * magnitude
  return 10 * magnitude
}

export function renderThroughputChart({ title, models }: { title: string; models: ChartModel[] }): string {
  const panelW = 330
  const panelH = 290
  const pad = { left: 62, right: 22, top: 34, bottom: 52 }
  const header = 58
  const width = Math.max(panelW * Math.max(models.length, 1), 560)
  const height = header + panelH
  const out: string[] = []
  out.push(
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  )
  const legendX = width / 2 - 150
  for (const [i, side] of [OURS, BASELINE].entries()) {
    const x = legendX + i * 170
    out.push(
      `<line x1="${x}" y1="42" x2="${x + 24}" y2="42" stroke="${side.color}" stroke-width="3"/><circle cx="${x + 12}" cy="42" r="3.5" fill="${side.color}"/>`,
    )
    out.push(`<text x="${x + 30}" y="46" font-size="12">${side.name}</text>`)
  }

  const left = (width - panelW * models.length) / 2
  models.forEach((m, i) => {
    const x0 = left + i * panelW
    const y0 = header
    const plotW = panelW - pad.left - pad.right
    const plotH = panelH - pad.top - pad.bottom
    const peak = Math.max(1, ...m.points.flatMap((p) => [p.ours, p.transformers]))
    const step = niceStep(peak * 1.12)
    const top = Math.ceil((peak * 1.12) / step) * step
    const streams = m.points.map((p) => p.streams)
    const lo = Math.log2(Math.min(...streams))
    const hi = Math.log2(Math.max(...streams))
    const sx = (s: number) => x0 + pad.left + (hi === lo ? plotW / 2 : ((Math.log2(s) - lo) / (hi - lo)) * plotW)
    const sy = (v: number) => y0 + pad.top + (1 - v / top) * plotH
    out.push(
      `<text x="${x0 + pad.left + plotW / 2}" y="${y0 + 18}" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(m.model)}</text>`,
    )
    for (let v = 0; v <= top + step / 2; v += step) {
      out.push(
        `<line x1="${x0 + pad.left}" y1="${sy(v).toFixed(1)}" x2="${x0 + pad.left + plotW}" y2="${sy(v).toFixed(1)}" stroke="${v === 0 ? '#777' : '#e3e3e3'}"/>`,
      )
      out.push(
        `<text x="${x0 + pad.left - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end" font-size="10" fill="#444">${tick(v)}</text>`,
      )
    }
    out.push(`<line x1="${x0 + pad.left}" y1="${sy(0)}" x2="${x0 + pad.left}" y2="${sy(top)}" stroke="#777"/>`)
    for (const s of streams) {
      out.push(
        `<line x1="${sx(s).toFixed(1)}" y1="${sy(0)}" x2="${sx(s).toFixed(1)}" y2="${sy(0) + 4}" stroke="#777"/>`,
      )
      out.push(`<text x="${sx(s).toFixed(1)}" y="${sy(0) + 16}" text-anchor="middle" font-size="11">${s}</text>`)
    }
    out.push(
      `<text x="${x0 + pad.left + plotW / 2}" y="${sy(0) + 34}" text-anchor="middle" font-size="11" fill="#444">concurrent streams (log scale)</text>`,
    )
    const yMid = y0 + pad.top + plotH / 2
    out.push(
      `<text x="${x0 + 14}" y="${yMid}" text-anchor="middle" font-size="11" fill="#444" transform="rotate(-90 ${x0 + 14} ${yMid})">aggregate tokens/s</text>`,
    )
    for (const [key, side] of [
      ['transformers', BASELINE],
      ['ours', OURS],
    ] as const) {
      const pts = m.points.map((p) => `${sx(p.streams).toFixed(1)},${sy(p[key]).toFixed(1)}`).join(' ')
      out.push(`<polyline fill="none" stroke="${side.color}" stroke-width="2.5" points="${pts}"/>`)
      for (const p of m.points) {
        const other = key === 'ours' ? p.transformers : p.ours
        const cx = sx(p.streams)
        const cy = sy(p[key])
        // The higher value of the pair is labelled above its point, the lower one below it; near
        // the x axis the lower one goes above too when there is room, else beside its point.
        const last = p.streams === Math.max(...streams)
        const [lx, ly, anchor] =
          p[key] >= other
            ? [cx, cy - 8, 'middle']
            : cy + 15 <= sy(0) - 2
              ? [cx, cy + 15, 'middle']
              : cy - sy(other) >= 20
                ? [cx, cy - 8, 'middle']
                : last
                  ? [cx - 7, cy + 4, 'end']
                  : [cx + 7, cy + 4, 'start']
        out.push(`<circle cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" r="3.5" fill="${side.color}"/>`)
        out.push(
          `<text x="${lx.toFixed(1)}" y="${ly.toFixed(1)}" text-anchor="${anchor}" font-size="10" fill="${side.color}" stroke="white" stroke-width="3" paint-order="stroke">${fmt(p[key])}</text>`,
        )
      }
    }
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif"><rect width="100%" height="100%" fill="white"/>${out.join('')}</svg>\n`
}
