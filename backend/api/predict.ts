import type { Context } from 'hono'
import { readJsonBody } from '../../openai/body.ts'
import {
  PREDICT_DEFAULT_NEW_TOKENS,
  PREDICT_TASKS,
  type PredictRequest,
  predictRequestSchema,
} from '../../openai/encoder-requests.ts'
import { ApiError } from '../../openai/errors.ts'
import { configVersion } from '../encoder/folder.ts'
import type { TextRequest } from '../engine/text-generation.ts'
import { NEUTRAL_SAMPLING } from '../sampling/sampler.ts'
import { type EncoderApiContext, encodeRows, servedTasks, tokenizeInputs } from './encoding.ts'
import { collectChoices, fitMaxTokens, mergeSignals, startGeneration } from './generation.ts'

/**
 * POST /predict: the seed's task API. {text, task, model_name?} → {result, processing_time,
 * model_version, usage}; result is what the Hugging Face pipeline of that task returns for one
 * text; usage (OpenAI's shape, an addition to the seed's) lets the gateway count real tokens.
 */
export async function predict(c: Context, api: EncoderApiContext): Promise<Response> {
  const started = performance.now()
  const { data: body } = await readJsonBody(c.req, predictRequestSchema)
  const task = body.task === 'sentiment-analysis' ? 'text-classification' : body.task
  if (!(PREDICT_TASKS as readonly string[]).includes(task)) {
    throw new ApiError(400, `Unknown task '${body.task}'. Tasks served: ${describeServed(api)}`, {
      param: 'task',
      code: 'invalid_value',
    })
  }
  const name = body.model_name ?? servedTasks(api).find((m) => m.tasks.includes(task))?.name
  const model = servedTasks(api).find((m) => m.name === name)
  if (!name || !model) {
    const what = name
      ? `The model '${name}' does not exist on this server`
      : `No served model does the task '${body.task}'`
    throw new ApiError(name ? 404 : 400, `${what}. Models served: ${describeServed(api)}`, {
      param: name ? 'model_name' : 'task',
      code: name ? 'model_not_found' : 'invalid_value',
    })
  }
  if (!model.tasks.includes(task))
    throw new ApiError(
      400,
      `The model '${name}' does not do the task '${body.task}'. Models served: ${describeServed(api)}`,
      { param: 'task', code: 'invalid_value' },
    )

  const { result, version, promptTokens, completionTokens } =
    task === 'text-generation' ? await generate(c, api, name, body) : await encode(api, name, task, body)
  return c.json({
    result,
    processing_time: Number(((performance.now() - started) / 1000).toFixed(6)),
    model_version: version,
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  })
}

/** GET /models: every served model with its tasks (beside OpenAI's /v1/models). */
export function listTaskModels(c: Context, api: EncoderApiContext): Response {
  return c.json({ models: servedTasks(api) })
}

function describeServed(api: EncoderApiContext): string {
  return (
    servedTasks(api)
      .map((m) => `${m.name} (${m.tasks.join(', ')})`)
      .join('; ') || 'none'
  )
}

async function encode(api: EncoderApiContext, name: string, task: string, body: PredictRequest) {
  const encoder = api.encoders.get(name)!
  const rows = tokenizeInputs(encoder, [body.text], body.truncate_prompt_tokens, 'text')
  const [vector] = await encodeRows(api, encoder, rows)
  const counts = {
    version: `${encoder.id}@${encoder.folder.version}`,
    promptTokens: rows[0].length,
    completionTokens: 0,
  }
  if (task === 'feature-extraction') return { result: Array.from(vector), ...counts }
  const labels = encoder.folder.labels
  const ranked = Array.from(vector, (score, i) => ({ label: labels[i] ?? `LABEL_${i}`, score })).sort(
    (a, b) => b.score - a.score,
  )
  return { result: ranked.slice(0, body.top_k ?? 1), ...counts }
}

async function generate(c: Context, api: EncoderApiContext, name: string, body: PredictRequest) {
  const model = api.models.get(name)!
  const prompts = [model.tokenizer.encode(body.text)]
  const maxTokens = fitMaxTokens(model, prompts, body.max_new_tokens, PREDICT_DEFAULT_NEW_TOKENS, 'text')
  const request: TextRequest = { prompts, n: 1, maxTokens, stop: [], sampling: { ...NEUTRAL_SAMPLING } }
  const abort = new AbortController()
  const [choice] = await collectChoices(startGeneration(api, model, request, mergeSignals(c, abort)), 1)
  return {
    result: [{ generated_text: body.text + choice.text }],
    version: `${model.id}@${configVersion(model.folder.dir)}`,
    promptTokens: prompts[0].length,
    completionTokens: choice.tokens,
  }
}
