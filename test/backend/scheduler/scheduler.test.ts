import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { loadModelFolder } from '../../../backend/model/folder.ts'
import { ModelRunner } from '../../../backend/model/runner.ts'
import { TextTokenizer } from '../../../backend/model/tokenizer.ts'
import type { SamplingParams } from '../../../backend/sampling/sampler.ts'
import { Scheduler, type SchedulerOptions } from '../../../backend/scheduler/scheduler.ts'
import type { SequenceRequest, StepStats, TokenEvent } from '../../../backend/scheduler/types.ts'
import { STORIES_DIR, STORIES_ONNX } from '../../helpers/paths.ts'

const folder = loadModelFolder(STORIES_DIR)
const tokenizer = new TextTokenizer(folder.tokenizerJson, folder.tokenizerConfig)
const greedy: SamplingParams = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: 0,
  logprobs: -1,
}
const options: SchedulerOptions = {
  maxBatchSize: 64,
  maxTokensInFlight: 1 << 20,
  maxPrefillTokens: 4096,
  contextLength: 512,
}

/** Runs a scheduler in-process over the real runner and collects every sequence's events. */
function harness(runner: ModelRunner, opts: Partial<SchedulerOptions> = {}) {
  const events = new Map<number, TokenEvent[]>()
  const steps: StepStats[] = []
  const waiters = new Map<number, () => void>()
  const scheduler = new Scheduler(runner, { ...options, ...opts }, (batch, stats) => {
    steps.push(stats)
    for (const e of batch) {
      if (!events.has(e.id)) events.set(e.id, [])
      events.get(e.id)!.push(e)
      if (e.finish) waiters.get(e.id)?.()
    }
  })
  let nextId = 1
  const run = (request: Omit<SequenceRequest, 'id'>) => {
    const id = nextId++
    const done = new Promise<TokenEvent[]>((resolve) => waiters.set(id, () => resolve(events.get(id)!)))
    scheduler.add({ ...request, id })
    return { id, done }
  }
  const tokens = (list: TokenEvent[]) => list.filter((e) => e.token !== undefined).map((e) => e.token!)
  scheduler.start()
  return { scheduler, run, tokens, steps }
}

const prompts = [
  'Once upon a time',
  'Tom had a',
  'The little bird',
  'One day',
  'Sam and Mia went to the park and',
  'A big',
  'She',
  'The dog ran',
].map((t) => tokenizer.encode(t))

describe('Scheduler (continuous batching) on stories260K', () => {
  let runner: ModelRunner
  before(async () => {
    runner = await ModelRunner.load(
      STORIES_ONNX,
      { device: 'cpu', cudaDeviceId: 0, cpuThreads: 1, graphOptimization: 'all' },
      () => {},
    )
  })
  after(async () => runner.dispose())

  test('a request gets the same tokens alone or alongside 15 others (greedy and seeded)', async () => {
    const h = harness(runner)
    const seeded = (i: number): SamplingParams => ({
      ...greedy,
      temperature: 0.9,
      topP: 0.95,
      topK: 40,
      seed: 1000 + i,
    })
    const requests = Array.from({ length: 16 }, (_, i) => ({
      promptIds: prompts[i % prompts.length],
      maxTokens: 24 + (i % 5) * 7,
      sampling: i % 2 ? seeded(i) : greedy,
      eosTokenIds: [],
    }))
    const alone: number[][] = []
    for (const r of requests) alone.push(h.tokens(await h.run(r).done))
    const together = await Promise.all(requests.map((r) => h.run(r).done))
    assert.deepEqual(together.map(h.tokens), alone)
    assert.ok(Math.max(...h.steps.map((s) => s.batchSize)) >= 8, 'requests were batched')
    await h.scheduler.stop()
  })

  test('a resumed sequence (prompt + already generated ids) continues exactly as the original, greedy and seeded with penalties', async () => {
    const h = harness(runner)
    const configs: SamplingParams[] = [
      { ...greedy, repetitionPenalty: 1.3 },
      { ...greedy, temperature: 0.9, topP: 0.9, frequencyPenalty: 0.5, seed: 7 },
      { ...greedy, temperature: 1.1, topK: 40, presencePenalty: 0.6, repetitionPenalty: 1.2, seed: 3 },
    ]
    for (const sampling of configs) {
      const request = { promptIds: prompts[0], maxTokens: 40, sampling, eosTokenIds: folder.eosTokenIds }
      const original = await h.run(request).done
      const ids = h.tokens(original)
      for (const k of [0, 1, 7, 20, ids.length - 1]) {
        const resumed = await h.run({ ...request, generatedIds: ids.slice(0, k) }).done
        assert.deepEqual(h.tokens(resumed), ids.slice(k), `${JSON.stringify(sampling)} resumed at ${k}`)
        assert.equal(resumed.at(-1)!.finish, original.at(-1)!.finish)
      }
    }
    await h.scheduler.stop()
  })

  test('requests join a running batch at step boundaries instead of waiting for it', async () => {
    const h = harness(runner)
    const long = h.run({ promptIds: prompts[0], maxTokens: 200, sampling: greedy, eosTokenIds: [] })
    await new Promise((r) => setTimeout(r, 5))
    const short = await h.run({ promptIds: prompts[1], maxTokens: 5, sampling: greedy, eosTokenIds: [] }).done
    assert.equal(h.tokens(short).length, 5)
    const longSoFar = h.steps.length
    const longEvents = await long.done
    assert.equal(h.tokens(longEvents).length, 200)
    assert.ok(longSoFar < h.steps.length, 'the short request finished while the long one still ran')
    await h.scheduler.stop()
  })

  test('EOS ends a sequence with stop and is not emitted; max_tokens ends it with length', async () => {
    const h = harness(runner)
    const events = await h.run({
      promptIds: prompts[0],
      maxTokens: 400,
      sampling: greedy,
      eosTokenIds: folder.eosTokenIds,
    }).done
    assert.equal(events.at(-1)!.finish, 'stop')
    assert.ok(!h.tokens(events).some((t) => folder.eosTokenIds.includes(t)))
    const capped = await h.run({ promptIds: prompts[0], maxTokens: 3, sampling: greedy, eosTokenIds: [] }).done
    assert.equal(h.tokens(capped).length, 3)
    assert.equal(capped.at(-1)!.finish, 'length')
    await h.scheduler.stop()
  })

  test('an aborted sequence leaves within one step and frees its row', async () => {
    const h = harness(runner)
    const other = h.run({ promptIds: prompts[2], maxTokens: 100, sampling: greedy, eosTokenIds: [] })
    const victim = h.run({ promptIds: prompts[0], maxTokens: 300, sampling: greedy, eosTokenIds: [] })
    while (!h.steps.some((s) => s.running === 2)) await new Promise((r) => setTimeout(r, 1))
    h.scheduler.abort(victim.id)
    const stepAtAbort = h.steps.length
    const events = await victim.done
    assert.equal(events.at(-1)!.finish, 'abort')
    // The abort was applied at the next boundary: at most one more step ran with it.
    const after = h.steps.slice(stepAtAbort + 1)
    assert.ok(
      after.every((s) => s.running <= 1),
      JSON.stringify(after.slice(0, 3)),
    )
    assert.equal(h.tokens(await other.done).length, 100)
    assert.equal(runner.cache.rows, 0)
    await h.scheduler.stop()
  })

  test('a sequence past its deadline ends with timeout; batch size and the prefill budget are respected', async () => {
    const h = harness(runner, { maxBatchSize: 3, maxPrefillTokens: 16 })
    const late = await h.run({
      promptIds: prompts[0],
      maxTokens: 400,
      sampling: greedy,
      eosTokenIds: [],
      deadline: Date.now() + 20,
    }).done
    assert.equal(late.at(-1)!.finish, 'timeout')
    const all = await Promise.all(
      Array.from(
        { length: 8 },
        (_, i) => h.run({ promptIds: prompts[i], maxTokens: 10, sampling: greedy, eosTokenIds: [] }).done,
      ),
    )
    assert.ok(all.every((e) => h.tokens(e).length === 10))
    assert.ok(h.steps.every((s) => s.running <= 3 && s.batchSize <= 3))
    assert.ok(
      h.steps.every((s) => s.prefillTokens <= 16 || s.prefillTokens === Math.max(...prompts.map((p) => p.length))),
    )
    await h.scheduler.stop()
  })
})

describe('Scheduler: chunked prefill and prompt logprobs (stories260K)', () => {
  let runner: ModelRunner
  before(async () => {
    runner = await ModelRunner.load(
      STORIES_ONNX,
      { device: 'cpu', cudaDeviceId: 0, cpuThreads: 1, graphOptimization: 'all' },
      () => {},
    )
  })
  after(async () => runner.dispose())

  const story = tokenizer.encode(
    'Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. One day, she saw a big red ball in the park and she ran to get it.',
  )
  const seeded: SamplingParams = { ...greedy, temperature: 0.8, topK: 40, seed: 11 }

  test('a prompt prefilled in chunks gives the same tokens as in one pass (greedy and seeded)', async () => {
    assert.ok(story.length > 40)
    for (const sampling of [greedy, seeded]) {
      const request = { promptIds: story, maxTokens: 30, sampling, eosTokenIds: [] }
      const whole = harness(runner)
      const expected = whole.tokens(await whole.run(request).done)
      await whole.scheduler.stop()
      for (const chunk of [5, 16]) {
        const h = harness(runner, { maxPrefillTokens: chunk })
        assert.deepEqual(h.tokens(await h.run(request).done), expected, `chunks of ${chunk}`)
        assert.ok(h.steps.every((s) => s.prefillTokens <= chunk))
        await h.scheduler.stop()
      }
    }
  })

  test('running streams keep producing a token every step while a long prompt is admitted', async () => {
    const h = harness(runner, { maxPrefillTokens: 8 })
    const streams = [prompts[0], prompts[1], prompts[2]].map((promptIds) =>
      h.run({ promptIds, maxTokens: 120, sampling: greedy, eosTokenIds: [] }),
    )
    while (!h.steps.some((s) => s.batchSize === 3)) await new Promise((r) => setTimeout(r, 1))
    const from = h.steps.length
    const long = h.run({ promptIds: story, maxTokens: 5, sampling: greedy, eosTokenIds: [] })
    const longEvents = await long.done
    await Promise.all(streams.map((s) => s.done))
    await h.scheduler.stop()
    assert.equal(h.tokens(longEvents).length, 5)
    // A step reports its prefill, then its decode pass: every chunk of the long prompt was
    // followed, in the same step, by a decode pass over all three streams.
    const after = h.steps.slice(from)
    const chunks = after.flatMap((s, i) => (s.prefillTokens > 0 ? [i] : []))
    assert.equal(chunks.length, Math.ceil(story.length / 8))
    assert.ok(
      chunks.every((i) => after[i].prefillTokens <= 8 && after[i + 1].batchSize >= 3),
      JSON.stringify(after.slice(0, 4)),
    )
  })

  test('prompt logprobs: first token null, one per prompt token, the same chunked or not; max_tokens 0 only scores', async () => {
    const request = {
      promptIds: story,
      maxTokens: 0,
      sampling: { ...greedy, logprobs: 2 },
      eosTokenIds: [],
      promptLogprobs: true,
    }
    const whole = harness(runner)
    const events = await whole.run(request).done
    await whole.scheduler.stop()
    assert.deepEqual(whole.tokens(events), [])
    assert.equal(events.at(-1)!.finish, 'length')
    const prompt = events.find((e) => e.prompt)!.prompt!
    assert.equal(prompt.length, story.length)
    assert.deepEqual(
      prompt.map((p) => p.token),
      story,
    )
    assert.equal(prompt[0].logprob, null)
    assert.ok(prompt.slice(1).every((p) => p.logprob! < 0 && p.top!.length === 2 && p.top![0].logprob >= p.logprob!))

    const h = harness(runner, { maxPrefillTokens: 7 })
    const chunked = await h.run({ ...request, maxTokens: 3 }).done
    await h.scheduler.stop()
    assert.equal(h.tokens(chunked).length, 3)
    const chunkedPrompt = chunked.find((e) => e.prompt)!.prompt!
    assert.equal(chunkedPrompt.length, story.length)
    chunkedPrompt.forEach((p, i) => {
      assert.equal(p.token, prompt[i].token)
      if (i > 0) assert.ok(Math.abs(p.logprob! - prompt[i].logprob!) < 1e-4, `position ${i}`)
    })
  })

  test('an aborted long prompt leaves mid-prefill and frees nothing it did not take', async () => {
    const h = harness(runner, { maxPrefillTokens: 4 })
    const victim = h.run({ promptIds: story, maxTokens: 50, sampling: greedy, eosTokenIds: [] })
    while (!h.steps.some((s) => s.prefillTokens > 0)) await new Promise((r) => setTimeout(r, 1))
    h.scheduler.abort(victim.id)
    assert.equal((await victim.done).at(-1)!.finish, 'abort')
    const after = h.run({ promptIds: prompts[0], maxTokens: 4, sampling: greedy, eosTokenIds: [] })
    assert.equal(h.tokens(await after.done).length, 4)
    await h.scheduler.stop()
    assert.equal(runner.cache.rows, 0)
  })
})
