/**
 * The console page: a static shell with no data in it (it is served without authentication).
 * app.js fills it in once the operator has given the admin token.
 */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>Switchyard console</title>
<link rel="icon" href="/console/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/console/style.css">
<script type="module" src="/console/app.js"></script>
</head>
<body>
<a class="skip-link" href="#main">Skip to content</a>
<header class="topbar">
  <div class="brand"><img src="/console/icon.svg" alt="" width="24" height="24"> Switchyard <span class="brand-sub">console</span></div>
  <p id="connection" class="connection" data-state="signed-out" role="status">Signed out</p>
  <button id="sign-out" class="button secondary" type="button" hidden>Sign out</button>
</header>

<main id="main">
  <section id="sign-in" class="card sign-in" aria-labelledby="sign-in-title">
    <h1 id="sign-in-title">Sign in</h1>
    <p>Enter the gateway's admin token (<code>ADMIN_TOKEN</code>). It stays in this browser tab and is sent only to this gateway.</p>
    <form id="sign-in-form" class="stack">
      <label for="admin-token">Admin token</label>
      <input id="admin-token" name="admin-token" type="password" autocomplete="off" spellcheck="false" required>
      <p id="sign-in-error" class="form-error" role="alert"></p>
      <button class="button" type="submit">Sign in</button>
    </form>
  </section>

  <div id="dashboard" hidden>
    <h1 id="dashboard-title" class="visually-hidden" tabindex="-1">Gateway overview</h1>
    <section class="summary" aria-label="Summary">
      <div class="tile"><span class="tile-label">Healthy nodes</span><span class="tile-value" id="tile-healthy">–</span></div>
      <div class="tile"><span class="tile-label">In flight</span><span class="tile-value" id="tile-in-flight">–</span></div>
      <div class="tile"><span class="tile-label">Requests since start</span><span class="tile-value" id="tile-requests">–</span></div>
      <div class="tile"><span class="tile-label">Tokens since start</span><span class="tile-value" id="tile-tokens">–</span></div>
    </section>

    <section aria-labelledby="traffic-title">
      <div class="section-head">
        <h2 id="traffic-title">Traffic</h2>
        <p class="muted" id="traffic-note">Last 5 minutes on this gateway instance, in 5-second steps</p>
      </div>
      <div class="charts">
        <figure class="card chart" id="chart-requests"></figure>
        <figure class="card chart" id="chart-latency"></figure>
        <figure class="card chart" id="chart-tokens"></figure>
        <figure class="card chart" id="chart-cache"></figure>
      </div>
    </section>

    <section aria-labelledby="nodes-title">
      <div class="section-head">
        <h2 id="nodes-title">Regions and nodes</h2>
        <p class="muted" id="retry-budget"></p>
      </div>
      <div id="regions" class="regions"></div>
    </section>

    <section aria-labelledby="playground-title">
      <div class="section-head">
        <h2 id="playground-title">Playground</h2>
        <p class="muted">Sends a streamed request through the public API with an API key of this gateway.</p>
      </div>
      <div class="playground">
        <form id="playground-form" class="card stack">
          <label for="api-key">API key</label>
          <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck="false" placeholder="sy-…" aria-describedby="api-key-help" required>
          <p id="api-key-help" class="hint">Create one with <code>POST /admin/keys</code>. Kept in this tab only.</p>
          <div class="row">
            <div class="stack">
              <label for="model">Model</label>
              <select id="model" name="model" disabled><option value="">Enter an API key</option></select>
            </div>
            <div class="stack">
              <label for="region">Region</label>
              <select id="region" name="region"><option value="">Gateway default</option></select>
            </div>
          </div>
          <fieldset class="segmented">
            <legend>API</legend>
            <label><input type="radio" name="mode" value="chat" checked> Chat</label>
            <label><input type="radio" name="mode" value="completion"> Completion</label>
          </fieldset>
          <label for="prompt">Prompt</label>
          <textarea id="prompt" name="prompt" rows="4" required>Once upon a time</textarea>
          <div class="row params">
            <div class="stack"><label for="max-tokens">Max tokens</label><input id="max-tokens" name="max-tokens" type="number" min="1" step="1" value="128" required></div>
            <div class="stack"><label for="temperature">Temperature</label><input id="temperature" name="temperature" type="number" min="0" max="2" step="0.05" value="0.8" required></div>
            <div class="stack"><label for="top-p">Top p</label><input id="top-p" name="top-p" type="number" min="0.01" max="1" step="0.01" value="1" required></div>
            <div class="stack"><label for="seed">Seed</label><input id="seed" name="seed" type="number" step="1" placeholder="random"></div>
          </div>
          <p id="playground-error" class="form-error" role="alert"></p>
          <div class="actions">
            <button id="send" class="button" type="submit">Send</button>
            <button id="stop" class="button secondary" type="button" disabled>Stop</button>
          </div>
        </form>
        <div class="card output-card">
          <h3 class="output-title">Completion</h3>
          <div id="completion" class="completion" aria-live="polite" aria-busy="false" tabindex="0" aria-label="Completion text"></div>
          <dl class="facts" id="completion-facts">
            <div><dt>Region</dt><dd id="fact-region">–</dd></div>
            <div><dt>Node</dt><dd id="fact-node">–</dd></div>
            <div><dt>Attempts</dt><dd id="fact-attempts">–</dd></div>
            <div><dt>First token</dt><dd id="fact-first-token">–</dd></div>
            <div><dt>Tokens/s</dt><dd id="fact-speed">–</dd></div>
            <div><dt>Finish</dt><dd id="fact-finish">–</dd></div>
            <div class="wide"><dt>Usage</dt><dd id="fact-usage">–</dd></div>
            <div class="wide"><dt>Request id</dt><dd id="fact-request-id" class="mono">–</dd></div>
          </dl>
        </div>
      </div>
    </section>
  </div>
</main>
<div id="announcer" class="visually-hidden" aria-live="polite"></div>
</body>
</html>
`

export const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#1f4fd1"/><path d="M7 22h6l6-12h6M7 10h6l2 4M19 22h6" fill="none" stroke="#fff" stroke-width="2.5" stroke-linecap="round" stroke-linejoin="round"/></svg>
`
