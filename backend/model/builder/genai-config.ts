// genai_config.json as the onnxruntime-genai model builder writes it for a decoder-only model
// (see its config reference): shapes, I/O name patterns, EOS ids, and search defaults with
// past_present_share_buffer on (GroupQueryAttention updates the cache in place).
import type { LlamaShape } from './llama-graph.ts'

export function genaiConfig(shape: LlamaShape, modelType: string, filename: string) {
  return {
    model: {
      bos_token_id: 1,
      context_length: shape.contextLength,
      decoder: {
        session_options: { log_id: 'onnxruntime-genai', provider_options: [] },
        filename,
        head_size: shape.headDim,
        hidden_size: shape.hiddenSize,
        inputs: {
          input_ids: 'input_ids',
          attention_mask: 'attention_mask',
          past_key_names: 'past_key_values.%d.key',
          past_value_names: 'past_key_values.%d.value',
        },
        outputs: {
          logits: 'logits',
          present_key_names: 'present.%d.key',
          present_value_names: 'present.%d.value',
        },
        num_attention_heads: shape.numHeads,
        num_hidden_layers: shape.numLayers,
        num_key_value_heads: shape.numKvHeads,
      },
      eos_token_id: 2,
      pad_token_id: 2,
      type: modelType,
      vocab_size: shape.vocabSize,
    },
    search: {
      diversity_penalty: 0.0,
      do_sample: false,
      early_stopping: true,
      length_penalty: 1.0,
      max_length: shape.contextLength,
      min_length: 0,
      no_repeat_ngram_size: 0,
      num_beams: 1,
      num_return_sequences: 1,
      past_present_share_buffer: true,
      repetition_penalty: 1.0,
      temperature: 1.0,
      top_k: 1,
      top_p: 1.0,
    },
  }
}
