import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import type { Engine } from '../../../backend/engine/engine.ts'
import { ResumeError, type ResumePoint, replayResume } from '../../../backend/engine/resume.ts'
import {
  generateText,
  type ServedModel,
  type TextChunk,
  type TextRequest,
} from '../../../backend/engine/text-generation.ts'
import { loadModelFolder } from '../../../backend/model/folder.ts'
import { TextTokenizer } from '../../../backend/model/tokenizer.ts'
import type { SequenceRequest, TokenEvent } from '../../../backend/scheduler/types.ts'
import { STORIES_DIR } from '../../helpers/paths.ts'

/**
 * Resumption at the text layer, with the real tokenizer and an engine that plays a script of
 * tokens (so the text can hold what the tiny model never writes: multi-byte characters split
 * over byte-fallback tokens). Every cut of the stream must resume to exactly the same text.
 */

const folder = loadModelFolder(STORIES_DIR)
const tokenizer = new TextTokenizer(folder.tokenizerJson, folder.tokenizerConfig)
const PROMPT = tokenizer.encode('Once upon a time')
const EOS = folder.eosTokenIds[0]
// 'é' is one token here; the cat is four byte-fallback tokens that decode only together.
const SCRIPT = [...tokenizer.encode('Tom saw a café 🐱 and said END of it.', false), EOS]

/** Plays SCRIPT from where the request's generated ids leave off, as the scheduler would. */
function scriptedModel(): ServedModel {
  const engine = {
    info: { shape: { vocabSize: 512 } },
    queuedCount: 0,
    abort: () => {},
    submit(request: Omit<SequenceRequest, 'id'>, onEvent: (event: TokenEvent) => void): number {
      const start = request.generatedIds?.length ?? 0
      assert.deepEqual(request.generatedIds ?? [], SCRIPT.slice(0, start), 'the engine gets the ids already generated')
      void (async () => {
        for (let i = start; i < SCRIPT.length; i++) {
          await new Promise((resolve) => setImmediate(resolve))
          if (request.eosTokenIds.includes(SCRIPT[i])) return onEvent({ id: 1, finish: 'stop' })
          onEvent({ id: 1, token: SCRIPT[i], finish: i + 1 >= request.maxTokens ? 'length' : undefined })
          if (i + 1 >= request.maxTokens) return
        }
      })()
      return 1
    },
  }
  return { id: 'scripted', folder, tokenizer, engine: engine as unknown as Engine, created: 0 }
}

const sampling = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  logprobs: -1,
}

async function run(
  model: ServedModel,
  request: Omit<TextRequest, 'prompts' | 'n' | 'sampling'>,
  point?: ResumePoint,
): Promise<TextChunk[]> {
  const resume = point && replayResume(model, { prompt: PROMPT, ...request }, point)
  const chunks: TextChunk[] = []
  for await (const chunk of generateText(model, { prompts: [PROMPT], n: 1, sampling, ...request, resume }, 8))
    chunks.push(chunk)
  return chunks
}

const joined = (chunks: TextChunk[]) => ({
  text: chunks.map((c) => c.text).join(''),
  ids: chunks.flatMap((c) => c.tokenIds),
  finish: chunks.at(-1)?.finishReason,
})

describe('resuming a choice from its token ids and delivered text', () => {
  for (const [name, request] of [
    ['to EOS', { maxTokens: 100, stop: [] }],
    ['to max_tokens, with a stop prefix held back', { maxTokens: 12, stop: ['café!'] }],
    ['to a stop sequence', { maxTokens: 100, stop: ['END'] }],
  ] as const) {
    test(`every cut resumes to the same text, ids and finish (${name})`, async () => {
      const model = scriptedModel()
      const options = { ...request, stop: [...request.stop] }
      const reference = await run(model, options)
      const full = joined(reference)
      for (let k = 0; k < reference.length; k++) {
        const received = joined(reference.slice(0, k))
        const resumed = joined(await run(model, options, { tokenIds: received.ids, textOffset: received.text.length }))
        assert.equal(received.text + resumed.text, full.text, `cut after ${k}`)
        assert.deepEqual([...received.ids, ...resumed.ids], full.ids, `cut after ${k}`)
        assert.equal(resumed.finish, full.finish, `cut after ${k}`)
      }
    })
  }

  test('the cat emoji is held back until its last byte token, and a cut inside it resumes cleanly', async () => {
    const model = scriptedModel()
    const reference = await run(model, { maxTokens: 100, stop: [] })
    assert.match(joined(reference).text, /café 🐱 and/)
    const held = reference.findIndex((c) => c.tokenIds.length > 0 && c.text === '')
    assert.ok(held > 0, 'a byte token carried no text')
    const received = joined(reference.slice(0, held + 1))
    const resumed = joined(
      await run(model, { maxTokens: 100, stop: [] }, { tokenIds: received.ids, textOffset: received.text.length }),
    )
    assert.equal(received.text + resumed.text, joined(reference).text)
  })

  test('text the client did not receive is sent first', async () => {
    const model = scriptedModel()
    const full = joined(await run(model, { maxTokens: 100, stop: [] }))
    const resumed = joined(
      await run(model, { maxTokens: 100, stop: [] }, { tokenIds: SCRIPT.slice(0, 6), textOffset: 3 }),
    )
    assert.equal(full.text.slice(0, 3) + resumed.text, full.text)
    assert.deepEqual(resumed.ids, SCRIPT.slice(6, -1))
  })

  test('a resume point that cannot belong to the request is refused with the field it names', () => {
    const model = scriptedModel()
    const refused = (point: ResumePoint, maxTokens = 100) => {
      try {
        replayResume(model, { prompt: PROMPT, maxTokens, stop: ['END'] }, point)
        return null
      } catch (error) {
        assert.ok(error instanceof ResumeError)
        return error.param
      }
    }
    assert.equal(refused({ tokenIds: [512], textOffset: 0 }), 'resume.token_ids')
    assert.equal(refused({ tokenIds: SCRIPT.slice(0, 5), textOffset: 0 }, 4), 'resume.token_ids')
    assert.equal(refused({ tokenIds: Array(510).fill(274), textOffset: 0 }, 1000), 'resume.token_ids')
    // Decoded in place after the prompt, the completion starts with SentencePiece's space.
    const text = ' Tom saw'
    assert.equal(refused({ tokenIds: SCRIPT.slice(0, 3), textOffset: text.length + 1 }), 'resume.text_offset')
    assert.equal(refused({ tokenIds: SCRIPT.slice(0, 3), textOffset: text.length }), null)
    // Already past the stop: the finished choice, counted up to the token that completed it.
    const done = replayResume(
      model,
      { prompt: PROMPT, maxTokens: 100, stop: ['END'] },
      { tokenIds: SCRIPT, textOffset: 0 },
    )
    assert.equal(done.finished, 'stop')
    assert.equal(done.pending, ' Tom saw a café 🐱 and said ')
    assert.equal(done.tokens, SCRIPT.indexOf(tokenizer.encode('D', false).at(-1)!) + 1)
  })
})
