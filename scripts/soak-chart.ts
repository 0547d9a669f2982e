/**
 * A small hand-written SVG chart for the soak run: panels stacked vertically, sharing the time
 * axis (minutes), one line per process. The warm-up, which the verdict ignores, is shaded.
 */
export interface Series {
  name: string
  color: string
  /** [seconds since start, value] */
  points: [number, number][]
}

export interface Panel {
  title: string
  unit: string
  series: Series[]
}

const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
const label = (v: number) => `${+v.toFixed(v < 10 ? 1 : 0)}`

/** A round step giving about four gridlines up to `max`. */
function niceStep(max: number): number {
  const raw = max / 4
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  for (const m of [1, 2, 2.5, 5, 10]) if (m * magnitude >= raw) return m * magnitude
  return 10 * magnitude
}

export function renderTimeChart({
  title,
  panels,
  durationSeconds,
  warmupSeconds,
}: {
  title: string
  panels: Panel[]
  durationSeconds: number
  warmupSeconds: number
}): string {
  const width = 820
  const panelH = 250
  const pad = { left: 70, right: 150, top: 30, bottom: 42 }
  const header = 36
  const height = header + panelH * panels.length
  const plotW = width - pad.left - pad.right
  const plotH = panelH - pad.top - pad.bottom
  const sx = (t: number) => pad.left + (t / Math.max(1, durationSeconds)) * plotW
  const out: string[] = [
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  ]

  panels.forEach((panel, i) => {
    const y0 = header + i * panelH
    const peak = Math.max(1e-9, ...panel.series.flatMap((s) => s.points.map((p) => p[1])))
    const step = niceStep(peak * 1.1)
    const top = Math.ceil((peak * 1.1) / step) * step
    const sy = (v: number) => y0 + pad.top + (1 - v / top) * plotH
    out.push(`<text x="${pad.left}" y="${y0 + 18}" font-size="13" font-weight="bold">${escapeXml(panel.title)}</text>`)
    out.push(
      `<rect x="${sx(0)}" y="${sy(top)}" width="${(sx(warmupSeconds) - sx(0)).toFixed(1)}" height="${plotH}" fill="#f2f2f2"/>`,
    )
    out.push(
      `<text x="${((sx(0) + sx(warmupSeconds)) / 2).toFixed(1)}" y="${sy(top) + 12}" text-anchor="middle" font-size="10" fill="#777">warm-up</text>`,
    )
    for (let v = 0; v <= top + step / 2; v += step) {
      out.push(
        `<line x1="${pad.left}" y1="${sy(v).toFixed(1)}" x2="${pad.left + plotW}" y2="${sy(v).toFixed(1)}" stroke="${v === 0 ? '#777' : '#e3e3e3'}"/>`,
      )
      out.push(
        `<text x="${pad.left - 6}" y="${(sy(v) + 4).toFixed(1)}" text-anchor="end" font-size="10" fill="#444">${label(v)}</text>`,
      )
    }
    const minutes = Math.max(1, Math.round(durationSeconds / 60))
    const every = minutes > 12 ? Math.ceil(minutes / 12) : 1
    for (let m = 0; m <= minutes; m += every) {
      const x = sx(m * 60)
      if (x > pad.left + plotW + 1) break
      out.push(`<line x1="${x.toFixed(1)}" y1="${sy(0)}" x2="${x.toFixed(1)}" y2="${sy(0) + 4}" stroke="#777"/>`)
      out.push(`<text x="${x.toFixed(1)}" y="${sy(0) + 16}" text-anchor="middle" font-size="10">${m}</text>`)
    }
    out.push(
      `<text x="${pad.left + plotW / 2}" y="${sy(0) + 32}" text-anchor="middle" font-size="11" fill="#444">minutes</text>`,
    )
    const yMid = y0 + pad.top + plotH / 2
    out.push(
      `<text x="16" y="${yMid}" text-anchor="middle" font-size="11" fill="#444" transform="rotate(-90 16 ${yMid})">${escapeXml(panel.unit)}</text>`,
    )
    panel.series.forEach((s, k) => {
      const pts = s.points.map(([t, v]) => `${sx(t).toFixed(1)},${sy(v).toFixed(1)}`).join(' ')
      out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.8" points="${pts}"/>`)
      const ly = y0 + pad.top + 10 + k * 18
      out.push(
        `<line x1="${pad.left + plotW + 14}" y1="${ly}" x2="${pad.left + plotW + 34}" y2="${ly}" stroke="${s.color}" stroke-width="3"/>`,
      )
      out.push(`<text x="${pad.left + plotW + 40}" y="${ly + 4}" font-size="11">${escapeXml(s.name)}</text>`)
    })
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n${out.join('\n')}\n</svg>\n`
}
