import { z } from 'zod'

/**
 * The gateway's configuration: one typed, validated object built from the config file
 * (GATEWAY_CONFIG, JSON) and environment variables for addresses and secrets. Every key has a
 * default and a line in the README.
 */
const positiveInt = z.number().int().positive()

export const limitsSchema = z
  .object({
    requestsPerWindow: positiveInt.optional(),
    requestWindowSeconds: positiveInt.max(86_400).optional(),
    tokensPerMinute: positiveInt.optional(),
    maxConcurrent: positiveInt.optional(),
  })
  .strict()

const apiKeySchema = z
  .object({
    id: z.string().regex(/^[\w.-]{1,64}$/),
    /** hex SHA-256 of the key; the key itself never appears in config. */
    hash: z.string().regex(/^[0-9a-f]{64}$/, 'must be the hex SHA-256 of the key'),
    tenant: z.string().min(1).max(128),
    models: z.array(z.string().min(1)).optional(),
    limits: limitsSchema.default({}),
  })
  .strict()

const jwtSchema = z
  .object({
    jwksUrl: z.string().url().optional(),
    keys: z.array(z.record(z.string(), z.unknown())).optional(),
    algorithms: z.array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'])).min(1),
    issuer: z.union([z.string(), z.array(z.string())]).optional(),
    audience: z.union([z.string(), z.array(z.string())]).optional(),
    clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
    claims: z
      .object({ tenant: z.string().default('tenant'), models: z.string().optional(), limits: z.string().optional() })
      .strict()
      .default({ tenant: 'tenant' }),
  })
  .strict()
  .refine((j) => Boolean(j.jwksUrl) !== Boolean(j.keys), 'give exactly one of jwksUrl or keys')

export const gatewayFileSchema = z
  .object({
    /** The backend node every request goes to (the router replaces this with regions). */
    backend: z.object({ url: z.string().url() }).strict().optional(),
    auth: z
      .object({
        apiKeys: z.array(apiKeySchema).default([]),
        jwt: jwtSchema.optional(),
      })
      .strict()
      .default({ apiKeys: [] }),
    limits: z
      .object({
        /** Limits for keys and tokens that set none of their own. */
        defaults: limitsSchema.default({ requestsPerWindow: 600, requestWindowSeconds: 60, tokensPerMinute: 200_000, maxConcurrent: 64 }),
        /** Per client IP, for routes without authentication. */
        perIp: z.object({ requestsPerWindow: positiveInt, requestWindowSeconds: positiveInt }).strict().default({ requestsPerWindow: 1200, requestWindowSeconds: 60 }),
        /** Peers whose X-Forwarded-For is believed (exact IPs). */
        trustedProxies: z.array(z.string()).default([]),
        /** max_tokens filled in when a request sets none, so its token reservation is bounded. */
        defaultMaxTokens: positiveInt.default(512),
      })
      .strict()
      .default({ defaults: { requestsPerWindow: 600, requestWindowSeconds: 60, tokensPerMinute: 200_000, maxConcurrent: 64 }, perIp: { requestsPerWindow: 1200, requestWindowSeconds: 60 }, trustedProxies: [], defaultMaxTokens: 512 }),
    cache: z
      .object({ enabled: z.boolean().default(true), ttlSeconds: positiveInt.default(300), maxEntryBytes: positiveInt.default(1 << 20) })
      .strict()
      .default({ enabled: true, ttlSeconds: 300, maxEntryBytes: 1 << 20 }),
    server: z
      .object({
        maxBodyBytes: positiveInt.default(1 << 20),
        /** Characters of prompt text (prompt or all messages) accepted. */
        maxPromptChars: positiveInt.default(200_000),
        /** Whole-request deadline at the gateway, streams included. */
        requestTimeoutMs: positiveInt.default(300_000),
        maxHeaderBytes: positiveInt.default(16_384),
      })
      .strict()
      .default({ maxBodyBytes: 1 << 20, maxPromptChars: 200_000, requestTimeoutMs: 300_000, maxHeaderBytes: 16_384 }),
  })
  .strict()

export type GatewayFileConfig = z.infer<typeof gatewayFileSchema>

const intFrom = (min: number, max: number, fallback: number) => z.coerce.number().int().min(min).max(max).default(fallback)
const hostPorts = z
  .string()
  .transform((s, ctx) =>
    s.split(',').map((part) => {
      const m = /^\s*([^:\s]+):(\d+)\s*$/.exec(part)
      if (!m) ctx.addIssue({ code: 'custom', message: `"${part}" is not host:port` })
      return { host: m?.[1] ?? '', port: Number(m?.[2] ?? 0) }
    }),
  )

export const gatewayEnvSchema = z.object({
  GATEWAY_CONFIG: z.string().optional(),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: intFrom(0, 65535, 8080),
  /** Separate plain-HTTP port for /metrics (0 = off; /metrics stays on the main port behind the admin token). */
  METRICS_PORT: intFrom(0, 65535, 0),
  BACKEND_URL: z.string().url().optional(),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional(),
  REDIS_SENTINELS: hostPorts.optional(),
  REDIS_SENTINEL_NAME: z.string().default('mymaster'),
  REDIS_CLUSTER_NODES: hostPorts.optional(),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  TLS_CERT_FILE: z.string().optional(),
  TLS_KEY_FILE: z.string().optional(),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
})

export type GatewayEnv = z.infer<typeof gatewayEnvSchema>

export interface GatewayConfig extends GatewayFileConfig {
  env: GatewayEnv
  backend: { url: string }
}
