/** /console/style.css: the console's only stylesheet (light and dark, no web fonts). */
export const STYLE_CSS = String.raw`:root {
  color-scheme: light dark;
  --bg: #f4f6f9; --surface: #fff; --border: #dde2ea; --text: #1a2230; --muted: #5c6778;
  --accent: #1f4fd1; --accent-text: #fff; --focus: #1f4fd1;
  --ok: #11795a; --ok-bg: #e3f5ee; --warn: #8a5a00; --warn-bg: #fdf1d8; --bad: #b42318; --bad-bg: #fdeceb;
  --info: #1f4fd1; --info-bg: #e6edfd; --grid: #e6e9ef;
  --s1: #1f4fd1; --s2: #7c3aed; --s3: #c81e1e; --s4: #0f8a6a;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f141b; --surface: #171e28; --border: #2a3442; --text: #e5e9f0; --muted: #9aa5b5;
    --accent: #7ea2ff; --accent-text: #0c1220; --focus: #a9c0ff;
    --ok: #5fd3a6; --ok-bg: #113227; --warn: #f0c05a; --warn-bg: #33280f; --bad: #ff8a80; --bad-bg: #3a1717;
    --info: #a9c0ff; --info-bg: #1b2745; --grid: #263040;
    --s1: #7ea2ff; --s2: #c4a5ff; --s3: #ff8a80; --s4: #5fd3a6;
  }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); }
[hidden] { display: none !important; }
h1, h2, h3 { margin: 0; line-height: 1.25; }
h1 { font-size: 1.4rem; }
h2 { font-size: 1.1rem; }
h3 { font-size: 0.95rem; }
code, .mono { font-family: ui-monospace, "SF Mono", Menlo, Consolas, monospace; font-size: 0.92em; }
.muted { color: var(--muted); margin: 0; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip-path: inset(50%); white-space: nowrap; }
.skip-link { position: absolute; left: 1rem; top: -3rem; background: var(--surface); padding: 0.5rem 0.75rem; border-radius: 6px; z-index: 2; }
.skip-link:focus { top: 0.5rem; }
:focus-visible { outline: 2px solid var(--focus); outline-offset: 2px; }

.topbar { display: flex; flex-wrap: wrap; align-items: center; gap: 0.5rem 1rem; padding: 0.7rem 1.5rem; background: var(--surface); border-bottom: 1px solid var(--border); position: sticky; top: 0; z-index: 1; }
.brand { display: flex; align-items: center; gap: 0.5rem; font-weight: 650; font-size: 1.05rem; }
.brand-sub { color: var(--muted); font-weight: 450; }
.connection { margin: 0 0 0 auto; color: var(--muted); display: flex; align-items: center; gap: 0.45rem; }
.connection::before { content: ""; width: 0.55rem; height: 0.55rem; border-radius: 50%; background: var(--muted); }
.connection[data-state="live"]::before { background: var(--ok); }
.connection[data-state="error"] { color: var(--bad); }
.connection[data-state="error"]::before { background: var(--bad); }

main { max-width: 1280px; margin: 0 auto; padding: 1.25rem 1.5rem 3rem; }
section + section { margin-top: 1.75rem; }
.section-head { display: flex; align-items: baseline; flex-wrap: wrap; gap: 0.4rem 1rem; margin-bottom: 0.75rem; }
.card { background: var(--surface); border: 1px solid var(--border); border-radius: 10px; padding: 1rem; margin: 0; }
.stack { display: flex; flex-direction: column; gap: 0.35rem; min-width: 0; }
.row { display: grid; grid-template-columns: 1fr 1fr; gap: 0.75rem; }
.row.params { grid-template-columns: repeat(4, minmax(0, 1fr)); }

label, legend { font-weight: 600; font-size: 0.9rem; }
input, select, textarea { font: inherit; color: inherit; background: var(--bg); border: 1px solid var(--border); border-radius: 6px; padding: 0.45rem 0.55rem; width: 100%; }
textarea { resize: vertical; min-height: 5rem; }
.hint { margin: 0 0 0.4rem; color: var(--muted); font-size: 0.85rem; }
.form-error { margin: 0; color: var(--bad); min-height: 1.2em; }
.button { font: inherit; font-weight: 600; border: 1px solid var(--accent); background: var(--accent); color: var(--accent-text); border-radius: 6px; padding: 0.45rem 1rem; cursor: pointer; }
.button.secondary { background: transparent; color: var(--accent); }
.button:disabled { opacity: 0.5; cursor: not-allowed; }
.actions { display: flex; gap: 0.5rem; }
.segmented { border: 0; padding: 0; margin: 0.25rem 0; display: flex; gap: 1rem; align-items: center; }
.segmented legend { float: left; margin-right: 0.5rem; }
.segmented label { font-weight: 450; display: flex; align-items: center; gap: 0.3rem; }
.segmented input { width: auto; }

.sign-in { max-width: 28rem; margin: 4rem auto; }
.sign-in > p { color: var(--muted); }

.summary { display: grid; grid-template-columns: repeat(4, minmax(0, 1fr)); gap: 0.75rem; }
.tile { background: var(--surface); border: 1px solid var(--border); border-radius: 10px; padding: 0.75rem 1rem; display: flex; flex-direction: column; }
.tile-label { color: var(--muted); font-size: 0.85rem; }
.tile-value { font-size: 1.5rem; font-weight: 650; font-variant-numeric: tabular-nums; }

.charts { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 0.75rem; }
.chart figcaption { display: flex; flex-wrap: wrap; align-items: baseline; justify-content: space-between; gap: 0.25rem 1rem; margin-bottom: 0.35rem; }
.legend { list-style: none; margin: 0; padding: 0; display: flex; flex-wrap: wrap; gap: 0.2rem 0.9rem; font-size: 0.85rem; }
.legend li { display: flex; align-items: center; gap: 0.3rem; }
.legend-label { color: var(--muted); }
.legend-value { font-weight: 600; font-variant-numeric: tabular-nums; }
.swatch { width: 0.8rem; height: 3px; border-radius: 2px; background: var(--c); }
.s1 { --c: var(--s1); } .s2 { --c: var(--s2); } .s3 { --c: var(--s3); } .s4 { --c: var(--s4); }
.chart-svg { width: 100%; height: auto; display: block; touch-action: none; }
.chart-svg .grid { stroke: var(--grid); stroke-width: 1; }
.chart-svg .axis { fill: var(--muted); font-size: 11px; font-variant-numeric: tabular-nums; }
.chart-svg .empty { fill: var(--muted); font-size: 12px; }
.chart-svg .line { fill: none; stroke: var(--c); stroke-width: 1.8; stroke-linejoin: round; }
.chart-svg .area { fill: var(--c); opacity: 0.12; }
.chart-svg .dot { fill: var(--c); }
.chart-svg .s4 .line { stroke-dasharray: 4 3; }
.chart-svg .marker { stroke: var(--muted); stroke-width: 1; stroke-dasharray: 2 2; }
.readout { margin: 0.25rem 0 0; min-height: 1.2rem; font-size: 0.8rem; color: var(--muted); font-variant-numeric: tabular-nums; }

.regions { display: grid; grid-template-columns: minmax(0, 1fr); gap: 0.75rem; }
.region-head { display: flex; align-items: center; flex-wrap: wrap; gap: 0.5rem 0.75rem; margin-bottom: 0.6rem; }
.region-title { font-size: 1rem; }
.table-wrap { overflow-x: auto; }
/* Fixed column widths, so the tables of all regions line up. */
.nodes { width: 100%; min-width: 56rem; table-layout: fixed; border-collapse: collapse; font-variant-numeric: tabular-nums; }
.nodes thead th:nth-child(1) { width: 17%; } .nodes thead th:nth-child(2) { width: 11%; } .nodes thead th:nth-child(3) { width: 9%; }
.nodes thead th:nth-child(4) { width: 8%; } .nodes thead th:nth-child(5) { width: 12%; } .nodes thead th:nth-child(n+6):nth-child(-n+8) { width: 8%; }
.nodes th, .nodes td { text-align: left; padding: 0.45rem 0.6rem; border-top: 1px solid var(--border); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; vertical-align: middle; }
.nodes thead th { border-top: 0; color: var(--muted); font-weight: 600; font-size: 0.8rem; }
.nodes .num { text-align: right; }
.check-result, .check-age { display: block; overflow: hidden; text-overflow: ellipsis; }
.check-age { color: var(--muted); font-size: 0.8rem; }
.nodes thead th:nth-child(n+4):nth-child(-n+8) { text-align: right; }
.node-name { font-weight: 400; }
.node-id { display: block; font-weight: 650; }
.node-url { display: block; overflow: hidden; text-overflow: ellipsis; color: var(--muted); font-size: 0.8rem; }
.bad-text { color: var(--bad); }
.badge { display: inline-flex; align-items: center; gap: 0.35rem; padding: 0.1rem 0.55rem; border-radius: 999px; font-size: 0.8rem; font-weight: 600; }
.badge-dot { width: 0.5rem; height: 0.5rem; border-radius: 50%; background: currentColor; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.warn { color: var(--warn); background: var(--warn-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
.badge.info { color: var(--info); background: var(--info-bg); }
.badge.bad .badge-dot { border-radius: 1px; }

.playground { display: grid; grid-template-columns: minmax(0, 5fr) minmax(0, 6fr); gap: 0.75rem; align-items: start; }
.output-card { display: flex; flex-direction: column; gap: 0.6rem; }
.output-title { font-size: 0.95rem; }
.completion { min-height: 12rem; max-height: 26rem; overflow-y: auto; white-space: pre-wrap; overflow-wrap: anywhere; background: var(--bg); border: 1px solid var(--border); border-radius: 6px; padding: 0.65rem 0.75rem; }
.completion.streaming::after { content: "▍"; color: var(--accent); animation: blink 1s steps(2) infinite; }
@keyframes blink { 50% { opacity: 0; } }
@media (prefers-reduced-motion: reduce) { .completion.streaming::after { animation: none; } }
.facts { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 0.5rem 1rem; margin: 0; }
.facts .wide { grid-column: span 3; }
.facts dt { color: var(--muted); font-size: 0.8rem; }
.facts dd { margin: 0; font-weight: 600; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }

@media (max-width: 900px) {
  .charts, .playground { grid-template-columns: minmax(0, 1fr); }
  .summary { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .row.params { grid-template-columns: repeat(2, minmax(0, 1fr)); }
}
`
