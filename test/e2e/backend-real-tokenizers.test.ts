import assert from 'node:assert/strict'
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { type BackendProcess, postJson, readSse, runBackendToExit, startBackend } from '../helpers/backend-process.ts'
import { STORIES_DIR } from '../helpers/paths.ts'
import { buildRealTokenizerModel, loadRealTokenizer } from '../helpers/real-tokenizers.ts'

/**
 * A real backend process serving random-weight graphs built with the real Qwen3 (byte-level
 * BPE) and Gemma 3 (SentencePiece with byte fallback) tokenizers and chat templates: streamed
 * chat deltas never hold a split character as U+FFFD and add up to the non-streamed text and
 * to the full decode of the sampled ids; a template's raise_exception is a 400; a stop string
 * is found across a character split over byte tokens.
 */

const scratch = mkdtempSync(join(tmpdir(), 'switchyard-real-tokenizers-'))
let backend: BackendProcess

before(async () => {
  for (const family of ['qwen3', 'gemma3'] as const) {
    await buildRealTokenizerModel(family, join(scratch, family))
    // Loaded here, not in a test: a gap of seconds between requests lets the node close the
    // client's idle keep-alive socket just as it is reused.
    loadRealTokenizer(family)
  }
  backend = await startBackend({ MODEL_DIR: scratch }, { timeoutMs: 240_000 })
})
after(async () => {
  await backend?.stop()
  rmSync(scratch, { recursive: true, force: true })
})

interface Choice {
  deltas: string[]
  text: string
  ids: number[]
  finish: string | null
}

async function chat(body: Record<string, unknown>): Promise<Choice[]> {
  const response = await postJson(`${backend.url}/v1/chat/completions`, { ...body, return_token_ids: true })
  assert.equal(response.status, 200, await response.clone().text())
  if (!body.stream) {
    const json = (await response.json()) as {
      choices: { message: { content: string }; token_ids: number[]; finish_reason: string }[]
    }
    return json.choices.map((c) => ({
      deltas: [c.message.content],
      text: c.message.content,
      ids: c.token_ids,
      finish: c.finish_reason,
    }))
  }
  const choices: Choice[] = []
  for (const event of (await readSse(response)) as (
    | string
    | { choices: { index: number; delta: { content?: string }; token_ids?: number[]; finish_reason: string | null }[] }
  )[]) {
    if (typeof event === 'string') continue
    for (const c of event.choices) {
      const choice = (choices[c.index] ??= { deltas: [], text: '', ids: [], finish: null })
      if (c.delta.content) choice.deltas.push(c.delta.content)
      choice.ids.push(...(c.token_ids ?? []))
      choice.finish = c.finish_reason ?? choice.finish
    }
  }
  for (const choice of choices) choice.text = choice.deltas.join('')
  return choices
}

const PROMPTS = [
  'Write a haiku about 日本 🎉',
  'Tell me a story with emoji 👩‍👩‍👧‍👦',
  'Hello',
  '你好，请介绍一下你自己',
]

describe('real tokenizers in a real backend', () => {
  for (const model of ['qwen3', 'gemma3'] as const) {
    test(`${model}: streamed chat deltas equal the non-streamed text and the full decode`, async () => {
      const tokenizer = loadRealTokenizer(model)
      let splitTokens = 0
      for (const content of PROMPTS) {
        // Greedy: sampling at a temperature sorts the whole vocabulary per token when random
        // weights make the distribution flat (seconds per request at 150k+ ids).
        {
          const body = { model, messages: [{ role: 'user', content }], max_tokens: 48, temperature: 0 }
          const streamed = await chat({ ...body, stream: true })
          const whole = await chat(body)
          assert.equal(streamed.length, whole.length)
          streamed.forEach((choice, i) => {
            assert.deepEqual(choice.ids, whole[i].ids, 'same ids streamed or not')
            assert.equal(choice.text, whole[i].text, 'deltas add up to the non-streamed text')
            assert.equal(choice.text, tokenizer.decode(choice.ids), 'and to the full decode')
            // A delta ends in U+FFFD only if the text is over and ended inside a character.
            choice.deltas.slice(0, -1).forEach((d) => {
              assert.ok(!d.endsWith('\uFFFD'), JSON.stringify(d))
            })
            splitTokens += choice.ids.filter((id) => tokenizer.decode([id]).includes('\uFFFD')).length
          })
        }
      }
      // Qwen3's random model samples byte tokens here, so the hold-back path runs in the node.
      // (Gemma's 256 byte tokens among 262k are too rare to be sampled; the resume test below
      // sends them through the node instead.)
      if (model === 'qwen3') assert.ok(splitTokens > 0, `${model}: no token split a character`)
    })
  }

  test("gemma3: the template's raise_exception is a 400 with its message", async () => {
    const response = await postJson(`${backend.url}/v1/chat/completions`, {
      model: 'gemma3',
      messages: [
        { role: 'user', content: 'a' },
        { role: 'user', content: 'b' },
      ],
    })
    assert.equal(response.status, 400)
    assert.deepEqual(await response.json(), {
      error: {
        message: 'Conversation roles must alternate user/assistant/user/assistant/...',
        type: 'invalid_request_error',
        param: 'messages',
        code: 'chat_template_error',
      },
    })
  })

  test('a stop string split over byte tokens is found; the text before it is exact', async () => {
    // Replayed ids (resume) go through the node's decoder and stop matcher token by token:
    // "𠜎" is four byte-fallback tokens in Gemma and byte-level pieces in Qwen3.
    for (const model of ['qwen3', 'gemma3'] as const) {
      const tokenizer = loadRealTokenizer(model)
      const ids = tokenizer.encode('ok 👍🏽 then 𠜎 and more', false)
      assert.ok(ids.some((id) => tokenizer.decode([id]).includes('\uFFFD')))
      for (const stream of [false, true]) {
        const response = await postJson(`${backend.url}/v1/completions`, {
          model,
          prompt: 'x',
          max_tokens: 40,
          temperature: 0,
          stop: ['𠜎'],
          stream,
          resume: { token_ids: ids, text_offset: 0 },
        })
        assert.equal(response.status, 200, await response.clone().text())
        const events = stream
          ? ((await readSse(response)).filter((e) => typeof e !== 'string') as {
              choices: { text: string; finish_reason: string | null }[]
            }[])
          : [(await response.json()) as { choices: { text: string; finish_reason: string | null }[] }]
        const text = events.map((e) => e.choices[0]?.text ?? '').join('')
        assert.equal(text, 'ok 👍🏽 then ', `${model} stream=${stream}`)
        assert.equal(events.at(-1)!.choices[0].finish_reason, 'stop')
      }
    }
  })
})

test('a chat template that does not parse stops the node with one line naming the folder', async () => {
  const dir = join(scratch, 'broken-template', 'stories')
  mkdirSync(join(dir, 'onnx'), { recursive: true })
  for (const f of ['config.json', 'generation_config.json', 'tokenizer.json'])
    cpSync(join(STORIES_DIR, f), join(dir, f))
  symlinkSync(join(STORIES_DIR, 'onnx/model.onnx'), join(dir, 'onnx/model.onnx'))
  const config = JSON.parse(readFileSync(join(STORIES_DIR, 'tokenizer_config.json'), 'utf8'))
  writeFileSync(
    join(dir, 'tokenizer_config.json'),
    JSON.stringify({ ...config, chat_template: '{% for m in messages %}{{ m.content }}' }),
  )
  const { code, output } = await runBackendToExit({ MODEL_DIR: dir })
  assert.equal(code, 1)
  assert.match(
    output,
    /switchyard backend: model folder .*broken-template\/stories: chat template "default" in tokenizer_config.json does not parse: .*\n/,
  )
  assert.doesNotMatch(output, /\n\s+at /, 'no stack trace')
})
