import type { Context } from 'hono'
import type { ServedModel } from '../engine/text-generation.ts'
import { type ApiContext, resolveModel } from './generation.ts'

/** One model in OpenAI's shape, plus vLLM's `max_model_len` (the context window). */
export function modelCard(m: ServedModel) {
  return { id: m.id, object: 'model', created: m.created, owned_by: 'switchyard', max_model_len: m.folder.contextLength }
}

/** GET /v1/models */
export function listModels(c: Context, api: ApiContext): Response {
  return c.json({ object: 'list', data: [...api.models.values()].map(modelCard) })
}

/** GET /v1/models/{id} (the SDKs' models.retrieve); 404 model_not_found for an unknown id. */
export function retrieveModel(c: Context, api: ApiContext): Response {
  return c.json(modelCard(resolveModel(api, c.req.param('id'))))
}
