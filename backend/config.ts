import { z } from 'zod'
import { logSettingsSchema } from '../lib/log-settings.ts'
import { MODEL_VARIANTS } from './model/folder.ts'

/**
 * Backend node configuration, read from environment variables in this one place. Every knob
 * has a default and a line in the README's configuration reference.
 */
const intFrom = (min: number, max: number, fallback: number) => z.coerce.number().int().min(min).max(max).default(fallback)

export const backendConfigSchema = z.object({
  MODEL_DIR: z.string().min(1).optional(),
  MODEL_ID: z.string().regex(/^[\w.:\-/]{1,128}$/, 'letters, digits and . _ - : / only').optional(),
  MODEL_VARIANT: z.enum(MODEL_VARIANTS).default('auto'),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: intFrom(0, 65535, 8000),
  DEVICE: z.enum(['cpu', 'cuda', 'auto']).default('auto'),
  CUDA_DEVICE_ID: intFrom(0, 64, 0),
  CPU_THREADS: intFrom(0, 1024, 0),
  GRAPH_OPTIMIZATION: z.enum(['disabled', 'basic', 'extended', 'all']).default('all'),
  MAX_BATCH_SIZE: intFrom(1, 1024, 32),
  MAX_TOKENS_IN_FLIGHT: intFrom(1, 100_000_000, 262_144),
  MAX_PREFILL_TOKENS: intFrom(1, 1_000_000, 2048),
  MAX_QUEUE: intFrom(0, 100_000, 256),
  REQUEST_TIMEOUT_MS: intFrom(1, 86_400_000, 300_000),
  DRAIN_TIMEOUT_MS: intFrom(0, 3_600_000, 30_000),
  /** An engine worker showing no progress (no finished step while it has work, no idle beat) for this long fails /live and /ready. */
  ENGINE_STALL_TIMEOUT_MS: intFrom(100, 3_600_000, 60_000),
  MAX_BODY_BYTES: intFrom(1024, 1 << 30, 1 << 20),
  RETRY_AFTER_SECONDS: intFrom(1, 3600, 1),
  /** Compiled grammars (JSON schemas, regexes, tool formats) kept per model. */
  GRAMMAR_CACHE_SIZE: intFrom(1, 100_000, 64),
  /** Characters of grammar text a request may send (its JSON schema, regex, EBNF, tools). */
  MAX_GRAMMAR_CHARS: intFrom(1, 100_000_000, 65_536),
  /** Encoder models: how long an idle batcher waits for more inputs (0: inputs arriving while a batch runs form the next), and the batch budgets. */
  ENCODER_BATCH_WINDOW_MS: intFrom(0, 1000, 0),
  ENCODER_MAX_BATCH_TOKENS: intFrom(1, 10_000_000, 2048),
  ENCODER_MAX_BATCH_SIZE: intFrom(1, 4096, 64),
  /** Most encoder inputs waiting at once (all requests); beyond it 503. */
  ENCODER_MAX_QUEUE: intFrom(1, 1_000_000, 4096),
  ...logSettingsSchema,
  /** JWKS file of the gateway's public keys. Set: every request needs a gateway token. Unset: the node is open (development). */
  GATEWAY_VERIFY_KEYS_FILE: z.string().min(1).optional(),
  GATEWAY_TOKEN_AUDIENCE: z.string().regex(/^[\x21-\x7e]{1,256}$/, '1 to 256 printable ASCII characters, no spaces').default('switchyard-backend'),
})

export type BackendConfig = z.infer<typeof backendConfigSchema>

/** Parses the environment; throws one line per bad variable. */
export function loadBackendConfig(env: Record<string, string | undefined> = process.env): BackendConfig {
  const picked = Object.fromEntries(Object.keys(backendConfigSchema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]))
  const result = backendConfigSchema.safeParse(picked)
  if (!result.success) {
    throw new Error(result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '))
  }
  return result.data
}
