import { randomUUID } from 'node:crypto'
import type { Context } from 'hono'
import { readJsonBody } from '../../openai/body.ts'
import { ApiError } from '../../openai/errors.ts'
import {
  COMPLETIONS_DEFAULT_MAX_TOKENS,
  type CompletionRequest,
  chatRequestSchema,
  completionRequestSchema,
} from '../../openai/requests.ts'
import type {
  ChatChunkChoice,
  ChatCompletion,
  ChatCompletionChunk,
  ChatLogprobs,
  Completion,
  CompletionChunk,
  CompletionLogprobs,
  Usage,
} from '../../openai/responses.ts'
import { type ResumedChoice, ResumeError, replayResume } from '../engine/resume.ts'
import type { ServedModel, TextChunk, TextRequest, TokenLogprob } from '../engine/text-generation.ts'
import type { PromptLogprob } from '../scheduler/types.ts'
import {
  type ApiContext,
  type CollectedChoice,
  collectChoices,
  fitMaxTokens,
  mergeSignals,
  resolveModel,
  startGeneration,
  streamEvents,
} from './generation.ts'
import { outputGrammarOf, prepareGrammar } from './structured/output-format.ts'
import { planChat, toolCallsOf, toolMessage } from './tools/chat-tools.ts'
import { ToolCallStream } from './tools/tool-stream.ts'

type SamplingFields = Pick<
  CompletionRequest,
  | 'temperature'
  | 'top_p'
  | 'top_k'
  | 'min_p'
  | 'presence_penalty'
  | 'frequency_penalty'
  | 'repetition_penalty'
  | 'seed'
  | 'logit_bias'
>

/** OpenAI defaults, plus vLLM's extensions (top_k, min_p, repetition_penalty). */
function samplingOf(body: SamplingFields, logprobs: number): TextRequest['sampling'] {
  if (body.logit_bias && Object.keys(body.logit_bias).length > 0)
    throw new ApiError(400, 'logit_bias is not supported by this server', {
      param: 'logit_bias',
      code: 'unsupported_parameter',
    })
  return {
    temperature: body.temperature ?? 1,
    topP: body.top_p ?? 1,
    topK: body.top_k != null && body.top_k > 0 ? body.top_k : 0,
    minP: body.min_p ?? 0,
    presencePenalty: body.presence_penalty ?? 0,
    frequencyPenalty: body.frequency_penalty ?? 0,
    repetitionPenalty: body.repetition_penalty ?? 1,
    seed: body.seed ?? undefined,
    logprobs,
  }
}

const stopsOf = (stop: string | string[] | null | undefined) =>
  stop == null ? [] : typeof stop === 'string' ? [stop] : stop

/**
 * Replays `resume` (400 if it cannot belong to this request). `text_offset` counts the choice's
 * text as the client got it, so with echo the prompt comes first: `before` is what of it is
 * still owed.
 */
function resumeOf(
  model: ServedModel,
  body: Pick<CompletionRequest, 'resume'>,
  request: TextRequest,
  echoText = '',
): { resumed?: ResumedChoice; before: string } {
  if (!body.resume) return { before: echoText }
  const { token_ids: tokenIds, text_offset: offset } = body.resume
  try {
    const resumed = replayResume(
      model,
      { prompt: request.prompts[0], maxTokens: request.maxTokens, stop: request.stop, ignoreEos: request.ignoreEos },
      { tokenIds, textOffset: Math.max(0, offset - echoText.length) },
    )
    return { resumed, before: echoText.slice(offset) }
  } catch (error) {
    if (error instanceof ResumeError) throw new ApiError(400, error.message, { param: error.param, code: error.code })
    throw error
  }
}

const idsOf = (wanted: boolean | null | undefined, ids: number[]) => (wanted ? { token_ids: ids } : {})

function usageOf(prompts: number[][], completionTokens: number): Usage {
  const promptTokens = prompts.reduce((sum, p) => sum + p.length, 0)
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
  }
}

/** POST /v1/completions */
export async function completions(c: Context, api: ApiContext): Promise<Response> {
  const { data: body } = await readJsonBody(c.req, completionRequestSchema)
  const model = resolveModel(api, body.model)
  if (body.suffix)
    throw new ApiError(400, 'suffix is not supported by this server', {
      param: 'suffix',
      code: 'unsupported_parameter',
    })
  const n = body.n ?? 1
  if (body.best_of != null && body.best_of !== n)
    throw new ApiError(400, 'best_of must equal n on this server', { param: 'best_of', code: 'unsupported_parameter' })
  const prompts = promptsOf(model, body.prompt)
  const maxTokens = fitMaxTokens(model, prompts, body.max_tokens, COMPLETIONS_DEFAULT_MAX_TOKENS)
  const logprobs = body.logprobs ?? -1
  const grammar = outputGrammarOf(body, api.maxGrammarChars)
  if (grammar) await prepareGrammar(model, grammar, body.resume?.token_ids)
  const promptLogprobs = body.echo === true && logprobs >= 0
  const request: TextRequest = {
    prompts,
    n,
    maxTokens,
    stop: stopsOf(body.stop),
    sampling: samplingOf(body, logprobs),
    ignoreEos: body.ignore_eos ?? false,
    grammar: grammar?.spec,
    promptLogprobs,
  }
  const echoOf = (index: number) => (body.echo ? model.tokenizer.decode(prompts[Math.floor(index / n)]) : '')
  const { resumed, before } = resumeOf(model, body, request, echoOf(0))
  const echo = (index: number) => (resumed ? before : echoOf(index))
  const abort = new AbortController()
  const chunks = startGeneration(api, model, { ...request, resume: resumed }, mergeSignals(c, abort))
  const id = `cmpl-${randomUUID()}`
  const created = Math.floor(Date.now() / 1000)
  // With echo, the prompt's entries come first (the first with a null logprob, as OpenAI's).
  const entriesOf = (chunk: Pick<TextChunk, 'logprobs' | 'promptLogprobs'>): PromptLogprob[] => [
    ...(chunk.promptLogprobs ?? []),
    ...(chunk.logprobs ?? []),
  ]

  if (body.stream) {
    let completionTokens = resumed?.tokens ?? 0
    const echoed = new Set<number>()
    // text_offset runs on across a choice's chunks (a resumed choice goes on from its offset).
    const offsets = new Map<number, { at: number }>()
    const offsetOf = (index: number) =>
      offsets.get(index) ?? offsets.set(index, { at: body.resume?.text_offset ?? 0 }).get(index)!
    return streamEvents(c, abort, chunks, {
      chunk: (chunk: TextChunk) => {
        completionTokens += chunk.tokens
        const prefix = echoed.has(chunk.index) ? '' : echo(chunk.index)
        echoed.add(chunk.index)
        const entries = entriesOf(chunk)
        const lp =
          logprobs >= 0 && entries.length > 0 ? completionLogprobs(model, entries, offsetOf(chunk.index)) : null
        const choice = {
          index: chunk.index,
          text: prefix + chunk.text,
          logprobs: lp,
          finish_reason: chunk.finishReason ?? null,
          ...idsOf(body.return_token_ids, chunk.tokenIds),
        }
        return [
          { id, object: 'text_completion', created, model: model.id, choices: [choice] } satisfies CompletionChunk,
        ]
      },
      end: () =>
        body.stream_options?.include_usage
          ? [
              {
                id,
                object: 'text_completion',
                created,
                model: model.id,
                choices: [],
                usage: usageOf(prompts, completionTokens),
              } satisfies CompletionChunk,
            ]
          : [],
    })
  }
  const choices = await collectChoices(chunks, prompts.length * n)
  return c.json({
    id,
    object: 'text_completion',
    created,
    model: model.id,
    choices: choices.map((choice, index) => ({
      index,
      text: echo(index) + choice.text,
      logprobs: logprobs >= 0 ? completionLogprobs(model, entriesOf(choice), { at: 0 }) : null,
      finish_reason: choice.finishReason,
      ...idsOf(body.return_token_ids, choice.tokenIds),
    })),
    usage: usageOf(prompts, (resumed?.tokens ?? 0) + sum(choices)),
  } satisfies Completion)
}

/** POST /v1/chat/completions */
export async function chatCompletions(c: Context, api: ApiContext): Promise<Response> {
  const { data: body } = await readJsonBody(c.req, chatRequestSchema)
  const model = resolveModel(api, body.model)
  const n = body.n ?? 1
  const plan = await planChat(model, body, api.maxGrammarChars, body.resume?.token_ids)
  const prompts = [plan.prompt]
  const maxTokens = fitMaxTokens(model, prompts, body.max_completion_tokens ?? body.max_tokens, Infinity, 'messages')
  const logprobs = body.logprobs ? (body.top_logprobs ?? 0) : -1
  const request: TextRequest = {
    prompts,
    n,
    maxTokens,
    stop: stopsOf(body.stop),
    sampling: samplingOf(body, logprobs),
    ignoreEos: body.ignore_eos ?? false,
    grammar: plan.grammar?.spec,
  }
  const { resumed } = resumeOf(model, body, request)
  const abort = new AbortController()
  const chunks = startGeneration(api, model, { ...request, resume: resumed }, mergeSignals(c, abort))
  const id = `chatcmpl-${randomUUID()}`
  const created = Math.floor(Date.now() / 1000)
  const logprobsOf = (lp: TokenLogprob[] | undefined) =>
    logprobs >= 0 && lp ? { content: chatLogprobs(model, lp) } : null

  if (body.stream) {
    let completionTokens = resumed?.tokens ?? 0
    // A resumed stream continues one that already opened with the role chunk.
    const started = new Set<number>(resumed ? [0] : [])
    const ids = (tokenIds: number[]) => idsOf(body.return_token_ids, tokenIds)
    const frame = (choice: ChatChunkChoice): ChatCompletionChunk => ({
      id,
      object: 'chat.completion.chunk',
      created,
      model: model.id,
      choices: [choice],
    })
    const toolStreams = new Map<number, ToolCallStream>()
    return streamEvents(c, abort, chunks, {
      chunk: (chunk: TextChunk) => {
        completionTokens += chunk.tokens
        const events: unknown[] = []
        if (!started.has(chunk.index)) {
          started.add(chunk.index)
          events.push(
            frame({
              index: chunk.index,
              delta: { role: 'assistant', content: '' },
              logprobs: null,
              finish_reason: null,
              ...ids([]),
            }),
          )
        }
        // With tools, text from a call's start on is held until the calls can be parsed (a resumed
        // stream starts its own: the interrupted one had sent only the text before any call).
        if (plan.toolFormat && !toolStreams.has(chunk.index))
          toolStreams.set(chunk.index, new ToolCallStream(plan.toolFormat))
        const tools = toolStreams.get(chunk.index)
        let text = tools ? tools.push(chunk.text) : chunk.text
        const ended = tools && chunk.finishReason ? tools.finish() : undefined
        if (ended) text += ended.content
        // Tokens whose text is held back still go out, so ids and text stay in step.
        if (text || chunk.logprobs || (body.return_token_ids && chunk.tokenIds.length > 0)) {
          events.push(
            frame({
              index: chunk.index,
              delta: { content: text },
              logprobs: logprobsOf(chunk.logprobs),
              finish_reason: null,
              ...ids(chunk.tokenIds),
            }),
          )
        }
        const calls = ended?.calls.length ? toolCallsOf(ended.calls) : undefined
        if (calls)
          events.push(
            frame({
              index: chunk.index,
              delta: { tool_calls: calls.map((call, index) => ({ index, ...call })) },
              logprobs: null,
              finish_reason: null,
              ...ids([]),
            }),
          )
        if (chunk.finishReason)
          events.push(
            frame({
              index: chunk.index,
              delta: {},
              logprobs: null,
              finish_reason: calls && chunk.finishReason === 'stop' ? 'tool_calls' : chunk.finishReason,
              ...ids([]),
            }),
          )
        return events
      },
      end: () =>
        body.stream_options?.include_usage
          ? [
              {
                id,
                object: 'chat.completion.chunk',
                created,
                model: model.id,
                choices: [],
                usage: usageOf(prompts, completionTokens),
              } satisfies ChatCompletionChunk,
            ]
          : [],
    })
  }
  const choices = await collectChoices(chunks, n)
  return c.json({
    id,
    object: 'chat.completion',
    created,
    model: model.id,
    choices: choices.map((choice: CollectedChoice, index) => ({
      index,
      ...toolMessage(plan.toolFormat, choice),
      logprobs: logprobsOf(choice.logprobs),
      ...idsOf(body.return_token_ids, choice.tokenIds),
    })),
    usage: usageOf(prompts, (resumed?.tokens ?? 0) + sum(choices)),
  } satisfies ChatCompletion)
}

function promptsOf(model: ServedModel, prompt: CompletionRequest['prompt']): number[][] {
  if (typeof prompt === 'string') return [model.tokenizer.encode(prompt)]
  if (prompt.every((p) => typeof p === 'string')) return (prompt as string[]).map((p) => model.tokenizer.encode(p))
  const lists = prompt.every((p) => typeof p === 'number') ? [prompt as number[]] : (prompt as number[][])
  const vocab = model.engine.info.shape.vocabSize
  if (lists.some((ids) => ids.some((id) => id >= vocab)))
    throw new ApiError(400, `Token ids must be below the vocabulary size ${vocab}`, {
      param: 'prompt',
      code: 'invalid_value',
    })
  return lists
}

/**
 * OpenAI's completions logprobs. `offset.at` is the text offset of the first entry and is
 * moved past the last, so a stream's chunks continue one another (as vLLM, the offsets add
 * up the tokens' texts, echoed prompt tokens included).
 */
function completionLogprobs(model: ServedModel, entries: PromptLogprob[], offset: { at: number }): CompletionLogprobs {
  const tokens = entries.map((t) => model.tokenizer.tokenText(t.token))
  return {
    tokens,
    token_logprobs: entries.map((t) => t.logprob),
    top_logprobs: entries.map((t) =>
      t.logprob === null
        ? null
        : Object.fromEntries((t.top ?? []).map((a) => [model.tokenizer.tokenText(a.token), a.logprob])),
    ),
    text_offset: tokens.map((t) => {
      const start = offset.at
      offset.at += t.length
      return start
    }),
  }
}

function chatLogprobs(model: ServedModel, lp: TokenLogprob[]): ChatLogprobs['content'] {
  const entry = (token: number, logprob: number) => {
    const text = model.tokenizer.tokenText(token)
    return { token: text, logprob, bytes: [...Buffer.from(text, 'utf8')] }
  }
  return lp.map((t) => ({
    ...entry(t.token, t.logprob),
    top_logprobs: (t.top ?? []).map((a) => entry(a.token, a.logprob)),
  }))
}

const sum = (choices: CollectedChoice[]) => choices.reduce((total, c) => total + c.tokens, 0)
