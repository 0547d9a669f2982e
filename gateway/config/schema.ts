import { z } from 'zod'
import { logSettingsSchema } from '../../lib/log-settings.ts'

/**
 * The gateway's configuration: one typed, validated object built from the config file
 * (GATEWAY_CONFIG, JSON) and environment variables for addresses and secrets. Every key has a
 * default and a line in the README.
 */
const positiveInt = z.number().int().positive()
/** A backend's address: a bare `localhost:8000` would parse as a URL of scheme "localhost:" and fail only later. */
const backendUrl = z.url({ protocol: /^https?$/, error: 'must be an http:// or https:// URL, e.g. http://127.0.0.1:8000' })

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
    /** Leeway for exp, nbf and iat between the issuer's clock and ours. */
    clockToleranceSeconds: z.number().int().min(0).max(300).default(5),
    /** Longest validity accepted (exp − iat, and exp − now): longer-lived tokens are refused. */
    maxLifetimeSeconds: positiveInt.max(31_536_000).default(86_400),
    claims: z
      .object({ tenant: z.string().default('tenant'), models: z.string().optional(), limits: z.string().optional() })
      .strict()
      .default({ tenant: 'tenant' }),
  })
  .strict()
  .refine((j) => Boolean(j.jwksUrl) !== Boolean(j.keys), 'give exactly one of jwksUrl or keys')


const nameSchema = z.string().regex(/^[\w.-]{1,64}$/, 'letters, digits and . _ - only (at most 64)')

const nodeSchema = z
  .object({
    /** Unique across all regions; appears in logs, metrics and x-switchyard-backend. */
    id: nameSchema,
    url: backendUrl,
    /** Share of the region's traffic relative to the other nodes. */
    weight: z.number().positive().max(1000).default(1),
    /** Model ids this node serves; omitted = every model. */
    models: z.array(z.string().min(1)).optional(),
  })
  .strict()

/**
 * Nodes found by DNS (Node entry): every address a name resolves to is one node, e.g. the pods
 * behind a Kubernetes headless Service, so breakers and retries work per pod.
 */
const discoveredNodesSchema = z
  .object({
    /** Node ids become `<id>-<address>`. */
    id: nameSchema,
    dns: z.string().regex(/^[a-zA-Z0-9.-]{1,253}$/, 'a DNS name'),
    port: z.number().int().min(1).max(65535),
    scheme: z.enum(['http', 'https']).default('http'),
    weight: z.number().positive().max(1000).default(1),
    models: z.array(z.string().min(1)).optional(),
  })
  .strict()

const regionSchema = z
  .object({
    name: nameSchema,
    /** Regions to fail over to, in order, when this one has no usable node for a request. */
    fallback: z.array(nameSchema).default([]),
    nodes: z.array(z.union([nodeSchema, discoveredNodesSchema])).min(1),
  })
  .strict()

const aliasSchema = z
  .object({
    /** Model versions behind the public name, with traffic weights (canary / A/B). */
    versions: z.array(z.object({ model: z.string().min(1), weight: z.number().min(0) }).strict()).min(1),
    /** The same key always gets the same version (hash of the key id). */
    sticky: z.boolean().default(false),
  })
  .strict()
  .refine((a) => a.versions.some((v) => v.weight > 0), 'at least one version needs a weight above 0')

export const routingSchema = z
  .object({
    regions: z.array(regionSchema).min(1),
    /** The gateway's own region (GATEWAY_REGION overrides); default the first region. */
    region: nameSchema.optional(),
    /** Header a client may use to ask for a region. */
    regionHeader: z.string().regex(/^[a-z0-9-]+$/).default('x-switchyard-region'),
    /** Edge location (Workers: request.cf colo or country) → region. */
    edgeRegions: z.record(z.string(), nameSchema).default({}),
    aliases: z.record(z.string(), aliasSchema).default({}),
    healthCheck: z
      .object({
        intervalMs: positiveInt.min(100).default(2000),
        /** Each wait is interval × (1 ± jitter), so checks from many gateways do not line up. */
        jitter: z.number().min(0).max(1).default(0.2),
        timeoutMs: positiveInt.default(1000),
        /** Consecutive failed checks before a node is out, and passed checks before it is back. */
        unhealthyAfter: positiveInt.default(2),
        healthyAfter: positiveInt.default(1),
      })
      .strict()
      .default({ intervalMs: 2000, jitter: 0.2, timeoutMs: 1000, unhealthyAfter: 2, healthyAfter: 1 }),
    /** Passive outlier detection: consecutive failures of real traffic take a node out until a health check passes. */
    outlier: z.object({ consecutiveFailures: positiveInt.default(3) }).strict().default({ consecutiveFailures: 3 }),
    breaker: z
      .object({
        errorThresholdPercentage: z.number().min(1).max(100).default(50),
        volumeThreshold: z.number().int().min(0).default(5),
        resetTimeoutMs: positiveInt.default(10_000),
        rollingWindowMs: positiveInt.default(10_000),
      })
      .strict()
      .default({ errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeoutMs: 10_000, rollingWindowMs: 10_000 }),
    retry: z
      .object({
        /** Tries per request, the first included. */
        maxAttempts: positiveInt.max(10).default(3),
        /** Time a try may take to its response headers (JSON: to the whole body). */
        perTryTimeoutMs: positiveInt.default(60_000),
        backoffBaseMs: z.number().int().min(0).default(25),
        backoffMaxMs: z.number().int().min(0).default(500),
        /** Retries may be at most this share of requests over the window, plus minPerSecond. */
        budgetRatio: z.number().min(0).max(10).default(0.2),
        budgetMinPerSecond: z.number().min(0).default(5),
        budgetWindowSeconds: positiveInt.max(600).default(10),
      })
      .strict()
      .default({ maxAttempts: 3, perTryTimeoutMs: 60_000, backoffBaseMs: 25, backoffMaxMs: 500, budgetRatio: 0.2, budgetMinPerSecond: 5, budgetWindowSeconds: 10 }),
    /** How often names in `dns` node entries are resolved again. */
    discovery: z.object({ intervalMs: positiveInt.min(500).default(5000) }).strict().default({ intervalMs: 5000 }),
    stream: z
      .object({
        /** No event from the backend for this long counts as a failure of the node. */
        stallTimeoutMs: positiveInt.default(15_000),
        /** Continue a broken stream on another node (greedy and seeded streams stay exact). */
        resume: z.boolean().default(true),
        /** Most times one stream may be continued elsewhere. */
        maxResumes: z.number().int().min(0).max(10).default(2),
      })
      .strict()
      .default({ stallTimeoutMs: 15_000, resume: true, maxResumes: 2 }),
  })
  .strict()
  .superRefine((r, ctx) => {
    const regions = new Set<string>()
    const ids = new Set<string>()
    for (const region of r.regions) {
      if (regions.has(region.name)) ctx.addIssue({ code: 'custom', message: `region ${region.name} is declared twice`, path: ['regions'] })
      regions.add(region.name)
      for (const node of region.nodes) {
        if (ids.has(node.id)) ctx.addIssue({ code: 'custom', message: `node id ${node.id} is used twice`, path: ['regions'] })
        ids.add(node.id)
      }
    }
    const known = (name: string, path: (string | number)[]) => {
      if (!regions.has(name)) ctx.addIssue({ code: 'custom', message: `unknown region ${name}`, path })
    }
    r.regions.forEach((region, i) => region.fallback.forEach((f, j) => known(f, ['regions', i, 'fallback', j])))
    if (r.region) known(r.region, ['region'])
    for (const [edge, region] of Object.entries(r.edgeRegions)) known(region, ['edgeRegions', edge])
  })

export type RoutingConfig = z.infer<typeof routingSchema>
export type StaticNode = z.infer<typeof nodeSchema>
export type DiscoveredNodes = z.infer<typeof discoveredNodesSchema>

const CORS_DEFAULTS = { allowedOrigins: [], maxAgeSeconds: 600 }
const corsSchema = z
  .object({
    allowedOrigins: z.array(z.string().regex(/^(\*|https?:\/\/[^/\s]+)$/, 'must be * or an origin such as https://app.example.com (scheme, host and port, no path)')).default(CORS_DEFAULTS.allowedOrigins),
    maxAgeSeconds: z.number().int().min(0).max(86_400).default(CORS_DEFAULTS.maxAgeSeconds),
  })
  .strict()
  .default(CORS_DEFAULTS)

export const gatewayFileSchema = z
  .object({
    /** One backend node for every request (shorthand for a single region with one node). */
    backend: z.object({ url: backendUrl }).strict().optional(),
    /** Regions of backend nodes, failover order, health checks, breakers, retries. */
    routing: routingSchema.optional(),
    auth: z
      .object({
        apiKeys: z.array(apiKeySchema).default([]),
        jwt: jwtSchema.optional(),
        /** Keys verified in the shared store, remembered for store outages (auth/api-keys.ts createKeyLookup). */
        keyCache: z
          .object({
            /** How long a verified key stays usable while the store is unreachable; also the longest a revocation can lag then. 0: off. */
            ttlSeconds: z.number().int().min(0).max(86_400).default(120),
            maxEntries: positiveInt.max(1_000_000).default(10_000),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
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
    metrics: z
      .object({
        /** Distinct key ids with their own requests_total / tokens_total series (first seen); later keys count as `(other)`. 0 = none. Read at start. */
        keyIdLabels: z.number().int().min(0).max(100_000).default(100),
      })
      .strict()
      .default({ keyIdLabels: 100 }),
    cache: z
      .object({ enabled: z.boolean().default(true), ttlSeconds: positiveInt.default(300), maxEntryBytes: positiveInt.default(1 << 20) })
      .strict()
      .default({ enabled: true, ttlSeconds: 300, maxEntryBytes: 1 << 20 }),
    server: z
      .object({
        maxBodyBytes: positiveInt.default(1 << 20),
        /** Characters of prompt text (prompt or all messages) accepted. */
        maxPromptChars: positiveInt.default(200_000),
        /** Characters of output-format text (tools, response_format, guided_*) accepted, as JSON. */
        maxGrammarChars: positiveInt.default(65_536),
        /** Whole-request deadline at the gateway, streams included. */
        requestTimeoutMs: positiveInt.default(300_000),
        maxHeaderBytes: positiveInt.default(16_384),
        /** Time a client has to send its header block, and its whole request (headers and body): 408 and closed after (slowloris). */
        headersTimeoutMs: positiveInt.default(10_000),
        receiveTimeoutMs: positiveInt.default(60_000),
        /** After SIGTERM, longest the gateway waits for requests in flight before closing their connections and exiting. */
        drainTimeoutMs: positiveInt.default(60_000),
        /** Browser clients: origins allowed to call the gateway (`*` for any); none = CORS off. */
        cors: corsSchema,
      })
      .strict()
      .refine((s) => s.headersTimeoutMs <= s.receiveTimeoutMs, { message: 'headersTimeoutMs must not exceed receiveTimeoutMs', path: ['headersTimeoutMs'] })
      .default({ maxBodyBytes: 1 << 20, maxPromptChars: 200_000, maxGrammarChars: 65_536, requestTimeoutMs: 300_000, maxHeaderBytes: 16_384, headersTimeoutMs: 10_000, receiveTimeoutMs: 60_000, drainTimeoutMs: 60_000, cors: CORS_DEFAULTS }),
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
  /** The gateway's own region, for requests that name none (overrides routing.region). */
  GATEWAY_REGION: z.string().regex(/^[\w.-]{1,64}$/).optional(),
  /** Private JWK (JSON file) for signing gateway → backend tokens. */
  BACKEND_SIGNING_KEY_FILE: z.string().optional(),
  HOST: z.string().min(1).default('127.0.0.1'),
  PORT: intFrom(0, 65535, 8080),
  /** Separate plain-HTTP port for /metrics (0 = off; /metrics stays on the main port behind the admin token). */
  METRICS_PORT: intFrom(0, 65535, 0),
  BACKEND_URL: backendUrl.optional(),
  REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').optional(),
  REDIS_SENTINELS: hostPorts.optional(),
  REDIS_SENTINEL_NAME: z.string().default('mymaster'),
  REDIS_CLUSTER_NODES: hostPorts.optional(),
  ADMIN_TOKEN: z.string().min(16, 'must be at least 16 characters').optional(),
  TLS_CERT_FILE: z.string().optional(),
  TLS_KEY_FILE: z.string().optional(),
  ...logSettingsSchema,
})

export type GatewayEnv = z.infer<typeof gatewayEnvSchema>

export interface GatewayConfig extends Omit<GatewayFileConfig, 'routing' | 'backend'> {
  env: GatewayEnv
  /** Always set: `backend.url` / BACKEND_URL become one region `default` with one node `default`. */
  routing: RoutingConfig
}
