import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { Hono } from 'hono'
import { parseApiRequest } from '../../gateway/pipeline/parse-request.ts'
import { type BackendProcess, postJson, readSse, startBackend } from '../helpers/backend-process.ts'

/**
 * echo + logprobs on /v1/completions against a real backend serving stories260K: the prompt's
 * logprobs (first null, as OpenAI), max_tokens 0 (scoring), text_offset across stream chunks,
 * and the bad inputs around them. MAX_PREFILL_TOKENS is small so prompts are chunked.
 */

const MODEL = 'stories260K'
interface Logprobs {
  tokens: string[]
  token_logprobs: (number | null)[]
  top_logprobs: (Record<string, number> | null)[]
  text_offset: number[]
}
interface Completion {
  choices: { index: number; text: string; logprobs: Logprobs | null; finish_reason: string | null }[]
  usage?: { prompt_tokens: number; completion_tokens: number }
}

let backend: BackendProcess
before(async () => {
  backend = await startBackend({ MAX_PREFILL_TOKENS: '3' })
})
after(async () => {
  await backend?.stop()
})

async function complete(body: object): Promise<Completion> {
  const response = await postJson(`${backend.url}/v1/completions`, { model: MODEL, ...body })
  const text = await response.text()
  assert.equal(response.status, 200, text)
  return JSON.parse(text) as Completion
}

describe('echo with logprobs', () => {
  test('max_tokens 0 returns the prompt scored: first logprob null, the others what generation reports', async () => {
    const scored = await complete({ prompt: 'Once upon a time', max_tokens: 0, echo: true, logprobs: 1 })
    const [choice] = scored.choices
    assert.equal(choice.text, 'Once upon a time')
    assert.equal(choice.finish_reason, 'length')
    assert.deepEqual(scored.usage && [scored.usage.prompt_tokens, scored.usage.completion_tokens], [5, 0])
    const lp = choice.logprobs!
    assert.equal(lp.tokens.length, 5)
    assert.equal(lp.token_logprobs[0], null)
    assert.equal(lp.top_logprobs[0], null)
    assert.ok(lp.token_logprobs.slice(1).every((l) => l! < 0))
    // " a" and " time" generated greedily after "Once upon" carry the same logprobs.
    const generated = (await complete({ prompt: 'Once upon', max_tokens: 2, temperature: 0, logprobs: 1 })).choices[0]
    assert.equal(generated.text, ' a time')
    for (let i = 0; i < 2; i++)
      assert.ok(Math.abs(lp.token_logprobs[3 + i]! - generated.logprobs!.token_logprobs[i]!) < 1e-4, `token ${3 + i}`)
    assert.deepEqual(lp.text_offset.slice(0, 2), [0, lp.tokens[0].length])
  })

  test("with generation: prompt entries first, then the completion's, offsets running on", async () => {
    const body = await complete({ prompt: 'Once upon a time', max_tokens: 4, temperature: 0, echo: true, logprobs: 2 })
    const { text, logprobs } = body.choices[0]
    assert.ok(text.startsWith('Once upon a time'))
    assert.equal(logprobs!.tokens.length, 5 + 4)
    for (let i = 1; i < logprobs!.tokens.length; i++)
      assert.equal(logprobs!.text_offset[i], logprobs!.text_offset[i - 1] + logprobs!.tokens[i - 1].length)
    assert.deepEqual(logprobs!.tokens.slice(5).join(''), text.slice('Once upon a time'.length))
    assert.ok(logprobs!.top_logprobs.slice(1).every((t) => t !== null && Object.keys(t).length >= 1))
  })

  test('streamed: one prompt chunk then the tokens; text_offset is cumulative, not [0] in every chunk', async () => {
    const response = await postJson(`${backend.url}/v1/completions`, {
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 5,
      temperature: 0,
      echo: true,
      logprobs: 1,
      stream: true,
    })
    assert.equal(response.status, 200)
    const events = (await readSse(response)).slice(0, -1) as Completion[]
    const entries = events.flatMap((e) => e.choices.filter((c) => c.logprobs).map((c) => c.logprobs!))
    const offsets = entries.flatMap((l) => l.text_offset)
    const tokens = entries.flatMap((l) => l.tokens)
    assert.equal(tokens.length, 5 + 5)
    for (let i = 1; i < offsets.length; i++) assert.equal(offsets[i], offsets[i - 1] + tokens[i - 1].length)
    const plain = await complete({ prompt: 'Once upon a time', max_tokens: 5, temperature: 0, echo: true, logprobs: 1 })
    assert.deepEqual(
      entries.flatMap((l) => l.token_logprobs),
      plain.choices[0].logprobs!.token_logprobs,
    )
    assert.equal(events.map((e) => e.choices[0]?.text ?? '').join(''), plain.choices[0].text)
  })

  test('plain streams (no echo) also count text_offset across chunks', async () => {
    const response = await postJson(`${backend.url}/v1/completions`, {
      model: MODEL,
      prompt: 'Once upon a time',
      max_tokens: 6,
      temperature: 0,
      logprobs: 0,
      stream: true,
    })
    const events = (await readSse(response)).slice(0, -1) as Completion[]
    const entries = events.flatMap((e) => e.choices.filter((c) => c.logprobs).map((c) => c.logprobs!))
    const offsets = entries.flatMap((l) => l.text_offset)
    assert.equal(offsets.length, 6)
    assert.ok(
      offsets.slice(1).every((o, i) => o > offsets[i]),
      JSON.stringify(offsets),
    )
  })

  test('echo without logprobs and max_tokens 0 returns just the prompt; n and batch prompts work', async () => {
    const body = await complete({ prompt: ['Once upon a time', 'Lily'], n: 2, max_tokens: 0, echo: true })
    assert.deepEqual(
      body.choices.map((c) => [c.text, c.logprobs, c.finish_reason]),
      [
        ['Once upon a time', null, 'length'],
        ['Once upon a time', null, 'length'],
        ['Lily', null, 'length'],
        ['Lily', null, 'length'],
      ],
    )
  })
})

describe('echo / max_tokens bad input', () => {
  const cases: [string, object, string][] = [
    ['max_tokens 0 without echo', { prompt: 'Once', max_tokens: 0 }, 'max_tokens'],
    ['max_tokens 0 with echo false', { prompt: 'Once', max_tokens: 0, echo: false }, 'max_tokens'],
    ['negative max_tokens with echo', { prompt: 'Once', max_tokens: -1, echo: true }, 'max_tokens'],
    ['echo as a string', { prompt: 'Once', echo: 'yes', logprobs: 1 }, 'echo'],
    ['logprobs above 5 with echo', { prompt: 'Once', echo: true, logprobs: 6, max_tokens: 0 }, 'logprobs'],
  ]
  for (const [name, body, param] of cases) {
    test(`${name} → 400 naming ${param}`, async () => {
      const response = await postJson(`${backend.url}/v1/completions`, { model: MODEL, ...body })
      const json = (await response.json()) as { error: { param: string | null; type: string } }
      assert.equal(response.status, 400, JSON.stringify(json))
      assert.equal(json.error.type, 'invalid_request_error')
      assert.equal(json.error.param, param)
    })
  }
  test('chat keeps max_tokens >= 1', async () => {
    const response = await postJson(`${backend.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: 'user', content: 'Hi' }],
      max_tokens: 0,
    })
    assert.equal(response.status, 400)
  })
})

describe("the gateway's request parsing (same schemas)", () => {
  const app = new Hono()
  app.post(
    '/v1/completions',
    parseApiRequest('completions', { maxPromptChars: 10_000, maxGrammarChars: 65_536, defaultMaxTokens: 64 }),
    (c) => c.json({ reserved: c.get('apiRequest').maxCompletionTokens }),
  )
  app.onError(
    (error) =>
      (error as { getResponse?: () => Response }).getResponse?.() ?? new Response('unexpected', { status: 500 }),
  )
  const send = (body: object) =>
    app.request('/v1/completions', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })

  test('accepts max_tokens 0 with echo and reserves no completion tokens', async () => {
    const response = await send({ model: MODEL, prompt: 'Once', max_tokens: 0, echo: true, logprobs: 1 })
    assert.equal(response.status, 200)
    assert.deepEqual(await response.json(), { reserved: 0 })
  })

  test("refuses max_tokens 0 without echo with a 400 in OpenAI's shape", async () => {
    const response = await send({ model: MODEL, prompt: 'Once', max_tokens: 0 })
    assert.equal(response.status, 400)
    assert.equal(((await response.json()) as { error: { param: string } }).error.param, 'max_tokens')
  })
})

test('/model/info reports that the LM head runs on sampled rows only', async () => {
  const info = (await (await fetch(`${backend.url}/model/info`)).json()) as {
    models: { logits_gathered: boolean; kv_fast_path: boolean }[]
  }
  assert.equal(info.models[0].logits_gathered, true)
  assert.equal(info.models[0].kv_fast_path, true)
})
