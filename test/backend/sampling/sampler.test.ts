import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { createRandom } from '../../../backend/sampling/prng.ts'
import { argmax, type SamplingParams, SequenceSampler } from '../../../backend/sampling/sampler.ts'
import { StopMatcher } from '../../../backend/sampling/stop-matcher.ts'

const params = (over: Partial<SamplingParams> = {}): SamplingParams => ({
  temperature: 1,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  seed: 7,
  logprobs: -1,
  ...over,
})
const logits = () => Float32Array.from([0.1, 2.5, 1.0, 2.4, -3, 0])

describe('prng', () => {
  test('same seed gives the same stream, different seeds differ, values in [0, 1)', () => {
    const a = createRandom(123)
    const b = createRandom(123)
    const c = createRandom(124)
    const xs = Array.from({ length: 100 }, () => a())
    assert.deepEqual(
      xs,
      Array.from({ length: 100 }, () => b()),
    )
    assert.notDeepEqual(
      xs,
      Array.from({ length: 100 }, () => c()),
    )
    assert.ok(xs.every((x) => x >= 0 && x < 1))
    // Seeds above 2^32 are distinct too.
    assert.notEqual(createRandom(2 ** 40 + 1)(), createRandom(1)())
  })
})

describe('SequenceSampler', () => {
  test('temperature 0 is argmax', () => {
    assert.equal(new SequenceSampler(params({ temperature: 0 }), []).sample(logits()).token, 1)
    assert.equal(argmax(Float32Array.from([1, 5, 5])), 1)
  })

  test('top_k 1 and a tiny top_p are greedy whatever the seed', () => {
    for (let seed = 0; seed < 20; seed++) {
      assert.equal(new SequenceSampler(params({ topK: 1, seed }), []).sample(logits()).token, 1)
      assert.equal(new SequenceSampler(params({ topP: 0.01, seed }), []).sample(logits()).token, 1)
    }
  })

  test('min_p drops tokens far below the best', () => {
    const seen = new Set<number>()
    for (let seed = 0; seed < 200; seed++)
      seen.add(new SequenceSampler(params({ minP: 0.5, seed }), []).sample(logits()).token)
    assert.deepEqual([...seen].sort(), [1, 3])
  })

  test('same seed → same draws; sampling follows the distribution', () => {
    const draw = (seed: number) => {
      const s = new SequenceSampler(params({ seed }), [])
      return Array.from({ length: 50 }, () => s.sample(logits()).token)
    }
    assert.deepEqual(draw(5), draw(5))
    assert.notDeepEqual(draw(5), draw(6))
    const counts = new Map<number, number>()
    const s = new SequenceSampler(params({ seed: 1 }), [])
    for (let i = 0; i < 4000; i++) {
      const t = s.sample(logits()).token
      counts.set(t, (counts.get(t) ?? 0) + 1)
    }
    // p(1) = e^2.5 / Σ ≈ 0.41
    const p1 = (counts.get(1) ?? 0) / 4000
    assert.ok(p1 > 0.36 && p1 < 0.46, `p(1) = ${p1}`)
  })

  test('penalties push repeated tokens down', () => {
    const rep = new SequenceSampler(params({ temperature: 0, repetitionPenalty: 2 }), [1])
    assert.equal(rep.sample(logits()).token, 3)
    const presence = new SequenceSampler(params({ temperature: 0, presencePenalty: 1 }), [])
    presence.accept(1)
    assert.equal(presence.sample(logits()).token, 3)
    const frequency = new SequenceSampler(params({ temperature: 0, frequencyPenalty: 0.05 }), [])
    frequency.accept(1)
    assert.equal(frequency.sample(logits()).token, 1)
    frequency.accept(1)
    frequency.accept(1)
    assert.equal(frequency.sample(logits()).token, 3)
  })

  test('replaying the first k tokens leaves the sampler where sampling them left it (PRNG and penalties)', () => {
    // Logits that change with the position, so every draw and every penalty shows in the output.
    const row = (position: number) =>
      Float32Array.from({ length: 24 }, (_, i) => Math.sin(i * 1.7 + position * 0.3) * 3)
    const configs: Partial<SamplingParams>[] = [
      { temperature: 0, repetitionPenalty: 1.3 },
      { temperature: 0.9, topP: 0.9, frequencyPenalty: 0.5 },
      { temperature: 1.2, topK: 1 },
      { temperature: 0.7, minP: 0.2, presencePenalty: 0.8, repetitionPenalty: 1.2 },
      { temperature: 1, topP: 0.01 },
    ]
    for (const config of configs) {
      const run = (sampler: SequenceSampler, from: number) =>
        Array.from({ length: 40 - from }, (_, i) => {
          const { token } = sampler.sample(row(from + i))
          sampler.accept(token)
          return token
        })
      const reference = run(new SequenceSampler(params(config), [3, 5]), 0)
      for (let k = 0; k <= 40; k++) {
        const resumed = new SequenceSampler(params(config), [3, 5])
        resumed.replay(reference.slice(0, k))
        assert.deepEqual(run(resumed, k), reference.slice(k), `${JSON.stringify(config)} resumed at ${k}`)
      }
    }
  })

  test('logprobs are of the raw distribution and list the best alternatives', () => {
    const result = new SequenceSampler(params({ temperature: 0, logprobs: 2 }), []).sample(logits())
    const row = logits()
    const lse = Math.log(row.reduce((s, v) => s + Math.exp(v), 0))
    assert.ok(Math.abs(result.logprob! - (2.5 - lse)) < 1e-5)
    assert.deepEqual(
      result.top!.map((t) => t.token),
      [1, 3],
    )
  })
})

describe('StopMatcher', () => {
  test('matches across pushes and never emits the stop text', () => {
    const m = new StopMatcher(['END'])
    assert.deepEqual(m.push('hello E'), { text: 'hello ', stopped: false })
    assert.deepEqual(m.push('N'), { text: '', stopped: false })
    assert.deepEqual(m.push('D and more'), { text: '', stopped: true })
  })

  test('releases held text when the match fails', () => {
    const m = new StopMatcher(['END'])
    assert.deepEqual(m.push('an E'), { text: 'an ', stopped: false })
    assert.deepEqual(m.push('X'), { text: 'EX', stopped: false })
    assert.deepEqual(m.push('EN'), { text: '', stopped: false })
    assert.equal(m.flush(), 'EN')
  })

  test('earliest of several stops wins; no stops passes text through', () => {
    const m = new StopMatcher(['b', 'xyz'])
    assert.deepEqual(m.push('axyzb'), { text: 'a', stopped: true })
    assert.deepEqual(new StopMatcher([]).push('abc'), { text: 'abc', stopped: false })
  })
})

describe('filters as selections (no vocabulary sort)', () => {
  // Reference: the set a sort by descending probability (ties by id) would keep.
  const reference = (row: Float32Array, topK: number, topP: number, minP: number): Set<number> => {
    let order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b)
    if (topK > 0) order = order.slice(0, topK)
    const weights = order.map((i) => Math.exp(row[i] - row[order[0]]))
    let keep = order.length
    if (minP > 0) keep = weights.filter((w) => w >= minP).length
    if (topP < 1) {
      const total = weights.slice(0, keep).reduce((a, b) => a + b, 0)
      let cumulative = 0
      let m = 0
      while (m < keep) {
        cumulative += weights[m++] / total
        if (cumulative >= topP) break
      }
      keep = m
    }
    return new Set(order.slice(0, keep))
  }

  test('top-k, min-p and top-p keep exactly the sorted reference set, ties included', () => {
    const random = createRandom(11)
    for (let trial = 0; trial < 40; trial++) {
      // Coarse logits make ties common, so the tie rule is exercised.
      const row = Float32Array.from({ length: 60 }, () => Math.round(random() * 8) / 2)
      const filters = {
        topK: trial % 3 === 0 ? 1 + (trial % 17) : 0,
        topP: trial % 2 ? 0.3 + random() * 0.6 : 1,
        minP: trial % 5 === 0 ? 0.2 : 0,
      }
      const expected = reference(row, filters.topK, filters.topP, filters.minP)
      const seen = new Set<number>()
      for (let seed = 0; seed < 400; seed++)
        seen.add(new SequenceSampler(params({ ...filters, seed }), []).sample(row.slice()).token)
      for (const token of seen)
        assert.ok(expected.has(token), `trial ${trial}: token ${token} is outside the filtered set`)
      // Every kept token of non-negligible weight shows up in 400 draws.
      const total = [...expected].reduce((sum, i) => sum + Math.exp(row[i]), 0)
      for (const token of expected)
        if (Math.exp(row[token]) / total > 0.03)
          assert.ok(seen.has(token), `trial ${trial}: token ${token} was never drawn`)
    }
  })
})

test('a denormal temperature with min_p still samples the best token (0 × Infinity is NaN)', () => {
  const sampled = new SequenceSampler(params({ temperature: 5e-324, minP: 5e-324 }), []).sample(logits())
  assert.equal(sampled.token, 1)
})
