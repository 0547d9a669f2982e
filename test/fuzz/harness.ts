import assert from 'node:assert/strict'
import type { TestContext } from 'node:test'
import fc from 'fast-check'
import { Agent, fetch as undiciFetch } from 'undici'
import { errorMessage } from '../../lib/error-message.ts'
import { MODEL, type Route } from './bodies.ts'

/**
 * Running fuzz properties against real servers: a fixed seed (FUZZ_SEED) so a failure can be
 * replayed, FUZZ_RUNS cases per property (raise it for a deeper local run), a timeout on
 * every request (a hang fails the case), and the case counts printed per endpoint.
 */

function envInt(name: string, fallback: number): number {
  const value = process.env[name]
  if (value === undefined || value === '') return fallback
  const parsed = Number(value)
  if (!Number.isSafeInteger(parsed) || parsed < 1) throw new Error(`${name} must be a positive integer, got ${value}`)
  return parsed
}

export const FUZZ_SEED = envInt('FUZZ_SEED', 20_260_507)
export const FUZZ_RUNS = envInt('FUZZ_RUNS', 100)
/** Longest any one request may take before the case counts as a hang. */
const REQUEST_TIMEOUT_MS = 20_000

export interface Answer {
  status: number
  headers: Headers
  text: string
}

export interface SendOptions {
  method?: string
  headers?: Record<string, string>
  body?: Uint8Array
  /** Stream the body (Transfer-Encoding: chunked) instead of sending a Content-Length. */
  chunked?: boolean
  /** On a connection of its own, closed afterwards (see checkJunk for why). */
  ownConnection?: boolean
}

function streamOf(body: Uint8Array): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      for (let i = 0; i < body.length; i += 4096) controller.enqueue(body.subarray(i, i + 4096))
      controller.close()
    },
  })
}

/** One HTTP request; a server that does not answer within the timeout fails the case. */
export async function send(url: string, options: SendOptions = {}): Promise<Answer> {
  const body = options.body && options.chunked ? streamOf(options.body) : options.body
  const init = {
    method: options.method ?? (body ? 'POST' : 'GET'),
    headers: options.headers,
    body,
    duplex: 'half',
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  } as RequestInit
  const dispatcher = options.ownConnection ? new Agent({ connections: 1 }) : undefined
  try {
    const response = dispatcher
      ? ((await undiciFetch(url, { ...init, dispatcher } as never)) as unknown as Response)
      : await fetch(url, init)
    return { status: response.status, headers: response.headers, text: await response.text() }
  } catch (error) {
    const cause = (error as Error).cause as Error | undefined
    throw new Error(
      `${options.method ?? 'request'} ${url}: no answer (${(error as Error).name}: ${errorMessage(error)}${cause ? `: ${cause.message}` : ''})`,
    )
  } finally {
    await dispatcher?.destroy()
  }
}

/** Case counts of every property run in this file, for the summary. */
const counts: { label: string; cases: number; kinds: Map<string, number> }[] = []

/**
 * Runs `predicate` on FUZZ_RUNS (or `runs`) values with the fixed seed; the predicate may return
 * the case's kind, which is tallied. fast-check reports the seed, path and smallest failing
 * value on failure.
 */
export async function fuzz<T>(
  t: TestContext,
  label: string,
  arbitrary: fc.Arbitrary<T>,
  // biome-ignore lint/suspicious/noConfusingVoidType: predicates that find nothing just return
  predicate: (value: T) => Promise<string | void>,
  runs = FUZZ_RUNS,
): Promise<void> {
  const kinds = new Map<string, number>()
  let cases = 0
  try {
    await fc.assert(
      fc.asyncProperty(arbitrary, async (value) => {
        cases++
        const kind = await predicate(value)
        if (kind) kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
      }),
      { seed: FUZZ_SEED, numRuns: runs },
    )
  } catch (error) {
    // fast-check keeps the failing assertion in `cause`; the test report should show it.
    const cause = (error as Error).cause as Error | undefined
    throw new Error(`${label}: ${errorMessage(error)}${cause ? `\nFailure: ${cause.message}` : ''}`)
  }
  counts.push({ label, cases, kinds })
  const detail = [...kinds]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([kind, n]) => `${kind} ${n}`)
    .join('; ')
  t.diagnostic(`${label}: ${cases} cases (seed ${FUZZ_SEED})${detail ? ` — ${detail}` : ''}`)
}

/** Prints the per-endpoint table of everything run so far in this file, one diagnostic line per row. */
export function printSummary(t: TestContext): void {
  const width = Math.max(...counts.map((c) => c.label.length), 5)
  t.diagnostic(`fuzz seed ${FUZZ_SEED}, FUZZ_RUNS ${FUZZ_RUNS}; cases per endpoint:`)
  for (const c of counts) t.diagnostic(`  ${c.label.padEnd(width)}  ${c.cases}`)
  t.diagnostic(`  ${'total'.padEnd(width)}  ${counts.reduce((n, c) => n + c.cases, 0)}`)
}

const describe = (answer: Answer) => `${answer.status} ${answer.text.slice(0, 400)}`

/** A 4xx with OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`. */
export function assertOpenAiError(
  answer: Answer,
  expected: { status?: number[]; codes?: (string | null)[]; param?: string } = {},
): { code: string | null; param: string | null } {
  assert.ok(answer.status >= 400 && answer.status < 500, `a 4xx, got ${describe(answer)}`)
  if (expected.status)
    assert.ok(
      expected.status.includes(answer.status),
      `status ${expected.status.join(' or ')}, got ${describe(answer)}`,
    )
  assert.match(answer.headers.get('content-type') ?? '', /^application\/json/, `an error is JSON: ${describe(answer)}`)
  const body = JSON.parse(answer.text) as { error?: Record<string, unknown> }
  assert.equal(typeof body.error, 'object', answer.text)
  const error = body.error!
  assert.deepEqual(Object.keys(error).sort(), ['code', 'message', 'param', 'type'], answer.text)
  assert.ok(typeof error.message === 'string' && error.message.length > 0, answer.text)
  assert.equal(typeof error.type, 'string', answer.text)
  assert.ok(error.param === null || typeof error.param === 'string', answer.text)
  assert.ok(error.code === null || typeof error.code === 'string', answer.text)
  if (expected.codes)
    assert.ok(
      expected.codes.includes(error.code as string | null),
      `code ${expected.codes.join(' or ')}, got ${describe(answer)}`,
    )
  if (expected.param !== undefined) {
    const param = String(error.param)
    assert.ok(
      param === expected.param || param.startsWith(`${expected.param}.`),
      `param ${expected.param}, got ${describe(answer)}`,
    )
  }
  return { code: error.code as string | null, param: error.param as string | null }
}

type Json = Record<string, any>

/** The data payloads of an event stream, JSON-parsed except `[DONE]`. */
export function sseEvents(text: string): (Json | '[DONE]')[] {
  return text
    .split('\n\n')
    .map((block) =>
      block
        .split('\n')
        .filter((line) => line.startsWith('data:'))
        .map((line) => line.slice(5).trimStart())
        .join('\n'),
    )
    .filter((data) => data.length > 0)
    .map((data) => (data === '[DONE]' ? data : (JSON.parse(data) as Json)))
}

/** Choices a request asks for: n (or num_return_sequences) for each prompt. */
export function choicesOf(route: Route, body: Json): number {
  if (route === 'generate') return body.num_return_sequences ?? 1
  const prompts =
    route === 'completions' && Array.isArray(body.prompt) && typeof body.prompt[0] !== 'number' ? body.prompt.length : 1
  return (body.n ?? 1) * prompts
}

function maxTokensOf(route: Route, body: Json): number {
  if (route === 'generate') return body.max_length ?? 50
  if (route === 'chat') return body.max_completion_tokens ?? body.max_tokens
  return body.max_tokens ?? 16
}

/**
 * A successful answer that matches the request: as many choices as asked, each finished, no
 * more tokens than allowed, logprobs, token ids and the usage chunk exactly when asked for.
 */
export function assertServed(route: Route, body: Json, answer: Answer): void {
  assert.equal(answer.status, 200, describe(answer))
  const choices = choicesOf(route, body)
  const maxTokens = maxTokensOf(route, body)
  if (route !== 'generate' && body.stream === true) {
    assertStream(route, body, answer, choices, maxTokens)
    return
  }
  assert.match(answer.headers.get('content-type') ?? '', /^application\/json/)
  const json = JSON.parse(answer.text) as Json
  assert.equal(json.model, MODEL)
  if (route === 'generate') {
    const texts = choices === 1 ? [json.generated_text] : json.generated_text
    assert.ok(
      Array.isArray(texts) && texts.length === choices && texts.every((t) => typeof t === 'string'),
      answer.text,
    )
    const reasons = choices === 1 ? [json.finish_reason] : json.finish_reason
    assert.ok(
      reasons.every((r: unknown) => r === 'stop' || r === 'length'),
      answer.text,
    )
    assert.ok(json.output_tokens <= maxTokens * choices, answer.text)
    return
  }
  assert.equal(json.object, route === 'chat' ? 'chat.completion' : 'text_completion')
  assert.equal(json.choices.length, choices, answer.text.slice(0, 400))
  json.choices.forEach((choice: Json, index: number) => {
    assert.equal(choice.index, index)
    assert.ok(choice.finish_reason === 'stop' || choice.finish_reason === 'length', answer.text)
    assert.equal(typeof (route === 'chat' ? choice.message.content : choice.text), 'string')
    if (route === 'chat') assert.equal(choice.message.role, 'assistant')
    const wantsLogprobs = route === 'chat' ? body.logprobs === true : body.logprobs != null
    assert.equal(choice.logprobs !== null, wantsLogprobs, `logprobs exactly when asked: ${answer.text.slice(0, 300)}`)
    assert.equal('token_ids' in choice, body.return_token_ids === true, 'token ids exactly when asked')
  })
  assert.ok(json.usage.completion_tokens <= maxTokens * choices, answer.text.slice(0, 400))
}

function assertStream(route: Route, body: Json, answer: Answer, choices: number, maxTokens: number): void {
  assert.match(answer.headers.get('content-type') ?? '', /^text\/event-stream/)
  const events = sseEvents(answer.text)
  assert.equal(events.at(-1), '[DONE]', `the stream ends with [DONE]: ${answer.text.slice(-300)}`)
  const chunks = events.slice(0, -1) as Json[]
  assert.ok(!chunks.some((e) => 'error' in e), `no error event: ${answer.text.slice(0, 400)}`)
  const finished = new Map<number, number>()
  let usage: Json | undefined
  for (const chunk of chunks) {
    assert.equal(chunk.object, route === 'chat' ? 'chat.completion.chunk' : 'text_completion')
    assert.equal(chunk.model, MODEL)
    if (chunk.usage) usage = chunk.usage
    for (const choice of chunk.choices) {
      assert.ok(choice.index >= 0 && choice.index < choices, JSON.stringify(chunk))
      assert.equal(
        'token_ids' in choice,
        body.return_token_ids === true,
        `token ids exactly when asked: ${JSON.stringify(chunk)}`,
      )
      if (choice.finish_reason) finished.set(choice.index, (finished.get(choice.index) ?? 0) + 1)
    }
  }
  assert.equal(finished.size, choices, `every choice finishes: ${answer.text.slice(0, 400)}`)
  assert.ok(
    [...finished.values()].every((n) => n === 1),
    'each choice finishes once',
  )
  assert.equal(usage !== undefined, body.stream_options?.include_usage === true, 'the usage chunk exactly when asked')
  if (usage) assert.ok(usage.completion_tokens <= maxTokens * choices)
}
