import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { replayResume } from '../../../backend/engine/resume.ts'
import { generateText, type ServedModel, type TextRequest } from '../../../backend/engine/text-generation.ts'
import type { GrammarSpec } from '../../../backend/grammar/spec.ts'
import { STORIES_DIR } from '../../helpers/paths.ts'
import { startServedModel } from '../../helpers/served-model.ts'

/** Constrained decoding together with seeds, n > 1, stop sequences, logprobs and resume (stories260K, real engine). */
const schema: GrammarSpec = {
  type: 'json_schema',
  schema: JSON.stringify({
    type: 'object',
    properties: {
      hero: { type: 'string', maxLength: 12 },
      age: { type: 'integer', minimum: 1, maximum: 99 },
      tags: { type: 'array', items: { enum: ['brave', 'kind', 'sad'] }, maxItems: 3 },
    },
    required: ['hero', 'age', 'tags'],
    additionalProperties: false,
  }),
}
const sampling = (extra: Partial<TextRequest['sampling']> = {}) => ({
  temperature: 1,
  topP: 0.95,
  topK: 40,
  minP: 0,
  presencePenalty: 0,
  frequencyPenalty: 0,
  repetitionPenalty: 1,
  logprobs: -1,
  ...extra,
})

let model: ServedModel
let prompt: number[]
before(async () => {
  model = await startServedModel(STORIES_DIR)
  prompt = model.tokenizer.encode('Once upon a time')
  assert.ok((await model.engine.compileGrammar(schema)).ok)
})
after(() => model.engine.close())

interface Choice {
  text: string
  ids: number[]
  finish?: string
  logprobs: number
}

async function run(request: Partial<TextRequest>): Promise<Choice[]> {
  const full: TextRequest = {
    prompts: [prompt],
    n: 1,
    maxTokens: 80,
    stop: [],
    sampling: sampling(),
    grammar: schema,
    ...request,
  }
  const choices: Choice[] = Array.from({ length: full.prompts.length * full.n }, () => ({
    text: '',
    ids: [],
    logprobs: 0,
  }))
  for await (const chunk of generateText(model, full, 1024)) {
    const choice = choices[chunk.index]
    choice.text += chunk.text
    choice.ids.push(...chunk.tokenIds)
    choice.logprobs += chunk.logprobs?.length ?? 0
    if (chunk.finishReason) choice.finish = chunk.finishReason
  }
  return choices
}

describe('constrained decoding with the other generation features', () => {
  test('the same seed gives the same output; n > 1 gives several valid choices', async () => {
    const [a] = await run({ sampling: sampling({ seed: 42 }) })
    const [b] = await run({ sampling: sampling({ seed: 42 }) })
    assert.equal(a.text, b.text)
    assert.deepEqual(a.ids, b.ids)
    const many = await run({ n: 6, sampling: sampling({ seed: 42 }) })
    assert.equal(many[0].text, a.text, 'choice 0 of a seeded request uses the seed itself')
    for (const choice of many) {
      assert.equal(choice.finish, 'stop')
      assert.deepEqual(Object.keys(JSON.parse(choice.text)), ['hero', 'age', 'tags'])
    }
    assert.ok(new Set(many.map((c) => c.text)).size > 1)
  })

  test('logprobs come with every constrained token', async () => {
    const [choice] = await run({ sampling: sampling({ seed: 3, logprobs: 2 }) })
    assert.equal(choice.logprobs, choice.ids.length)
  })

  test('a stop sequence ends a constrained choice early', async () => {
    const [choice] = await run({ sampling: sampling({ seed: 5 }), stop: ['"age"'] })
    assert.equal(choice.finish, 'stop')
    assert.ok(choice.text.startsWith('{"hero": "'), choice.text)
    assert.ok(!choice.text.includes('age'), choice.text)
  })

  test('max_tokens shorter than the grammar needs ends with length', async () => {
    const [choice] = await run({ maxTokens: 4, sampling: sampling({ seed: 5 }) })
    assert.equal(choice.finish, 'length')
    assert.equal(choice.ids.length, 4)
  })

  for (const [name, params] of [
    ['greedy', sampling({ temperature: 0 })],
    ['seeded', sampling({ seed: 77 })],
  ] as const) {
    test(`resume replays the ids through the matcher: the continued ${name} stream is identical`, async () => {
      const request = { prompts: [prompt], n: 1, maxTokens: 80, stop: [], sampling: params, grammar: schema }
      const [whole] = await run(request)
      assert.equal(whole.finish, 'stop')
      const cut = Math.floor(whole.ids.length / 2)
      const delivered = model.tokenizer.decode(whole.ids.slice(0, cut)).length - 2
      const resumed = replayResume(
        model,
        { prompt, maxTokens: 80, stop: [] },
        { tokenIds: whole.ids.slice(0, cut), textOffset: delivered },
      )
      const [rest] = await run({ ...request, resume: resumed })
      assert.equal(whole.text.slice(0, delivered) + rest.text, whole.text)
      assert.deepEqual(whole.ids.slice(cut), rest.ids)
    })
  }

  test('resume ids the grammar does not allow end the choice with an error naming them', async () => {
    const bad = model.tokenizer.encode('hello', false)
    const resumed = replayResume(model, { prompt, maxTokens: 80, stop: [] }, { tokenIds: bad, textOffset: 0 })
    await assert.rejects(
      run({ resume: resumed, sampling: sampling({ seed: 1 }) }),
      /do not follow the requested format/,
    )
  })
})
