import type { Context } from 'hono'
import type { ServedEncoder } from '../encoder/served.ts'
import type { ServedModel } from '../engine/text-generation.ts'
import { type ApiContext, resolveModel } from './generation.ts'

type ModelsContext = ApiContext & { encoders?: Map<string, ServedEncoder> }

/** One model in OpenAI's shape, plus vLLM's `max_model_len` (the context window, or an encoder's input limit). */
export function modelCard(m: ServedModel | ServedEncoder) {
  const maxModelLen = 'contextLength' in m.folder ? m.folder.contextLength : m.folder.maxLength
  return { id: m.id, object: 'model', created: m.created, owned_by: 'switchyard', max_model_len: maxModelLen }
}

/** GET /v1/models: decoders and encoders. */
export function listModels(c: Context, api: ModelsContext): Response {
  return c.json({ object: 'list', data: [...api.models.values(), ...(api.encoders?.values() ?? [])].map(modelCard) })
}

/** GET /v1/models/{id} (the SDKs' models.retrieve); 404 model_not_found for an unknown id. */
export function retrieveModel(c: Context, api: ModelsContext): Response {
  const id = c.req.param('id')
  const encoder = id === undefined ? undefined : api.encoders?.get(id)
  return c.json(modelCard(encoder ?? resolveModel(api, id)))
}
