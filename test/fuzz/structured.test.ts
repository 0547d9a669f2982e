import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { after, before, describe, test } from 'node:test'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { type GatewayProcess, startGateway } from '../helpers/gateway-process.ts'
import { PATHS } from './bodies.ts'
import { assertOpenAiError, fuzz, send } from './harness.ts'
import { MAX_GRAMMAR_CHARS, STRUCTURED_CODES, structuredBody } from './structured-bodies.ts'

/**
 * Fuzzes the structured-output and tool fields (response_format, guided_*, tools) of a real
 * backend (stories260K) and of a real gateway in front of it: invalid, huge and deeply nested
 * schemas, odd regexes and grammars. Every answer is a 200 or a 400 in OpenAI's shape.
 */
const KEY = 'sy-fuzz-key-for-structured-outputs'
let backend: BackendProcess
let gateway: GatewayProcess
before(async () => {
  backend = await startBackend({ MAX_GRAMMAR_CHARS: String(MAX_GRAMMAR_CHARS) })
  gateway = await startGateway({
    backend: { url: backend.url },
    server: { maxGrammarChars: MAX_GRAMMAR_CHARS },
    auth: {
      apiKeys: [
        {
          id: 'fuzz',
          tenant: 'fuzz',
          hash: createHash('sha256').update(KEY).digest('hex'),
          limits: { requestsPerWindow: 1e9, tokensPerMinute: 1e12, maxConcurrent: 64 },
        },
      ],
    },
    limits: { perIp: { requestsPerWindow: 1e9, requestWindowSeconds: 60 } },
  })
})
after(async () => {
  await gateway?.stop()
  await backend?.stop()
})

for (const target of ['backend', 'gateway'] as const) {
  describe(`structured-output fields (${target})`, () => {
    test('are served or refused with a 400, never a 5xx', async (t) => {
      const base = () => (target === 'backend' ? backend.url : gateway.url)
      await fuzz(t, `${target} structured fields`, structuredBody, async (c) => {
        const answer = await send(`${base()}${PATHS[c.route]}`, {
          body: new TextEncoder().encode(JSON.stringify(c.body)),
          headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
        })
        if (answer.status === 200) return `${c.kind}: served`
        const { code } = assertOpenAiError(answer, { status: [400], codes: STRUCTURED_CODES })
        if (c.kind === 'huge schema') assert.equal(code, 'grammar_too_large')
        return `${c.kind}: ${code}`
      })
    })
  })
}

describe('after the structured fuzz', () => {
  test('the backend is alive and still generates constrained output', async () => {
    assert.equal(backend.child.exitCode, null)
    const answer = await send(`${backend.url}/v1/completions`, {
      headers: { 'content-type': 'application/json' },
      body: new TextEncoder().encode(
        JSON.stringify({ model: 'stories260K', prompt: 'x', max_tokens: 8, guided_choice: ['yes', 'no'] }),
      ),
    })
    assert.equal(answer.status, 200, answer.text)
    assert.ok(['yes', 'no'].includes(JSON.parse(answer.text).choices[0].text))
  })
})
