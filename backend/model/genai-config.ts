import { z } from 'zod'

/**
 * The parts of onnxruntime-genai's genai_config.json (written by its model builder) that serving
 * needs: shapes, EOS ids, context length and I/O name patterns (`%d` = layer). Unknown keys are
 * ignored; the builder writes many more.
 */
const namePattern = z.string().min(1).regex(/%d/, 'must contain %d (the layer index)')

export const genaiConfigSchema = z.object({
  model: z.object({
    type: z.string().min(1),
    context_length: z.number().int().min(2),
    vocab_size: z.number().int().positive().optional(),
    eos_token_id: z.union([z.number().int().nonnegative(), z.array(z.number().int().nonnegative())]),
    bos_token_id: z.number().int().nonnegative().optional(),
    decoder: z.object({
      filename: z.string().min(1).default('model.onnx'),
      head_size: z.number().int().positive(),
      hidden_size: z.number().int().positive().optional(),
      num_attention_heads: z.number().int().positive(),
      num_hidden_layers: z.number().int().positive(),
      num_key_value_heads: z.number().int().positive(),
      inputs: z
        .object({
          input_ids: z.string().min(1).default('input_ids'),
          attention_mask: z.string().min(1).default('attention_mask'),
          position_ids: z.string().min(1).default('position_ids'),
          past_key_names: namePattern.default('past_key_values.%d.key'),
          past_value_names: namePattern.default('past_key_values.%d.value'),
        })
        .prefault({}),
      outputs: z
        .object({
          logits: z.string().min(1).default('logits'),
          present_key_names: namePattern.default('present.%d.key'),
          present_value_names: namePattern.default('present.%d.value'),
        })
        .prefault({}),
    }),
  }),
  // search.past_present_share_buffer is not read: Switchyard binds past and present of every
  // GroupQueryAttention graph to one buffer (the op picks shared mode by buffer identity).
})

export type GenaiConfig = z.infer<typeof genaiConfigSchema>

/** Graph input and output names; `%d` in the KV patterns stands for the layer index. */
export interface IoNames {
  inputIds: string
  attentionMask: string
  positionIds: string
  pastKey: string
  pastValue: string
  logits: string
  presentKey: string
  presentValue: string
}

/** The names Optimum / transformers.js exports use. */
export const OPTIMUM_IO_NAMES: IoNames = {
  inputIds: 'input_ids',
  attentionMask: 'attention_mask',
  positionIds: 'position_ids',
  pastKey: 'past_key_values.%d.key',
  pastValue: 'past_key_values.%d.value',
  logits: 'logits',
  presentKey: 'present.%d.key',
  presentValue: 'present.%d.value',
}

export function genaiIoNames(config: GenaiConfig): IoNames {
  const { inputs, outputs } = config.model.decoder
  return {
    inputIds: inputs.input_ids,
    attentionMask: inputs.attention_mask,
    positionIds: inputs.position_ids,
    pastKey: inputs.past_key_names,
    pastValue: inputs.past_value_names,
    logits: outputs.logits,
    presentKey: outputs.present_key_names,
    presentValue: outputs.present_value_names,
  }
}

/** `past_key_values.%d.key`, 3 → `past_key_values.3.key` */
export function layerName(pattern: string, layer: number): string {
  return pattern.replace('%d', String(layer))
}

/** Parses genai_config.json text; throws one line naming the first bad field. */
export function parseGenaiConfig(value: unknown): GenaiConfig {
  const result = genaiConfigSchema.safeParse(value)
  if (!result.success) {
    const issue = result.error.issues[0]
    throw new Error(`genai_config.json: ${issue.path.join('.') || '(root)'}: ${issue.message}`)
  }
  return result.data
}
