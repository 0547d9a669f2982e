import { createRandom, type Random } from './prng.ts'
import { maskLogits } from './token-mask.ts'

/** Token-level sampling parameters, already validated by the API layer. */
export interface SamplingParams {
  /** 0 means greedy. */
  temperature: number
  /** 0 means no top-k filter. */
  topK: number
  topP: number
  minP: number
  /** Multiplicative penalty on every token seen in prompt or output (1 = off). */
  repetitionPenalty: number
  /** OpenAI-style additive penalties on tokens already generated (0 = off). */
  presencePenalty: number
  frequencyPenalty: number
  seed: number
  /** Number of top alternatives to report with each token; -1 reports no logprobs. */
  logprobs: number
}

/** Greedy with every filter and penalty off: the base that callers override. */
export const NEUTRAL_SAMPLING: Readonly<Omit<SamplingParams, 'seed'>> = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  logprobs: -1,
}

export interface SampledToken {
  token: number
  /** Log-probability of the chosen token under the model (raw logits). */
  logprob?: number
  top?: { token: number; logprob: number }[]
}

// Tokens whose scaled logit is this far below the best have probability < e^-30 relative
// to it: dropping them before sorting changes nothing measurable and keeps big vocabularies fast.
const CANDIDATE_WINDOW = 30

/** Samples the next token of one sequence; it owns that sequence's PRNG and token counts. */
export class SequenceSampler {
  readonly params: SamplingParams
  private readonly random: Random
  private readonly counts = new Map<number, number>()
  private readonly seen: Set<number>

  constructor(params: SamplingParams, promptIds: ArrayLike<number>) {
    this.params = params
    this.random = createRandom(params.seed)
    this.seen = new Set(params.repetitionPenalty !== 1 ? Array.from(promptIds) : [])
  }

  /**
   * Picks the next token from one row of logits. The row may be modified in place. `allowed`
   * (a grammar's token bitmask) removes tokens first, before penalties and every filter.
   */
  sample(logits: Float32Array, allowed?: Int32Array): SampledToken {
    const p = this.params
    // Logprobs are reported under the model's raw distribution, so keep the row before penalties.
    const raw = p.logprobs >= 0 ? logits.slice() : undefined
    if (allowed && maskLogits(logits, allowed) === 0) throw new Error('the grammar allows no next token')
    this.applyPenalties(logits)
    const token = p.temperature === 0 ? argmax(logits) : this.draw(logits)
    if (!raw) return { token }
    return { token, ...scoreToken(raw, token, p.logprobs) }
  }

  /**
   * Brings a fresh sampler to the state it would be in had it sampled `tokens` itself (a
   * resumed sequence): the penalties count them, and the PRNG skips the draws they took,
   * which is exactly one per token when sampling (see draw) and none when greedy.
   */
  replay(tokens: ArrayLike<number>): void {
    for (let i = 0; i < tokens.length; i++) {
      if (this.params.temperature !== 0) this.random()
      this.accept(tokens[i])
    }
  }

  /** Records a token that joined the sequence, for the penalties. */
  accept(token: number): void {
    this.counts.set(token, (this.counts.get(token) ?? 0) + 1)
    if (this.params.repetitionPenalty !== 1) this.seen.add(token)
  }

  private applyPenalties(logits: Float32Array): void {
    const { repetitionPenalty, presencePenalty, frequencyPenalty } = this.params
    if (repetitionPenalty !== 1) {
      for (const token of this.seen) {
        const v = logits[token]
        logits[token] = v > 0 ? v / repetitionPenalty : v * repetitionPenalty
      }
    }
    if (presencePenalty !== 0 || frequencyPenalty !== 0) {
      for (const [token, count] of this.counts) logits[token] -= presencePenalty + frequencyPenalty * count
    }
  }

  /**
   * Takes exactly one number from the PRNG per call, whatever the filters: replay relies on it.
   * The filters choose a set of tokens (top-k, min-p, top-p as defined over descending
   * probability, ties by id); the draw walks that set in id order. Nothing sorts the
   * vocabulary: a comparator sort of a 150k-entry vocabulary cost hundreds of ms per token on
   * flat distributions, so top-k and top-p are selections (quickselect), O(n) on average.
   */
  private draw(logits: Float32Array): number {
    const { temperature, topK, topP, minP } = this.params
    const inv = 1 / temperature
    let max = -Infinity
    for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i]
    const floor = max - CANDIDATE_WINDOW * temperature
    let ids: Int32Array = new Int32Array(logits.length)
    let n = 0
    for (let i = 0; i < logits.length; i++) if (logits[i] >= floor) ids[n++] = i
    ids = ids.subarray(0, n)
    if (topK > 0 && topK < n) {
      ids = selectBest(
        ids.length,
        topK,
        (a, b) => logits[ids[a]] > logits[ids[b]] || (logits[ids[a]] === logits[ids[b]] && a < b),
      )
        .map((i) => ids[i])
        .sort()
      n = ids.length
    }
    const probs = new Float64Array(n)
    // The best tokens weigh exactly 1, even where a tiny temperature makes 0 × inv NaN.
    for (let i = 0; i < n; i++) probs[i] = logits[ids[i]] === max ? 1 : Math.exp((logits[ids[i]] - max) * inv)
    if (minP > 0) {
      // The best candidate's weight is exactly 1 here (its scaled logit is the max).
      n = compact(ids, probs, n, (i) => probs[i] >= minP)
    }
    if (topP < 1 && n > 1) {
      const kept = new Uint8Array(n)
      for (const i of topPSet(probs, n, topP)) kept[i] = 1
      n = compact(ids, probs, n, (i) => kept[i] === 1)
    }
    let total = 0
    for (let i = 0; i < n; i++) total += probs[i]
    let r = this.random() * total
    for (let i = 0; i < n; i++) {
      r -= probs[i]
      if (r < 0) return ids[i]
    }
    return ids[n - 1]
  }
}

/** Keeps the entries whose index passes `keep`, in order; returns how many. */
function compact(ids: Int32Array, probs: Float64Array, n: number, keep: (i: number) => boolean): number {
  let m = 0
  for (let i = 0; i < n; i++) {
    if (keep(i)) {
      ids[m] = ids[i]
      probs[m++] = probs[i]
    }
  }
  return m
}

/**
 * Indices (0..n) of the k best entries under the strict order `better`, unordered.
 * Quickselect: O(n) on average.
 */
function selectBest(n: number, k: number, better: (a: number, b: number) => boolean): Int32Array {
  const work = new Int32Array(n)
  for (let i = 0; i < n; i++) work[i] = i
  let lo = 0
  let hi = n - 1
  while (lo < hi) {
    const pivot = work[(lo + hi) >>> 1]
    let i = lo
    let j = hi
    while (i <= j) {
      while (better(work[i], pivot)) i++
      while (better(pivot, work[j])) j--
      if (i <= j) {
        const t = work[i]
        work[i++] = work[j]
        work[j--] = t
      }
    }
    if (k - 1 <= j) hi = j
    else if (k - 1 >= i) lo = i
    else break
  }
  return work.subarray(0, k)
}

/**
 * The smallest set of entries, best first (probability, then index), whose mass reaches
 * `topP` of the total: a weighted quickselect, O(n) on average.
 */
function topPSet(probs: Float64Array, n: number, topP: number): Int32Array {
  const better = (a: number, b: number) => probs[a] > probs[b] || (probs[a] === probs[b] && a < b)
  let total = 0
  for (let i = 0; i < n; i++) total += probs[i]
  const target = topP * total
  const work = new Int32Array(n)
  for (let i = 0; i < n; i++) work[i] = i
  // work[0..lo) is known to be in the set with mass `above`; the boundary lies in work[lo..hi).
  let lo = 0
  let hi = n
  let above = 0
  while (hi - lo > 1) {
    const pivot = work[lo + ((hi - lo) >>> 1)]
    // Three-way split of work[lo..hi): better than the pivot, the pivot, worse.
    let store = lo
    for (let i = lo; i < hi; i++) {
      if (better(work[i], pivot)) {
        const t = work[i]
        work[i] = work[store]
        work[store++] = t
      }
    }
    let mass = 0
    for (let i = lo; i < store; i++) mass += probs[work[i]]
    const at = work.indexOf(pivot, store)
    work[at] = work[store]
    work[store] = pivot
    if (above + mass >= target) hi = store
    else if (above + mass + probs[pivot] >= target) return work.subarray(0, store + 1)
    else {
      above += mass + probs[pivot]
      lo = store + 1
    }
  }
  return work.subarray(0, Math.min(hi, n))
}

export function argmax(row: Float32Array): number {
  let best = 0
  let bestValue = row[0]
  for (let i = 1; i < row.length; i++) {
    if (row[i] > bestValue) {
      bestValue = row[i]
      best = i
    }
  }
  return best
}

/** Log-probability of `token` under one row of raw logits, and the row's `top` best alternatives. */
export function scoreToken(
  row: Float32Array,
  token: number,
  top: number,
): { logprob: number; top: { token: number; logprob: number }[] } {
  const lse = logSumExp(row)
  return { logprob: row[token] - lse, top: topLogprobs(row, lse, top) }
}

function logSumExp(row: Float32Array): number {
  let max = -Infinity
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i]
  let sum = 0
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max)
  return max + Math.log(sum)
}

function topLogprobs(row: Float32Array, lse: number, n: number): { token: number; logprob: number }[] {
  const top: { token: number; logprob: number }[] = []
  if (n <= 0) return top
  for (let i = 0; i < row.length; i++) {
    if (top.length < n || row[i] > top[top.length - 1].logprob) {
      top.push({ token: i, logprob: row[i] })
      top.sort((a, b) => b.logprob - a.logprob || a.token - b.token)
      if (top.length > n) top.pop()
    }
  }
  for (const t of top) t.logprob -= lse
  return top
}
