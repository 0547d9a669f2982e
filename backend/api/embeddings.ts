import type { Context } from 'hono'
import { readJsonBody } from '../../openai/body.ts'
import { embeddingRequestSchema } from '../../openai/encoder-requests.ts'
import { ApiError } from '../../openai/errors.ts'
import { normalizeL2 } from '../encoder/pooling.ts'
import type { ServedEncoder } from '../encoder/served.ts'
import { type EncoderApiContext, encodeRows, tokenizeInputs } from './encoding.ts'

/** POST /v1/embeddings (OpenAI): one pooled vector per input, as floats or base64 little-endian float32. */
export async function embeddings(c: Context, api: EncoderApiContext): Promise<Response> {
  const { data: body } = await readJsonBody(c.req, embeddingRequestSchema)
  const encoder = embeddingModel(api, body.model)
  const width = encoder.engine.info.width
  if (body.dimensions != null && body.dimensions > width)
    throw new ApiError(400, `dimensions must be at most ${width}, this model's embedding size`, {
      param: 'dimensions',
      code: 'invalid_value',
    })
  const inputs =
    typeof body.input === 'string' || typeof body.input[0] === 'number'
      ? [body.input as string | number[]]
      : (body.input as (string | number[])[])
  const rows = tokenizeInputs(encoder, inputs, body.truncate_prompt_tokens, 'input')
  const vectors = await encodeRows(api, encoder, rows)
  const base64 = body.encoding_format === 'base64'
  const data = vectors.map((vector, index) => {
    // Matryoshka: the first `dimensions` values, renormalised to unit length.
    const kept =
      body.dimensions != null && body.dimensions < width ? normalizeL2(vector.slice(0, body.dimensions)) : vector
    return {
      object: 'embedding',
      index,
      embedding: base64
        ? Buffer.from(kept.buffer, kept.byteOffset, kept.byteLength).toString('base64')
        : Array.from(kept),
    }
  })
  const promptTokens = rows.reduce((n, r) => n + r.length, 0)
  return c.json({
    object: 'list',
    data,
    model: encoder.id,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  })
}

function embeddingModel(api: EncoderApiContext, name: string): ServedEncoder {
  const encoder = api.encoders.get(name)
  if (!encoder) {
    const served = [...api.encoders.values()].filter((e) => e.folder.task === 'feature-extraction').map((e) => e.id)
    const known = api.models.has(name) ? ` '${name}' is a text-generation model.` : ''
    throw new ApiError(
      404,
      `The model '${name}' does not exist on this server or is not an embedding model.${known} Embedding models served: ${served.join(', ') || 'none'}`,
      { param: 'model', code: 'model_not_found' },
    )
  }
  if (encoder.folder.task !== 'feature-extraction')
    throw new ApiError(
      400,
      `The model '${name}' is a text-classification model; embeddings need a feature-extraction model`,
      { param: 'model', code: 'invalid_value' },
    )
  return encoder
}
