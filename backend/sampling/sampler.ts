import { createRandom, type Random } from './prng.ts'

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

  /** Picks the next token from one row of logits. The row may be modified in place. */
  sample(logits: Float32Array): SampledToken {
    const p = this.params
    // Logprobs are reported under the model's raw distribution, so keep the row before penalties.
    const raw = p.logprobs >= 0 ? logits.slice() : undefined
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

  /** Takes exactly one number from the PRNG per call, whatever the filters: replay relies on it. */
  private draw(logits: Float32Array): number {
    const { temperature, topK, topP, minP } = this.params
    const inv = 1 / temperature
    let max = -Infinity
    for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i]
    const floor = max - CANDIDATE_WINDOW * temperature
    const ids: number[] = []
    for (let i = 0; i < logits.length; i++) if (logits[i] >= floor) ids.push(i)
    // Ties broken by id so the order (and so a seeded draw) never depends on sort stability.
    ids.sort((a, b) => logits[b] - logits[a] || a - b)
    let n = topK > 0 ? Math.min(topK, ids.length) : ids.length
    const probs = new Float64Array(n)
    let sum = 0
    for (let i = 0; i < n; i++) sum += probs[i] = Math.exp((logits[ids[i]] - max) * inv)
    if (minP > 0) {
      const keep = minP * (probs[0] / sum)
      let m = 1
      while (m < n && probs[m] / sum >= keep) m++
      n = m
    }
    if (topP < 1) {
      let total = 0
      for (let i = 0; i < n; i++) total += probs[i]
      let cumulative = 0
      let m = 0
      while (m < n) {
        cumulative += probs[m++] / total
        if (cumulative >= topP) break
      }
      n = m
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
export function scoreToken(row: Float32Array, token: number, top: number): { logprob: number; top: { token: number; logprob: number }[] } {
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
