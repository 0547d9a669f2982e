import type { Context } from 'hono'
import { readJsonBody } from '../../openai/body.ts'
import { generateRequestSchema } from '../../openai/requests.ts'
import type { TextRequest } from '../engine/text-generation.ts'
import { NEUTRAL_SAMPLING } from '../sampling/sampler.ts'
import {
  type ApiContext,
  collectChoices,
  fitMaxTokens,
  mergeSignals,
  resolveModel,
  startGeneration,
} from './generation.ts'

/**
 * POST /generate: the simple API many model servers expose. `max_length` counts new tokens;
 * `generated_text` is the continuation only (plus the prompt with return_full_text), a string
 * for one sequence and a list of strings for several.
 */
export async function generate(c: Context, api: ApiContext): Promise<Response> {
  const started = performance.now()
  const { data: body } = await readJsonBody(c.req, generateRequestSchema)
  const model = resolveModel(api, body.model)
  const prompts = [model.tokenizer.encode(body.prompt)]
  const maxTokens = fitMaxTokens(model, prompts, body.max_length, body.max_length)
  const request: TextRequest = {
    prompts,
    n: body.num_return_sequences,
    maxTokens,
    stop: body.stop == null ? [] : typeof body.stop === 'string' ? [body.stop] : body.stop,
    sampling: {
      ...NEUTRAL_SAMPLING,
      temperature: body.temperature,
      topK: body.top_k,
      topP: body.top_p,
      seed: body.seed ?? undefined,
    },
  }
  const choices = await collectChoices(
    startGeneration(api, model, request, mergeSignals(c, new AbortController())),
    request.n,
  )
  const texts = choices.map((choice) => (body.return_full_text ? body.prompt : '') + choice.text)
  const reasons = choices.map((choice) => choice.finishReason)
  const single = request.n === 1
  return c.json({
    generated_text: single ? texts[0] : texts,
    finish_reason: single ? reasons[0] : reasons,
    model: model.id,
    inference_time_ms: Math.round((performance.now() - started) * 100) / 100,
    input_tokens: prompts[0].length,
    output_tokens: choices.reduce((total, choice) => total + choice.tokens, 0),
  })
}
