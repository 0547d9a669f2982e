import { z } from 'zod'
import { logSettingsSchema } from '../lib/log-settings.ts'
import { MODEL_VARIANTS } from './model/folder.ts'

/**
 * Backend node configuration, read from environment variables in this one place. Every knob
 * has a default and a description, which `npm run docs:config` writes into docs/configuration.md.
 */
const intFrom = (min: number, max: number, fallback: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback)

export const backendConfigSchema = z.object({
  MODEL_DIR: z.string().min(1).optional().meta({
    description: 'a model folder, or a folder whose subfolders are model folders (each served)',
    docDefault: '(build `models/random-tiny`)',
  }),
  MODEL_ID: z
    .string()
    .regex(/^[\w.:\-/]{1,128}$/, 'letters, digits and . _ - : / only')
    .optional()
    .meta({
      description: 'public id of the model when `MODEL_DIR` is a single model folder',
      docDefault: 'folder name',
    }),
  MODEL_VARIANT: z
    .enum(MODEL_VARIANTS)
    .default('auto')
    .describe(
      'which ONNX file of an Optimum / transformers.js folder: `fp32`, `fp16`, `int8`, `uint8`, `quantized`, `q4`, `q4f16`, `bnb4`, or `auto` (order per device: see [Models](models.md)). Not for model-builder folders (one file each)',
    ),
  HOST: z.string().min(1).default('127.0.0.1').describe('address to listen on (`0.0.0.0` in containers)'),
  PORT: intFrom(0, 65535, 8000).describe('port to listen on (`0` picks a free one; the start log says which)'),
  DEVICE: z
    .enum(['cpu', 'cuda', 'auto'])
    .default('auto')
    .describe('`cpu`, `cuda`, or `auto` (try CUDA, fall back to CPU, log which)'),
  CUDA_DEVICE_ID: intFrom(0, 64, 0).describe('GPU ordinal for `cuda` / `auto`'),
  CPU_THREADS: intFrom(0, 1024, 0).describe(
    'onnxruntime intra-op threads on CPU; 0 lets onnxruntime choose. Tiny models run fastest on 1',
  ),
  GRAPH_OPTIMIZATION: z
    .enum(['disabled', 'basic', 'extended', 'all'])
    .default('all')
    .describe('onnxruntime graph optimization level: `disabled`, `basic`, `extended`, `all`'),
  MAX_BATCH_SIZE: intFrom(1, 1024, 32).describe('most sequences decoded together in one forward pass'),
  MAX_TOKENS_IN_FLIGHT: intFrom(1, 100_000_000, 262_144).describe(
    'admission stops while running prompts + their `max_tokens` would pass this; bounds KV cache memory',
  ),
  MAX_PREFILL_TOKENS: intFrom(1, 1_000_000, 2048).describe(
    "padded prompt tokens prefilled in one pass at a step boundary; a longer prompt is prefilled in chunks of this size, one per step, between the running sequences' decode passes",
  ),
  MAX_QUEUE: intFrom(0, 100_000, 256).describe(
    'sequences waiting for a batch slot before new requests get 503 `queue_full`',
  ),
  REQUEST_TIMEOUT_MS: intFrom(1, 86_400_000, 300_000).describe(
    'per-request deadline, from submission (queue wait included) to the last token (504, or an error event in a stream)',
  ),
  DRAIN_TIMEOUT_MS: intFrom(0, 3_600_000, 30_000).describe('how long SIGTERM waits for in-flight requests'),
  ENGINE_STALL_TIMEOUT_MS: intFrom(100, 3_600_000, 60_000).describe(
    'an engine worker with no finished step (while it has work) and no idle heartbeat for this long fails `/live` and `/ready` (503 `stalled`); keep it above the longest single step (a full prefill of `MAX_PREFILL_TOKENS` on the slowest device); at least 100',
  ),
  MAX_BODY_BYTES: intFrom(1024, 1 << 30, 1 << 20).describe('largest request body (413 beyond)'),
  RETRY_AFTER_SECONDS: intFrom(1, 3600, 1).describe('`Retry-After` on 503 answers'),
  GRAMMAR_CACHE_SIZE: intFrom(1, 100_000, 64).describe(
    'compiled grammars kept per model (least recently used dropped)',
  ),
  MAX_GRAMMAR_CHARS: intFrom(1, 100_000_000, 65_536).describe(
    'characters of output-format text a request may send (JSON schema, regex, EBNF, tools as JSON); 400 `grammar_too_large` beyond',
  ),
  ENCODER_BATCH_WINDOW_MS: intFrom(0, 1000, 0).describe(
    'encoder models: how long an idle batcher waits for more inputs before running (inputs arriving while a batch runs always join the next one)',
  ),
  ENCODER_MAX_BATCH_TOKENS: intFrom(1, 10_000_000, 2048).describe(
    'encoder models: most padded tokens (rows × longest input) in one forward pass. On CPU, batching long inputs gains nothing (compute-bound) and large batches lose to memory traffic; GPUs want far more (e.g. 16384)',
  ),
  ENCODER_MAX_BATCH_SIZE: intFrom(1, 4096, 64).describe('encoder models: most inputs in one forward pass'),
  ENCODER_MAX_QUEUE: intFrom(1, 1_000_000, 4096).describe(
    'encoder inputs waiting at once (all requests) before new requests get 503 `queue_full`',
  ),
  ...logSettingsSchema,
  LOG_LEVEL: logSettingsSchema.LOG_LEVEL.describe('pino level: `fatal` … `trace`, or `silent`'),
  LOG_FORMAT: logSettingsSchema.LOG_FORMAT.describe(
    '`pretty`, `json`, or `auto` (pretty on a terminal, JSON otherwise)',
  ),
  GATEWAY_VERIFY_KEYS_FILE: z
    .string()
    .min(1)
    .optional()
    .describe(
      'JWKS file (`{"keys": [...]}`) of the gateway\'s public keys (EdDSA/Ed25519 or ES256/P-256, each with `kid` and `alg`). Set: every request except `/health`, `/live`, `/ready`, `/metrics` needs a gateway token. Unset: the node accepts anyone and says so in its start log (local development only). Unreadable or invalid at start: exit code 2',
    ),
  GATEWAY_TOKEN_AUDIENCE: z
    .string()
    .regex(/^[\x21-\x7e]{1,256}$/, '1 to 256 printable ASCII characters, no spaces')
    .default('switchyard-backend')
    .describe('the `aud` gateway tokens must carry'),
})

export type BackendConfig = z.infer<typeof backendConfigSchema>

/** Parses the environment; throws one line per bad variable. */
export function loadBackendConfig(env: Record<string, string | undefined> = process.env): BackendConfig {
  const picked = Object.fromEntries(
    Object.keys(backendConfigSchema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]),
  )
  const result = backendConfigSchema.safeParse(picked)
  if (!result.success) {
    throw new Error(result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '))
  }
  return result.data
}
