import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import OpenAI from 'openai'
import { type BackendProcess, postJson, readSse, startBackend } from '../helpers/backend-process.ts'
import { referenceContinuation } from '../helpers/reference.ts'

/**
 * End-to-end checks of a real backend node serving the real stories260K model: the OpenAI
 * routes, /generate and the operations routes, over HTTP and through the official `openai`
 * client. The ground truth is the greedy continuation of "Once upon a time" recorded in the
 * model's SOURCE.txt (parsed at test time by `referenceContinuation()`).
 */

const MODEL = 'stories260K'
const PROMPT = 'Once upon a time'
/** "Once upon a time" is [1, 403, 407, 261, 378] with BOS (SOURCE.txt). */
const PROMPT_TOKENS = 5
const REFERENCE = referenceContinuation()

interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}
interface CompletionLogprobs {
  tokens: string[]
  token_logprobs: number[]
  top_logprobs: Record<string, number>[]
  text_offset: number[]
}
interface Completion {
  id: string
  object: string
  created: number
  model: string
  choices: { index: number; text: string; logprobs: CompletionLogprobs | null; finish_reason: string | null }[]
  usage?: Usage
}
interface ChatTokenLogprob {
  token: string
  logprob: number
  bytes: number[] | null
  top_logprobs: { token: string; logprob: number; bytes: number[] | null }[]
}
interface ChatCompletion {
  id: string
  object: string
  model: string
  choices: {
    index: number
    message: { role: string; content: string }
    logprobs: { content: ChatTokenLogprob[] } | null
    finish_reason: string
  }[]
  usage: Usage
}
interface ChatChunk {
  id: string
  object: string
  model: string
  choices: {
    index: number
    delta: { role?: string; content?: string }
    logprobs: unknown
    finish_reason: string | null
  }[]
  usage?: Usage
}
interface GenerateResponse {
  generated_text: string | string[]
  finish_reason: string | string[]
  model: string
  inference_time_ms: number
  input_tokens: number
  output_tokens: number
}

let backend: BackendProcess
let client: OpenAI

before(async () => {
  backend = await startBackend()
  client = new OpenAI({ apiKey: 'unused', baseURL: `${backend.url}/v1`, maxRetries: 0, timeout: 60_000 })
})
after(async () => {
  await backend?.stop()
})

/** POSTs JSON and expects a 200 JSON answer. */
async function post<T>(path: string, body: object): Promise<T> {
  const response = await postJson(`${backend.url}${path}`, body)
  const text = await response.text()
  assert.equal(response.status, 200, `${path} answered ${response.status}: ${text}`)
  assert.match(response.headers.get('content-type') ?? '', /application\/json/)
  return JSON.parse(text) as T
}

const complete = (body: object) => post<Completion>('/v1/completions', { model: MODEL, ...body })
const chat = (body: object) =>
  post<ChatCompletion>('/v1/chat/completions', {
    model: MODEL,
    messages: [{ role: 'user', content: 'Tell me a story.' }],
    ...body,
  })

/** POSTs a streaming request; returns its events, checking the SSE framing and the final [DONE]. */
async function stream<T>(path: string, body: object): Promise<T[]> {
  const response = await postJson(`${backend.url}${path}`, { model: MODEL, ...body, stream: true })
  assert.equal(response.status, 200)
  assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/)
  const events = await readSse(response)
  assert.ok(events.length >= 2, 'a stream has at least one chunk and [DONE]')
  assert.equal(events.at(-1), '[DONE]', 'the stream ends with data: [DONE]')
  assert.equal(events.filter((e) => e === '[DONE]').length, 1)
  return events.slice(0, -1) as T[]
}

/** Concatenated text of a completions stream, per choice index. */
function streamedTexts(events: Completion[]): Map<number, string> {
  const texts = new Map<number, string>()
  for (const event of events)
    for (const choice of event.choices) texts.set(choice.index, (texts.get(choice.index) ?? '') + choice.text)
  return texts
}

function streamedChat(events: ChatChunk[]): Map<number, string> {
  const texts = new Map<number, string>()
  for (const event of events)
    for (const choice of event.choices)
      texts.set(choice.index, (texts.get(choice.index) ?? '') + (choice.delta.content ?? ''))
  return texts
}

const beforeStop = (stop: string) => {
  const at = REFERENCE.indexOf(stop)
  assert.ok(at > 0, `"${stop}" occurs in the reference`)
  return REFERENCE.slice(0, at)
}

/** True when `text` ends with a non-empty proper prefix of `stop` (a partly leaked stop string). */
const endsWithPartial = (text: string, stop: string) =>
  Array.from({ length: stop.length - 1 }, (_, i) => stop.slice(0, i + 1)).some((p) => text.endsWith(p))

test('the reference continuation parsed from SOURCE.txt looks right', () => {
  assert.ok(
    REFERENCE.startsWith(', there was a little girl named Lily. She loved to play outside in the park.'),
    REFERENCE,
  )
  assert.ok(REFERENCE.endsWith('too high.\nLily'), JSON.stringify(REFERENCE))
  assert.ok(!REFERENCE.includes('\\n') && !REFERENCE.includes('  '))
})

describe('POST /v1/completions', () => {
  test('greedy continuation of "Once upon a time" equals the reference (SOURCE.txt)', async () => {
    const body = await complete({ prompt: PROMPT, max_tokens: 64, temperature: 0 })
    assert.equal(body.object, 'text_completion')
    assert.equal(body.model, MODEL)
    assert.match(body.id, /^cmpl-/)
    assert.ok(Number.isInteger(body.created))
    assert.equal(body.choices.length, 1)
    const [choice] = body.choices
    assert.equal(choice.index, 0)
    assert.equal(choice.logprobs, null)
    assert.ok(choice.text.length >= REFERENCE.length, `64 tokens cover the reference: ${JSON.stringify(choice.text)}`)
    assert.equal(choice.text.slice(0, REFERENCE.length), REFERENCE)
    assert.equal(choice.finish_reason, 'length')
    assert.deepEqual(body.usage, {
      prompt_tokens: PROMPT_TOKENS,
      completion_tokens: 64,
      total_tokens: PROMPT_TOKENS + 64,
    })
  })

  test('max_tokens: finish_reason "length", completion_tokens == max_tokens, usage sums', async () => {
    for (const maxTokens of [1, 7]) {
      const body = await complete({ prompt: PROMPT, max_tokens: maxTokens, temperature: 0 })
      assert.equal(body.choices[0].finish_reason, 'length')
      assert.ok(REFERENCE.startsWith(body.choices[0].text))
      assert.deepEqual(body.usage, {
        prompt_tokens: PROMPT_TOKENS,
        completion_tokens: maxTokens,
        total_tokens: PROMPT_TOKENS + maxTokens,
      })
    }
    // Without max_tokens the OpenAI default of 16 applies.
    const byDefault = await complete({ prompt: PROMPT, temperature: 0 })
    assert.equal(byDefault.usage!.completion_tokens, 16)
    assert.equal(byDefault.choices[0].finish_reason, 'length')
  })

  test('streaming: chunks concatenate to the non-streamed text; include_usage adds a usage chunk', async () => {
    const plain = await complete({ prompt: PROMPT, max_tokens: 40, temperature: 0 })
    const events = await stream<Completion>('/v1/completions', {
      prompt: PROMPT,
      max_tokens: 40,
      temperature: 0,
      stream_options: { include_usage: true },
    })
    const usageChunk = events.at(-1)!
    assert.deepEqual(usageChunk.choices, [])
    assert.deepEqual(usageChunk.usage, {
      prompt_tokens: PROMPT_TOKENS,
      completion_tokens: 40,
      total_tokens: PROMPT_TOKENS + 40,
    })
    const chunks = events.slice(0, -1)
    assert.ok(chunks.length > 1, 'text arrives in several chunks')
    for (const chunk of chunks) {
      assert.equal(chunk.object, 'text_completion')
      assert.equal(chunk.model, MODEL)
      assert.equal(chunk.id, chunks[0].id)
      assert.equal(chunk.choices.length, 1)
      assert.equal(chunk.choices[0].index, 0)
      assert.equal(chunk.usage, undefined)
    }
    assert.deepEqual([...streamedTexts(chunks).entries()], [[0, plain.choices[0].text]])
    assert.ok(REFERENCE.startsWith(plain.choices[0].text))
    const reasons = chunks.map((c) => c.choices[0].finish_reason)
    assert.equal(reasons.at(-1), 'length')
    assert.ok(reasons.slice(0, -1).every((r) => r === null))
  })

  test('streaming without include_usage has no usage chunk', async () => {
    const events = await stream<Completion>('/v1/completions', { prompt: PROMPT, max_tokens: 5, temperature: 0 })
    assert.ok(events.every((e) => e.choices.length === 1 && e.usage === undefined))
    assert.equal(
      streamedTexts(events).get(0),
      (await complete({ prompt: PROMPT, max_tokens: 5, temperature: 0 })).choices[0].text,
    )
  })

  test('same seed gives the same text; different seeds give different texts', async () => {
    const request = { prompt: PROMPT, max_tokens: 24, temperature: 1, seed: 42 }
    const first = await complete(request)
    const second = await complete(request)
    assert.equal(first.choices[0].text, second.choices[0].text)
    const other = await complete({ ...request, seed: 1042 })
    assert.notEqual(other.choices[0].text, first.choices[0].text)
    // A seeded stream samples exactly like the non-streamed request.
    const streamed = await stream<Completion>('/v1/completions', request)
    assert.equal(streamedTexts(streamed).get(0), first.choices[0].text)
  })

  test('n=3 with a seed: choices 0..2, reproducible, choice i uses seed + i', async () => {
    const request = { prompt: PROMPT, max_tokens: 16, temperature: 1, seed: 7, n: 3 }
    const first = await complete(request)
    assert.deepEqual(
      first.choices.map((c) => c.index),
      [0, 1, 2],
    )
    const texts = first.choices.map((c) => c.text)
    assert.ok(new Set(texts).size > 1, `the choices differ: ${JSON.stringify(texts)}`)
    const again = await complete(request)
    assert.deepEqual(
      again.choices.map((c) => c.text),
      texts,
    )
    const completionTokens = first.choices.length * 16
    assert.ok(first.usage!.completion_tokens <= completionTokens && first.usage!.completion_tokens > 0)
    assert.equal(first.usage!.prompt_tokens, PROMPT_TOKENS, 'the prompt counts once, not n times')
    // docs/api.md: "choice i of n uses seed + i".
    const single = await complete({ ...request, n: 1, seed: 8 })
    assert.equal(single.choices[0].text, texts[1])
    // Streamed n=3 interleaves the same three texts.
    const events = await stream<Completion>('/v1/completions', request)
    const streamed = streamedTexts(events)
    assert.deepEqual(
      [0, 1, 2].map((i) => streamed.get(i)),
      texts,
    )
  })

  test('stop (string and list): text ends right before the stop string, finish_reason "stop"', async () => {
    for (const stop of ['Lily', ['Lily'], ['zzzz', 'Lily'], 'girl named', ['named Lily', 'park']]) {
      const first = (Array.isArray(stop) ? stop : [stop]).map((s) => REFERENCE.indexOf(s)).filter((i) => i >= 0)
      const expected = REFERENCE.slice(0, Math.min(...first))
      const body = await complete({ prompt: PROMPT, max_tokens: 40, temperature: 0, stop })
      const [choice] = body.choices
      assert.equal(choice.text, expected, `stop ${JSON.stringify(stop)}`)
      assert.equal(choice.finish_reason, 'stop')
      for (const s of Array.isArray(stop) ? stop : [stop]) assert.ok(!choice.text.includes(s))
      assert.ok(body.usage!.completion_tokens < 40)
    }
  })

  test('stop in streaming mode: never emitted, not even in part', async () => {
    for (const stop of ['Lily', ['Lily', 'zzzz'], 'girl named', ' Lily.']) {
      const stops = Array.isArray(stop) ? stop : [stop]
      const events = await stream<Completion>('/v1/completions', {
        prompt: PROMPT,
        max_tokens: 40,
        temperature: 0,
        stop,
      })
      const text = streamedTexts(events).get(0)!
      assert.equal(text, beforeStop(stops[0]), `stop ${JSON.stringify(stop)}`)
      for (const s of stops) {
        assert.ok(!text.includes(s))
        // The text legitimately ends before the stop string; no chunk may carry any of it.
        for (const event of events) assert.ok(!event.choices[0].text.includes(s))
        assert.ok(!endsWithPartial(text, s), `no partial "${s}" at the end: ${JSON.stringify(text)}`)
      }
      assert.equal(events.at(-1)!.choices[0].finish_reason, 'stop')
      assert.ok(events.slice(0, -1).every((e) => e.choices[0].finish_reason === null))
    }
    // A stop string whose prefix is generated but which never completes is released at the end.
    const events = await stream<Completion>('/v1/completions', {
      prompt: PROMPT,
      max_tokens: 9,
      temperature: 0,
      stop: 'little boy',
    })
    const text = streamedTexts(events).get(0)!
    assert.equal(text, (await complete({ prompt: PROMPT, max_tokens: 9, temperature: 0 })).choices[0].text)
    assert.ok(text.includes('little girl'), JSON.stringify(text))
    assert.equal(events.at(-1)!.choices[0].finish_reason, 'length')
  })

  test('logprobs: 2 — OpenAI completions shape, values <= 0, greedy token is the top alternative', async () => {
    const body = await complete({ prompt: PROMPT, max_tokens: 6, temperature: 0, logprobs: 2 })
    const [choice] = body.choices
    const lp = choice.logprobs!
    assert.ok(lp, 'logprobs present')
    assert.equal(lp.tokens.length, 6)
    assert.equal(lp.token_logprobs.length, 6)
    assert.equal(lp.top_logprobs.length, 6)
    assert.equal(lp.text_offset.length, 6)
    for (let i = 0; i < 6; i++) {
      assert.equal(typeof lp.tokens[i], 'string')
      assert.ok(lp.token_logprobs[i] <= 0 && Number.isFinite(lp.token_logprobs[i]))
      const alternatives = Object.entries(lp.top_logprobs[i])
      assert.ok(alternatives.length >= 1 && alternatives.length <= 2, JSON.stringify(lp.top_logprobs[i]))
      for (const [, value] of alternatives) assert.ok(value <= 0)
      const best = alternatives.reduce((a, b) => (b[1] > a[1] ? b : a))
      assert.equal(best[0], lp.tokens[i], 'greedy picks the most likely token')
      assert.equal(best[1], lp.token_logprobs[i])
      if (i > 0) assert.ok(lp.text_offset[i] >= lp.text_offset[i - 1])
    }
    // Without logprobs, none are reported.
    assert.equal((await complete({ prompt: PROMPT, max_tokens: 2, temperature: 0 })).choices[0].logprobs, null)
    // logprobs: 0 reports the chosen tokens' logprobs with no alternatives.
    const zero = (await complete({ prompt: PROMPT, max_tokens: 2, temperature: 0, logprobs: 0 })).choices[0].logprobs!
    assert.equal(zero.token_logprobs.length, 2)
  })

  test('logprobs tokens concatenate to the generated text (OpenAI semantics)', async () => {
    const body = await complete({ prompt: PROMPT, max_tokens: 6, temperature: 0, logprobs: 2 })
    const { text, logprobs } = body.choices[0]
    assert.equal(logprobs!.tokens.join(''), text)
    // text_offset points at each token inside the text.
    for (let i = 0; i < logprobs!.tokens.length; i++) {
      const at = logprobs!.text_offset[i] - logprobs!.text_offset[0]
      assert.equal(text.slice(at, at + logprobs!.tokens[i].length), logprobs!.tokens[i])
    }
  })

  test('streamed logprobs carry one entry per token', async () => {
    const events = await stream<Completion>('/v1/completions', {
      prompt: PROMPT,
      max_tokens: 6,
      temperature: 0,
      logprobs: 1,
    })
    const tokens = events.flatMap((e) => e.choices[0].logprobs?.token_logprobs ?? [])
    assert.equal(tokens.length, 6)
    const plain = await complete({ prompt: PROMPT, max_tokens: 6, temperature: 0, logprobs: 1 })
    assert.deepEqual(tokens, plain.choices[0].logprobs!.token_logprobs)
  })

  test('batch prompts with n=2 give prompts × n choices, index = prompt × n + i', async () => {
    const body = await complete({ prompt: [PROMPT, 'Lily'], n: 2, max_tokens: 5, temperature: 0 })
    assert.deepEqual(
      body.choices.map((c) => c.index),
      [0, 1, 2, 3],
    )
    const greedy = (await complete({ prompt: PROMPT, max_tokens: 5, temperature: 0 })).choices[0].text
    const lily = (await complete({ prompt: 'Lily', max_tokens: 5, temperature: 0 })).choices[0].text
    assert.deepEqual(
      body.choices.map((c) => c.text),
      [greedy, greedy, lily, lily],
    )
    assert.ok(REFERENCE.startsWith(greedy))
    // "Lily" is [1, 317]: prompt tokens add up over the prompts.
    assert.deepEqual(body.usage, {
      prompt_tokens: PROMPT_TOKENS + 2,
      completion_tokens: 20,
      total_tokens: PROMPT_TOKENS + 2 + 20,
    })
  })

  test('token-id prompts: [1, 403, 407] continues like the text "Once upon"; lists of id lists batch', async () => {
    const ids = await complete({ prompt: [1, 403, 407], max_tokens: 6, temperature: 0 })
    const text = await complete({ prompt: 'Once upon', max_tokens: 6, temperature: 0 })
    assert.equal(text.usage!.prompt_tokens, 3)
    assert.equal(ids.usage!.prompt_tokens, 3)
    assert.equal(ids.choices[0].text, text.choices[0].text)
    assert.match(ids.choices[0].text, /^ a time/)
    const batch = await complete({
      prompt: [
        [1, 403, 407, 261, 378],
        [1, 403, 407],
      ],
      max_tokens: 6,
      temperature: 0,
    })
    assert.deepEqual(
      batch.choices.map((c) => c.index),
      [0, 1],
    )
    assert.ok(REFERENCE.startsWith(batch.choices[0].text))
    assert.equal(batch.choices[1].text, text.choices[0].text)
    assert.equal(batch.usage!.prompt_tokens, 8)
  })

  test('echo prepends the prompt', async () => {
    const body = await complete({ prompt: PROMPT, max_tokens: 4, temperature: 0, echo: true })
    assert.ok(body.choices[0].text.startsWith(PROMPT), body.choices[0].text)
    assert.ok((PROMPT + REFERENCE).startsWith(body.choices[0].text))
  })
})

describe('POST /v1/chat/completions', () => {
  test('non-streamed shape and usage', async () => {
    const body = await chat({ max_tokens: 12, temperature: 0 })
    assert.equal(body.object, 'chat.completion')
    assert.equal(body.model, MODEL)
    assert.match(body.id, /^chatcmpl-/)
    assert.equal(body.choices.length, 1)
    const [choice] = body.choices
    assert.equal(choice.index, 0)
    assert.equal(choice.message.role, 'assistant')
    assert.equal(typeof choice.message.content, 'string')
    assert.ok(choice.message.content.length > 0)
    assert.equal(choice.finish_reason, 'length')
    assert.equal(choice.logprobs, null)
    assert.equal(body.usage.completion_tokens, 12)
    assert.ok(body.usage.prompt_tokens > 0)
    assert.equal(body.usage.total_tokens, body.usage.prompt_tokens + 12)
    // max_completion_tokens is the newer name for the same limit.
    const newer = await chat({ max_completion_tokens: 12, temperature: 0 })
    assert.equal(newer.choices[0].message.content, choice.message.content)
  })

  test('streaming: first delta has role assistant; deltas concatenate to the non-streamed text; usage chunk', async () => {
    const plain = await chat({ max_tokens: 30, temperature: 0 })
    const events = await stream<ChatChunk>('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Tell me a story.' }],
      max_tokens: 30,
      temperature: 0,
      stream_options: { include_usage: true },
    })
    assert.equal(events[0].choices[0].delta.role, 'assistant')
    assert.equal(events[0].choices[0].index, 0)
    const usageChunk = events.at(-1)!
    assert.deepEqual(usageChunk.choices, [])
    assert.deepEqual(usageChunk.usage, plain.usage)
    const chunks = events.slice(0, -1)
    for (const chunk of chunks) {
      assert.equal(chunk.object, 'chat.completion.chunk')
      assert.equal(chunk.id, chunks[0].id)
      assert.match(chunk.id, /^chatcmpl-/)
      assert.equal(chunk.choices.length, 1)
    }
    assert.ok(
      chunks.slice(1).every((c) => c.choices[0].delta.role === undefined),
      'role only in the first delta',
    )
    assert.equal(streamedChat(chunks).get(0), plain.choices[0].message.content)
    assert.equal(chunks.at(-1)!.choices[0].finish_reason, 'length')
    assert.equal(chunks.filter((c) => c.choices[0].finish_reason !== null).length, 1)
  })

  test('seeded chat sampling is reproducible; n=3 gives indices 0..2', async () => {
    const request = { max_tokens: 12, temperature: 1, seed: 42, n: 3 }
    const first = await chat(request)
    assert.deepEqual(
      first.choices.map((c) => c.index),
      [0, 1, 2],
    )
    const again = await chat(request)
    assert.deepEqual(
      again.choices.map((c) => c.message.content),
      first.choices.map((c) => c.message.content),
    )
    const events = await stream<ChatChunk>('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Tell me a story.' }],
      ...request,
    })
    const streamed = streamedChat(events)
    assert.deepEqual(
      [0, 1, 2].map((i) => streamed.get(i)),
      first.choices.map((c) => c.message.content),
    )
    for (const i of [0, 1, 2])
      assert.equal(events.find((e) => e.choices[0].index === i)!.choices[0].delta.role, 'assistant')
  })

  test('stop in chat, streamed and not', async () => {
    const full = (await chat({ max_tokens: 30, temperature: 0 })).choices[0].message.content
    // A stop string taken from the middle of the greedy answer.
    const words = full.trim().split(/\s+/)
    const stop = words[Math.min(3, words.length - 1)]
    const expected = full.slice(0, full.indexOf(stop))
    const body = await chat({ max_tokens: 30, temperature: 0, stop: [stop] })
    assert.equal(body.choices[0].message.content, expected)
    assert.equal(body.choices[0].finish_reason, 'stop')
    const events = await stream<ChatChunk>('/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Tell me a story.' }],
      max_tokens: 30,
      temperature: 0,
      stop,
    })
    assert.equal(streamedChat(events).get(0), expected)
    assert.equal(events.at(-1)!.choices[0].finish_reason, 'stop')
  })

  test('logprobs: true, top_logprobs: 2 — OpenAI chat shape, values <= 0, greedy token is the top alternative', async () => {
    const body = await chat({ max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 })
    const content = body.choices[0].logprobs!.content
    assert.equal(content.length, 6)
    for (const entry of content) {
      assert.equal(typeof entry.token, 'string')
      assert.ok(entry.logprob <= 0)
      assert.ok(Array.isArray(entry.bytes))
      assert.equal(entry.top_logprobs.length, 2)
      for (const alt of entry.top_logprobs) {
        assert.equal(typeof alt.token, 'string')
        assert.ok(alt.logprob <= 0)
        assert.ok(Array.isArray(alt.bytes))
      }
      assert.ok(entry.top_logprobs[0].logprob >= entry.top_logprobs[1].logprob)
      assert.equal(entry.top_logprobs[0].token, entry.token)
      assert.equal(entry.top_logprobs[0].logprob, entry.logprob)
    }
    // logprobs: true alone reports the chosen tokens with no alternatives.
    const bare = await chat({ max_tokens: 3, temperature: 0, logprobs: true })
    assert.ok(bare.choices[0].logprobs!.content.every((e) => e.top_logprobs.length === 0))
    // logprobs: false / absent reports none.
    assert.equal((await chat({ max_tokens: 2, temperature: 0, logprobs: false })).choices[0].logprobs, null)
  })

  test('chat logprobs bytes decode to the message content', async () => {
    const body = await chat({ max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 2 })
    const content = body.choices[0].logprobs!.content
    assert.equal(Buffer.from(content.flatMap((e) => e.bytes!)).toString('utf8'), body.choices[0].message.content)
    assert.equal(content.map((e) => e.token).join(''), body.choices[0].message.content)
  })
})

describe('operations routes', () => {
  test('GET /v1/models lists stories260K', async () => {
    const response = await fetch(`${backend.url}/v1/models`)
    assert.equal(response.status, 200)
    const body = (await response.json()) as {
      object: string
      data: { id: string; object: string; owned_by: string; created: number; max_model_len: number }[]
    }
    assert.equal(body.object, 'list')
    const model = body.data.find((m) => m.id === MODEL)
    assert.ok(model, JSON.stringify(body))
    assert.equal(model.object, 'model')
    assert.equal(typeof model.owned_by, 'string')
    assert.ok(Number.isInteger(model.created))
    assert.equal(model.max_model_len, 512)
  })

  test('GET /model/info: name, parameters, device cpu, status ready', async () => {
    const response = await fetch(`${backend.url}/model/info`)
    assert.equal(response.status, 200)
    const body = (await response.json()) as {
      status: string
      models: { name: string; parameters: number; device: string; context_length: number; random_weights: boolean }[]
    }
    assert.equal(body.status, 'ready')
    assert.equal(body.models.length, 1)
    const [model] = body.models
    assert.equal(model.name, MODEL)
    assert.ok(model.parameters > 0)
    // ~260K parameters (SOURCE.txt).
    assert.ok(model.parameters > 200_000 && model.parameters < 400_000, String(model.parameters))
    assert.equal(model.device, 'cpu')
    assert.equal(model.context_length, 512)
    assert.equal(model.random_weights, false)
  })

  test('GET /health and GET /ready answer 200', async () => {
    const health = await fetch(`${backend.url}/health`)
    assert.equal(health.status, 200)
    assert.deepEqual(await health.json(), { status: 'ok' })
    const ready = await fetch(`${backend.url}/ready`)
    assert.equal(ready.status, 200)
    assert.deepEqual(await ready.json(), { status: 'ready' })
  })

  test('GET /metrics is Prometheus text with the generation metrics', async () => {
    await complete({ prompt: PROMPT, max_tokens: 3, temperature: 0 })
    const response = await fetch(`${backend.url}/metrics`)
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/)
    const text = await response.text()
    assert.match(text, /^# HELP switchyard_backend_generated_tokens_total /m)
    assert.match(text, /^# TYPE switchyard_backend_generated_tokens_total counter$/m)
    assert.match(text, /^# TYPE switchyard_backend_time_to_first_token_seconds histogram$/m)
    const generated = /^switchyard_backend_generated_tokens_total\{model="stories260K"\} (\d+)$/m.exec(text)
    assert.ok(generated && Number(generated[1]) >= 3, 'generated tokens are counted')
    const ttft = /^switchyard_backend_time_to_first_token_seconds_count\{model="stories260K"\} (\d+)$/m.exec(text)
    assert.ok(ttft && Number(ttft[1]) >= 1, 'time to first token is observed')
    assert.match(text, /^switchyard_backend_requests_total\{route="\/v1\/completions",status="200"\} \d+$/m)
  })
})

describe('POST /generate', () => {
  test('greedy: generated_text is the reference prefix, with timing and token counts', async () => {
    const body = await post<GenerateResponse>('/generate', { prompt: PROMPT, max_length: 20, temperature: 0 })
    assert.equal(typeof body.generated_text, 'string')
    assert.ok((body.generated_text as string).length > 0)
    assert.ok(REFERENCE.startsWith(body.generated_text as string), JSON.stringify(body.generated_text))
    assert.equal(body.finish_reason, 'length')
    assert.equal(body.model, MODEL)
    assert.equal(typeof body.inference_time_ms, 'number')
    assert.ok(body.inference_time_ms >= 0)
    assert.equal(body.input_tokens, PROMPT_TOKENS)
    assert.equal(body.output_tokens, 20)
    // The same text as /v1/completions.
    assert.equal(
      body.generated_text,
      (await complete({ prompt: PROMPT, max_tokens: 20, temperature: 0 })).choices[0].text,
    )
  })

  test('num_return_sequences: 2 gives lists; a seed makes them reproducible', async () => {
    const request = { prompt: PROMPT, max_length: 8, temperature: 1, seed: 3, num_return_sequences: 2 }
    const body = await post<GenerateResponse>('/generate', request)
    assert.ok(Array.isArray(body.generated_text) && body.generated_text.length === 2)
    assert.ok(Array.isArray(body.finish_reason) && body.finish_reason.length === 2)
    for (const text of body.generated_text) assert.equal(typeof text, 'string')
    assert.equal(body.input_tokens, PROMPT_TOKENS, 'the prompt counts once')
    assert.ok(body.output_tokens > 0 && body.output_tokens <= 16)
    const again = await post<GenerateResponse>('/generate', request)
    assert.deepEqual(again.generated_text, body.generated_text)
  })

  test('return_full_text prepends the prompt', async () => {
    const plain = await post<GenerateResponse>('/generate', { prompt: PROMPT, max_length: 10, temperature: 0 })
    const full = await post<GenerateResponse>('/generate', {
      prompt: PROMPT,
      max_length: 10,
      temperature: 0,
      return_full_text: true,
    })
    assert.equal(full.generated_text, PROMPT + plain.generated_text)
    assert.ok((PROMPT + REFERENCE).startsWith(full.generated_text as string))
  })

  test('stop ends the text before the stop string', async () => {
    const body = await post<GenerateResponse>('/generate', {
      prompt: PROMPT,
      max_length: 30,
      temperature: 0,
      stop: 'Lily',
    })
    assert.equal(body.generated_text, beforeStop('Lily'))
    assert.equal(body.finish_reason, 'stop')
  })
})

describe('the official openai client', () => {
  test('completions.create, streamed and not: greedy texts agree with the reference', async () => {
    const completion = await client.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 30, temperature: 0 })
    const text = completion.choices[0].text
    assert.ok(REFERENCE.startsWith(text) && text.length > 0, text)
    assert.equal(completion.choices[0].finish_reason, 'length')
    assert.equal(completion.usage?.prompt_tokens, PROMPT_TOKENS)
    const stream = await client.completions.create({
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 30,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    })
    let streamed = ''
    let usage: OpenAI.CompletionUsage | undefined
    for await (const chunk of stream) {
      for (const choice of chunk.choices) streamed += choice.text
      if (chunk.usage) usage = chunk.usage
    }
    assert.equal(streamed, text)
    assert.deepEqual(usage, { prompt_tokens: PROMPT_TOKENS, completion_tokens: 30, total_tokens: PROMPT_TOKENS + 30 })
  })

  test('chat.completions.create, streamed and not', async () => {
    const messages: OpenAI.ChatCompletionMessageParam[] = [
      { role: 'system', content: 'You tell stories.' },
      { role: 'user', content: 'Tell me a story.' },
    ]
    const completion = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 20, temperature: 0 })
    const message = completion.choices[0].message
    assert.equal(message.role, 'assistant')
    assert.equal(typeof message.content, 'string')
    assert.equal(completion.usage?.completion_tokens, 20)
    const stream = await client.chat.completions.create({
      model: MODEL,
      messages,
      max_tokens: 20,
      temperature: 0,
      stream: true,
    })
    let streamed = ''
    let role: string | undefined
    let finish: string | null = null
    for await (const chunk of stream) {
      const choice = chunk.choices[0]
      if (!choice) continue
      role ??= choice.delta.role
      streamed += choice.delta.content ?? ''
      finish = choice.finish_reason ?? finish
    }
    assert.equal(role, 'assistant')
    assert.equal(streamed, message.content)
    assert.equal(finish, 'length')
  })

  test('models.list()', async () => {
    const ids: string[] = []
    for await (const model of client.models.list()) ids.push(model.id)
    assert.ok(ids.includes(MODEL), JSON.stringify(ids))
  })

  test('an unknown model surfaces as OpenAI.NotFoundError (404, model_not_found); a bad value as BadRequestError', async () => {
    await assert.rejects(
      client.completions.create({ model: 'no-such-model', prompt: PROMPT, max_tokens: 2 }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.NotFoundError, String(error))
        assert.equal(error.status, 404)
        assert.equal(error.code, 'model_not_found')
        assert.equal(error.param, 'model')
        assert.match(error.message, /no-such-model/)
        return true
      },
    )
    await assert.rejects(
      client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }] }),
      OpenAI.NotFoundError,
    )
    await assert.rejects(
      client.completions.create({ model: MODEL, prompt: PROMPT, temperature: 5 }),
      (error: unknown) => {
        assert.ok(error instanceof OpenAI.BadRequestError, String(error))
        assert.equal(error.status, 400)
        assert.equal(error.param, 'temperature')
        return true
      },
    )
  })
})
