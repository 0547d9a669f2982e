import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { type BackendProcess, postJson, readSse, startBackend } from '../helpers/backend-process.ts'

/**
 * Stream resumption on a real node serving stories260K: a stream is cut after chunk k, the ids
 * and text received so far are sent back as `resume`, and received + resumed must be exactly
 * the uninterrupted stream (text, ids, finish reason, usage). Greedy and seeded sampling with
 * penalties, stop sequences held back or straddling the cut, chat, non-streaming, bad input.
 */

const MODEL = 'stories260K'
const PROMPT = 'Once upon a time'
const EOS = 2

interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}
/** One SSE event of a choice, reduced to what resumption cares about. */
interface Piece {
  text: string
  ids: number[]
  finish: string | null
}
interface Streamed {
  pieces: Piece[]
  usage: Usage
  text: string
  ids: number[]
  finish: string | null
}

let backend: BackendProcess
before(async () => {
  backend = await startBackend()
})
after(async () => {
  await backend?.stop()
})

type Route = 'completions' | 'chat'
const paths: Record<Route, string> = { completions: '/v1/completions', chat: '/v1/chat/completions' }
const bases: Record<Route, Record<string, unknown>> = {
  completions: { model: MODEL, prompt: PROMPT },
  chat: { model: MODEL, messages: [{ role: 'user', content: 'Tell me a story about a cat.' }] },
}

async function stream(route: Route, body: Record<string, unknown>): Promise<Streamed> {
  const response = await postJson(backend.url + paths[route], {
    ...bases[route],
    ...body,
    stream: true,
    return_token_ids: true,
    stream_options: { include_usage: true },
  })
  assert.equal(response.status, 200, await response.clone().text())
  const events = (await readSse(response)) as (string | { choices: Record<string, any>[]; usage?: Usage })[]
  assert.equal(events.at(-1), '[DONE]')
  const pieces: Piece[] = []
  let usage: Usage | undefined
  for (const event of events) {
    if (typeof event === 'string') continue
    if (event.usage) usage = event.usage
    const choice = event.choices[0]
    if (!choice) continue
    assert.ok(Array.isArray(choice.token_ids), `every choice carries token_ids: ${JSON.stringify(choice)}`)
    pieces.push({
      text: (route === 'chat' ? choice.delta.content : choice.text) ?? '',
      ids: choice.token_ids,
      finish: choice.finish_reason,
    })
  }
  assert.ok(usage, 'usage was sent')
  return { pieces, usage, ...joined(pieces) }
}

const joined = (pieces: Piece[]) => ({
  text: pieces.map((p) => p.text).join(''),
  ids: pieces.flatMap((p) => p.ids),
  finish: [...pieces].reverse().find((p) => p.finish)?.finish ?? null,
})

/** Cuts the reference after each of `cuts` pieces, resumes, and checks the joined result. */
async function checkResumes(
  route: Route,
  body: Record<string, unknown>,
  reference: Streamed,
  cuts: number[],
): Promise<void> {
  for (const k of cuts) {
    const received = joined(reference.pieces.slice(0, k))
    const resumed = await stream(route, {
      ...body,
      resume: { token_ids: received.ids, text_offset: received.text.length },
    })
    const where = `${route} ${JSON.stringify(body)} cut after ${k} of ${reference.pieces.length} pieces`
    assert.equal(received.text + resumed.text, reference.text, where)
    assert.deepEqual([...received.ids, ...resumed.ids], reference.ids, where)
    assert.equal(resumed.finish, reference.finish, where)
    assert.deepEqual(resumed.usage, reference.usage, where)
    if (route === 'chat')
      assert.ok(
        !resumed.pieces.some((p) => p.text === '' && p.ids.length === 0 && !p.finish),
        `${where}: no second role chunk`,
      )
  }
}

/** Cut points: every one (the node is fast), which includes 0, 1 and the last. */
const everyCut = (reference: Streamed) => Array.from({ length: reference.pieces.length }, (_, k) => k)
/** Cuts right after a piece whose ids arrived with their text held back (stop matcher). */
const heldCuts = (reference: Streamed) =>
  everyCut(reference).filter(
    (k) => k > 0 && reference.pieces[k - 1].ids.length > 0 && reference.pieces[k - 1].text === '',
  )

describe('stream resumption (return_token_ids + resume) on stories260K', () => {
  test('greedy: resuming after any chunk gives the uninterrupted text, ids and usage; held-back text and a straddling stop', async () => {
    // ' park!' holds ' park' back until '.' arrives; 'a big, red' ends the story across tokens.
    const body = { temperature: 0, max_tokens: 60, stop: [' park!', 'a big, red'] }
    const reference = await stream('completions', body)
    assert.ok(
      reference.text.startsWith(', there was a little girl named Lily. She loved to play outside in the park.'),
      reference.text,
    )
    assert.ok(reference.text.endsWith('she saw '), reference.text)
    assert.equal(reference.finish, 'stop')
    assert.equal(reference.usage.completion_tokens, reference.ids.length)
    assert.ok(heldCuts(reference).length >= 2, 'some cuts fall while text is held back')
    await checkResumes('completions', body, reference, everyCut(reference))
  })

  test('seeded sampling with penalties: every cut, including where the stop matcher holds text', async () => {
    // Neither stop ever matches, but every token ending in 'e' is held back for one step, and a
    // whole ' a' token (common in these stories) is held, so its piece carries ids and no text.
    const body = {
      temperature: 0.9,
      top_p: 0.9,
      seed: 7,
      frequency_penalty: 0.5,
      max_tokens: 48,
      stop: ['e\u0001', ' a\u0001'],
    }
    const reference = await stream('completions', body)
    assert.equal(reference.finish, 'length')
    assert.equal(reference.ids.length, 48)
    assert.ok(heldCuts(reference).length >= 1, 'some cuts fall while text is held back')
    // Different from greedy, so the seeded draws really matter.
    const greedy = await stream('completions', { temperature: 0, max_tokens: 48 })
    assert.notEqual(reference.text, greedy.text)
    await checkResumes('completions', body, reference, everyCut(reference))
  })

  test('seeded sampling: a stop sequence that straddles the cut is still honoured exactly', async () => {
    const sampling = {
      temperature: 1,
      top_k: 40,
      seed: 11,
      presence_penalty: 0.4,
      repetition_penalty: 1.1,
      max_tokens: 60,
    }
    const probe = await stream('completions', sampling)
    // A stop made of the text of three tokens in the middle: every cut inside it straddles it.
    const offsets = probe.pieces.map((_, i) => joined(probe.pieces.slice(0, i)).text.length)
    const stop = probe.text.slice(offsets[20], offsets[23])
    assert.ok(
      stop.length >= 3 && probe.text.indexOf(stop) === offsets[20],
      `stop ${JSON.stringify(stop)} is new at token 20`,
    )
    const body = { ...sampling, stop: [stop] }
    const reference = await stream('completions', body)
    assert.equal(reference.finish, 'stop')
    assert.equal(reference.text, probe.text.slice(0, offsets[20]))
    assert.deepEqual(reference.ids, probe.ids.slice(0, 23))
    await checkResumes('completions', body, reference, [0, 1, 19, 20, 21, 22])
  })

  test('chat: seeded stream with penalties resumes exactly, without a second role chunk', async () => {
    const body = {
      temperature: 0.8,
      seed: 5,
      presence_penalty: 0.3,
      repetition_penalty: 1.2,
      max_tokens: 40,
      stop: ['e\u0001'],
    }
    const reference = await stream('chat', body)
    assert.ok(reference.pieces[0].text === '' && reference.pieces[0].ids.length === 0, 'the role chunk comes first')
    assert.ok(heldCuts(reference).length >= 1)
    await checkResumes('chat', body, reference, everyCut(reference))
  })

  test('a stream that ends at EOS resumes to the same EOS', async () => {
    const body = { temperature: 0.9, seed: 1, max_tokens: 400 }
    const reference = await stream('completions', body)
    assert.equal(reference.finish, 'stop', 'the story ended at EOS within 400 tokens')
    assert.ok(!reference.ids.includes(EOS) && !reference.ids.includes(1), 'EOS is not among the token ids')
    const n = reference.pieces.length
    await checkResumes('completions', body, reference, [Math.floor(n / 2), n - 2, n - 1])
  })

  test('non-streaming: the response is the tail of the original, with its ids, logprobs and full usage', async () => {
    const body = {
      model: MODEL,
      prompt: PROMPT,
      temperature: 0.9,
      top_p: 0.9,
      seed: 7,
      frequency_penalty: 0.5,
      max_tokens: 30,
      logprobs: 2,
      return_token_ids: true,
    }
    const full = await (await postJson(`${backend.url}/v1/completions`, body)).json()
    const ids: number[] = full.choices[0].token_ids
    assert.equal(ids.length, 30)
    const cut = 12
    const received = joined((await stream('completions', { ...body, logprobs: null })).pieces.slice(0, cut))
    assert.deepEqual(received.ids, ids.slice(0, cut))
    const response = await postJson(`${backend.url}/v1/completions`, {
      ...body,
      resume: { token_ids: received.ids, text_offset: received.text.length },
    })
    assert.equal(response.status, 200)
    const resumed = await response.json()
    const choice = resumed.choices[0]
    assert.equal(received.text + choice.text, full.choices[0].text)
    assert.deepEqual(choice.token_ids, ids.slice(cut))
    assert.equal(choice.finish_reason, 'length')
    assert.deepEqual(resumed.usage, full.usage)
    assert.deepEqual(choice.logprobs.tokens, full.choices[0].logprobs.tokens.slice(cut))
    choice.logprobs.token_logprobs.forEach((lp: number, i: number) => {
      assert.ok(Math.abs(lp - full.choices[0].logprobs.token_logprobs[cut + i]) < 1e-4)
    })
  })

  test("chat: text the client did not receive (text_offset below the ids' text) is sent first", async () => {
    const body = { temperature: 0, max_tokens: 20 }
    const reference = await stream('chat', body)
    const received = joined(reference.pieces.slice(0, 8))
    const resumed = await stream('chat', { ...body, resume: { token_ids: received.ids, text_offset: 3 } })
    assert.ok(
      resumed.pieces[0].text.length > 0 && resumed.pieces[0].ids.length === 0,
      'the owed text comes first, without ids',
    )
    assert.equal(received.text.slice(0, 3) + resumed.text, reference.text)
    assert.deepEqual([...received.ids, ...resumed.ids], reference.ids)
  })

  test('echo: text_offset counts the echoed prompt, which is re-sent only if it was not delivered', async () => {
    const body = { temperature: 0, max_tokens: 12, echo: true }
    const reference = await stream('completions', body)
    assert.ok(reference.text.startsWith(PROMPT))
    await checkResumes('completions', body, reference, everyCut(reference))
    // Part of the echoed prompt delivered, no tokens yet.
    const resumed = await stream('completions', { ...body, resume: { token_ids: [], text_offset: 4 } })
    assert.equal(PROMPT.slice(0, 4) + resumed.text, reference.text)
  })

  test('token ids that already ended the choice (EOS, max_tokens, a stop sequence) give the finished choice', async () => {
    const reference = await stream('completions', { temperature: 0, max_tokens: 20 })
    const cut = reference.ids.slice(0, 8)
    const text = joined(reference.pieces.slice(0, 8)).text
    const atEos = await stream('completions', {
      temperature: 0,
      max_tokens: 20,
      resume: { token_ids: [...cut, EOS], text_offset: text.length },
    })
    assert.deepEqual({ text: atEos.text, ids: atEos.ids, finish: atEos.finish }, { text: '', ids: [], finish: 'stop' })
    assert.equal(atEos.usage.completion_tokens, 8)
    // All max_tokens ids received but not the finish (chat sends it in its own event).
    const atLength = await stream('completions', {
      temperature: 0,
      max_tokens: 20,
      resume: { token_ids: reference.ids, text_offset: reference.text.length },
    })
    assert.deepEqual(
      { text: atLength.text, ids: atLength.ids, finish: atLength.finish },
      { text: '', ids: [], finish: 'length' },
    )
    assert.deepEqual(atLength.usage, reference.usage)
    // A stop sequence completed by the last id: finished, text before the stop only.
    const stop = reference.text.slice(text.length - 4, text.length)
    const atStop = await postJson(`${backend.url}/v1/completions`, {
      ...bases.completions,
      temperature: 0,
      max_tokens: 20,
      stop,
      return_token_ids: true,
      resume: { token_ids: cut, text_offset: text.length - 4 },
    })
    const body = await atStop.json()
    assert.equal(atStop.status, 200, JSON.stringify(body))
    assert.deepEqual(body.choices[0], { index: 0, text: '', logprobs: null, finish_reason: 'stop', token_ids: [] })
    assert.equal(body.usage.completion_tokens, 8)
  })
})

describe('bad resume input is a 400 in OpenAI shape', () => {
  const ids = [432, 383, 286]
  const cases: { name: string; route: Route; body: Record<string, unknown>; param: string | RegExp; code?: string }[] =
    [
      {
        name: 'n = 2',
        route: 'completions',
        body: { n: 2, resume: { token_ids: ids, text_offset: 0 } },
        param: 'resume',
      },
      {
        name: 'n = 2 (chat)',
        route: 'chat',
        body: { n: 2, resume: { token_ids: ids, text_offset: 0 } },
        param: 'resume',
      },
      {
        name: 'two prompts',
        route: 'completions',
        body: { prompt: ['a', 'b'], resume: { token_ids: ids, text_offset: 0 } },
        param: 'resume',
      },
      {
        name: 'id past the vocabulary',
        route: 'completions',
        body: { resume: { token_ids: [432, 512], text_offset: 0 } },
        param: 'resume.token_ids',
      },
      {
        name: 'negative id',
        route: 'completions',
        body: { resume: { token_ids: [-1], text_offset: 0 } },
        param: /^resume\.token_ids/,
      },
      {
        name: 'fractional id',
        route: 'chat',
        body: { resume: { token_ids: [4.5], text_offset: 0 } },
        param: /^resume\.token_ids/,
      },
      {
        name: 'ids not a list',
        route: 'completions',
        body: { resume: { token_ids: '432', text_offset: 0 } },
        param: /^resume\.token_ids/,
      },
      {
        name: 'text_offset missing',
        route: 'completions',
        body: { resume: { token_ids: ids } },
        param: 'resume.text_offset',
      },
      {
        name: 'negative text_offset',
        route: 'completions',
        body: { resume: { token_ids: ids, text_offset: -1 } },
        param: 'resume.text_offset',
      },
      {
        name: 'fractional text_offset',
        route: 'completions',
        body: { resume: { token_ids: ids, text_offset: 1.5 } },
        param: 'resume.text_offset',
      },
      {
        name: 'text_offset past the text',
        route: 'completions',
        body: { resume: { token_ids: ids, text_offset: 12 } },
        param: 'resume.text_offset',
      },
      {
        name: 'text_offset past the held-back text',
        route: 'completions',
        body: { stop: ' a!', resume: { token_ids: [...ids, 261], text_offset: 12 } },
        param: 'resume.text_offset',
      },
      {
        name: 'more ids than max_tokens',
        route: 'completions',
        body: { max_tokens: 2, resume: { token_ids: ids, text_offset: 0 } },
        param: 'resume.token_ids',
      },
      {
        name: 'more ids than the context holds',
        route: 'chat',
        body: { resume: { token_ids: Array(600).fill(432), text_offset: 0 } },
        param: 'resume.token_ids',
        code: 'context_length_exceeded',
      },
    ]
  for (const c of cases) {
    test(c.name, async () => {
      const response = await postJson(backend.url + paths[c.route], {
        ...bases[c.route],
        max_tokens: 20,
        ...c.body,
        stream: true,
      })
      const body = await response.json()
      assert.equal(response.status, 400, JSON.stringify(body))
      assert.deepEqual(Object.keys(body.error).sort(), ['code', 'message', 'param', 'type'])
      assert.equal(body.error.type, 'invalid_request_error')
      if (typeof c.param === 'string') assert.equal(body.error.param, c.param, body.error.message)
      else assert.match(body.error.param, c.param)
      assert.equal(body.error.code, c.code ?? 'invalid_value')
    })
  }

  test('the valid edge: text_offset equal to the text length, and the node still serves', async () => {
    const response = await postJson(`${backend.url}/v1/completions`, {
      ...bases.completions,
      temperature: 0,
      max_tokens: 20,
      resume: { token_ids: ids, text_offset: 11 },
    })
    assert.equal(response.status, 200)
    assert.match((await response.json()).choices[0].text, /^ a little girl/)
  })
})
