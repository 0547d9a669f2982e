/**
 * /console/playground.js: sends a streamed request through the public API with the operator's
 * API key and shows the text as it arrives, which region and node served it, and the usage.
 */
export const PLAYGROUND_JS = String.raw`// The console's playground: a streamed request through the public API.
const KEY_STORAGE = 'switchyard.playgroundKey'
const $ = (id) => document.getElementById(id)

function errorText(status, body) {
  const error = body && body.error
  if (error && error.message) return 'HTTP ' + status + (error.code ? ' (' + error.code + ')' : '') + ': ' + error.message
  return 'HTTP ' + status
}

/** Splits a text/event-stream into the data of each event; returns what is left of an unfinished event. */
function takeEvents(buffer, onData) {
  for (;;) {
    const match = /\r?\n\r?\n/.exec(buffer)
    if (!match) return buffer
    const block = buffer.slice(0, match.index)
    buffer = buffer.slice(match.index + match[0].length)
    const data = block.split(/\r?\n/).filter((line) => line.startsWith('data:')).map((line) => line.slice(5).replace(/^ /, '')).join('\n')
    if (data) onData(data)
  }
}

export function createPlayground() {
  const form = $('playground-form')
  const keyInput = $('api-key')
  const modelSelect = $('model')
  const regionSelect = $('region')
  const output = $('completion')
  const error = $('playground-error')
  const send = $('send')
  const stop = $('stop')
  const facts = {
    region: $('fact-region'), node: $('fact-node'), attempts: $('fact-attempts'), firstToken: $('fact-first-token'),
    speed: $('fact-speed'), finish: $('fact-finish'), usage: $('fact-usage'), requestId: $('fact-request-id'),
  }
  let regionHeader = 'x-switchyard-region'
  let running = null

  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || ''
  keyInput.addEventListener('change', () => {
    sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim())
    loadModels()
  })

  async function loadModels() {
    const key = keyInput.value.trim()
    error.textContent = ''
    if (!key) return setModels([], 'Enter an API key')
    setModels([], 'Loading models…')
    try {
      const response = await fetch('/v1/models', { headers: { authorization: 'Bearer ' + key }, cache: 'no-store' })
      const body = await response.json().catch(() => null)
      if (!response.ok) {
        setModels([], response.status === 401 ? 'API key not accepted' : 'Models unavailable')
        error.textContent = response.status === 401 ? 'The gateway did not accept this API key.' : errorText(response.status, body)
        return
      }
      setModels(body.data.map((m) => m.id), 'This key may use no model')
    } catch {
      setModels([], 'Models unavailable')
      error.textContent = 'Could not reach the gateway.'
    }
  }

  function setModels(ids, emptyLabel) {
    const previous = modelSelect.value
    modelSelect.replaceChildren()
    if (!ids.length) modelSelect.append(new Option(emptyLabel, ''))
    for (const id of ids) modelSelect.append(new Option(id, id, false, id === previous))
    modelSelect.disabled = ids.length === 0
  }

  function resetFacts() {
    for (const fact of Object.values(facts)) fact.textContent = '–'
    output.replaceChildren()
    error.textContent = ''
  }

  function setRunning(on) {
    send.disabled = on
    stop.disabled = !on
    output.setAttribute('aria-busy', String(on))
    output.classList.toggle('streaming', on)
  }

  stop.addEventListener('click', () => running && running.abort())

  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    const key = keyInput.value.trim()
    if (!key) return void (error.textContent = 'Enter an API key.')
    if (!modelSelect.value) return void (error.textContent = 'Choose a model (they load once the API key is accepted).')
    const chat = form.elements.mode.value === 'chat'
    const prompt = $('prompt').value
    const body = {
      model: modelSelect.value,
      max_tokens: Number($('max-tokens').value),
      temperature: Number($('temperature').value),
      top_p: Number($('top-p').value),
      stream: true,
      stream_options: { include_usage: true },
    }
    if ($('seed').value !== '') body.seed = Number($('seed').value)
    if (chat) body.messages = [{ role: 'user', content: prompt }]
    else body.prompt = prompt
    const headers = { 'content-type': 'application/json', authorization: 'Bearer ' + key }
    if (regionSelect.value) headers[regionHeader] = regionSelect.value

    resetFacts()
    setRunning(true)
    running = new AbortController()
    const started = performance.now()
    let firstTokenAt = null
    let chunks = 0
    try {
      const response = await fetch(chat ? '/v1/chat/completions' : '/v1/completions', { method: 'POST', headers, body: JSON.stringify(body), signal: running.signal, cache: 'no-store' })
      facts.region.textContent = response.headers.get('x-switchyard-region') || '–'
      facts.node.textContent = response.headers.get('x-switchyard-backend') || '–'
      facts.attempts.textContent = response.headers.get('x-switchyard-attempts') || '–'
      facts.requestId.textContent = response.headers.get('x-request-id') || '–'
      if (!response.ok) {
        error.textContent = errorText(response.status, await response.json().catch(() => null))
        return
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader()
      let buffer = ''
      const onData = (data) => {
        if (data === '[DONE]') return
        const event = JSON.parse(data)
        if (event.error) {
          error.textContent = 'The stream failed: ' + (event.error.message || 'unknown error')
          facts.finish.textContent = 'error'
          return
        }
        const choice = event.choices && event.choices[0]
        const text = choice ? (chat ? choice.delta && choice.delta.content : choice.text) : null
        if (text) {
          if (firstTokenAt === null) {
            firstTokenAt = performance.now()
            facts.firstToken.textContent = Math.round(firstTokenAt - started) + ' ms'
          }
          output.append(text)
          chunks++
        }
        if (choice && choice.finish_reason) facts.finish.textContent = choice.finish_reason
        if (event.usage) {
          const u = event.usage
          facts.usage.textContent = u.prompt_tokens + ' prompt + ' + u.completion_tokens + ' completion = ' + u.total_tokens + ' tokens'
          const seconds = firstTokenAt === null ? 0 : (performance.now() - firstTokenAt) / 1000
          if (seconds > 0) facts.speed.textContent = Math.round(u.completion_tokens / seconds).toLocaleString()
        }
      }
      for (;;) {
        const { value, done } = await reader.read()
        if (done) break
        buffer = takeEvents(buffer + value, onData)
      }
      if (!chunks && !error.textContent) error.textContent = 'The model returned no text.'
    } catch (e) {
      if (e.name === 'AbortError') facts.finish.textContent = 'stopped'
      else error.textContent = 'The request failed: ' + e.message
    } finally {
      setRunning(false)
      running = null
    }
  })

  return {
    /** Called with each snapshot: the regions a request may ask for, and the header to ask with. */
    setRegions(names, defaultRegion, header) {
      regionHeader = header
      const wanted = ['', ...names]
      const current = Array.from(regionSelect.options, (o) => o.value)
      if (wanted.join('\n') === current.join('\n')) return
      const previous = regionSelect.value
      regionSelect.replaceChildren(new Option('Gateway default' + (defaultRegion ? ' (' + defaultRegion + ')' : ''), ''))
      for (const name of names) regionSelect.append(new Option(name, name, false, name === previous))
    },
    loadModels,
    /** Forgets the API key and what was shown (on sign-out). */
    clear() {
      if (running) running.abort()
      sessionStorage.removeItem(KEY_STORAGE)
      keyInput.value = ''
      setModels([], 'Enter an API key')
      resetFacts()
    },
  }
}
`
