import { z } from 'zod'
import { logSettingsSchema } from '../../lib/log-settings.ts'

/**
 * The gateway's configuration: one typed, validated object built from the config file
 * (GATEWAY_CONFIG, JSON) and environment variables for addresses and secrets. Every key has a
 * default and a description (`.describe()`, or `.meta({ description, docDefault })` where the
 * default is not a value); `npm run docs:config` writes them into docs/configuration.md.
 * Nested objects use `.prefault({})` so their fields' own defaults apply and each is written once.
 */
const positiveInt = z.number().int().positive()
/** A backend's address: a bare `localhost:8000` would parse as a URL of scheme "localhost:" and fail only later. */
const backendUrl = z.url({
  protocol: /^https?$/,
  error: 'must be an http:// or https:// URL, e.g. http://127.0.0.1:8000',
})

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
    algorithms: z
      .array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
      .min(1),
    issuer: z.union([z.string(), z.array(z.string())]).optional(),
    audience: z.union([z.string(), z.array(z.string())]).optional(),
    /** Leeway for exp, nbf and iat between the issuer's clock and ours. */
    clockToleranceSeconds: z.number().int().min(0).max(300).default(5),
    /** Longest validity accepted (exp − iat, and exp − now): longer-lived tokens are refused. */
    maxLifetimeSeconds: positiveInt.max(31_536_000).default(86_400),
    claims: z
      .object({ tenant: z.string().default('tenant'), models: z.string().optional(), limits: z.string().optional() })
      .strict()
      .prefault({}),
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
    regions: z
      .array(regionSchema)
      .min(1)
      .describe(
        '`{name, fallback: [], nodes: [...]}`; a node is `{id, url, weight: 1, models?}`, or `{id, dns, port, scheme: "http", weight: 1, models?}`: one node per address the name resolves to (Node entry; e.g. the pods of a Kubernetes headless Service), ids `<id>-<address>`',
      ),
    /** The gateway's own region (GATEWAY_REGION overrides); default the first region. */
    region: nameSchema.optional().meta({ description: "the gateway's own region", docDefault: 'first region' }),
    regionHeader: z
      .string()
      .regex(/^[a-z0-9-]+$/)
      .default('x-switchyard-region')
      .describe('header a client names a region with'),
    edgeRegions: z
      .record(z.string(), nameSchema)
      .default({})
      .describe('edge location (Workers `request.cf` colo or country) → region'),
    aliases: z
      .record(z.string(), aliasSchema)
      .default({})
      .describe('`{name: {versions: [{model, weight}], sticky: false}}`'),
    healthCheck: z
      .object({
        intervalMs: positiveInt.min(100).default(2000).describe("time between checks of a node's `/ready`"),
        jitter: z
          .number()
          .min(0)
          .max(1)
          .default(0.2)
          .describe('each wait is interval × (1 ± jitter), so checks from many gateways do not line up'),
        timeoutMs: positiveInt.default(1000).describe('time a check may take'),
        unhealthyAfter: positiveInt.default(2).describe('consecutive failed checks before a node is out'),
        healthyAfter: positiveInt.default(1).describe('consecutive passed checks before it is back'),
      })
      .strict()
      .prefault({})
      .describe('active checks of `/ready`'),
    /** Passive outlier detection: consecutive failures of real traffic take a node out until a health check passes. */
    outlier: z
      .object({
        consecutiveFailures: positiveInt
          .default(3)
          .describe('failed tries in a row that eject a node until a check passes'),
      })
      .strict()
      .prefault({}),
    breaker: z
      .object({
        errorThresholdPercentage: z
          .number()
          .min(1)
          .max(100)
          .default(50)
          .describe('it opens when more than this percentage of tries failed in the rolling window'),
        volumeThreshold: z.number().int().min(0).default(5).describe('least tries in the window before it may open'),
        resetTimeoutMs: positiveInt.default(10_000).describe('time open before it lets one trial through (half-open)'),
        rollingWindowMs: positiveInt.default(10_000).describe('window the failures are counted in'),
      })
      .strict()
      .prefault({})
      .describe('per-node circuit breaker'),
    retry: z
      .object({
        maxAttempts: positiveInt.max(10).default(3).describe('tries per request, the first included'),
        perTryTimeoutMs: positiveInt
          .default(60_000)
          .describe('time a try may take to its response headers (JSON: to the whole body)'),
        backoffBaseMs: z.number().int().min(0).default(25).describe('exponential backoff with full jitter: first step'),
        backoffMaxMs: z.number().int().min(0).default(500).describe('exponential backoff: largest step'),
        budgetRatio: z
          .number()
          .min(0)
          .max(10)
          .default(0.2)
          .describe(
            'retries may be at most this share of requests over the window, plus `budgetMinPerSecond` × window',
          ),
        budgetMinPerSecond: z.number().min(0).default(5).describe('retries per second always allowed by the budget'),
        budgetWindowSeconds: positiveInt.max(600).default(10).describe('window of the retry budget'),
      })
      .strict()
      .prefault({})
      .describe('retries and the retry budget'),
    discovery: z
      .object({
        intervalMs: positiveInt
          .min(500)
          .default(5000)
          .describe('how often `dns` node entries are resolved again (a failed lookup keeps the last addresses)'),
      })
      .strict()
      .prefault({}),
    stream: z
      .object({
        stallTimeoutMs: positiveInt
          .default(15_000)
          .describe('no event from the backend for this long counts as a failure of the node'),
        resume: z
          .boolean()
          .default(true)
          .describe('continue a broken stream on another node (greedy and seeded streams stay exact)'),
        maxResumes: z
          .number()
          .int()
          .min(0)
          .max(10)
          .default(2)
          .describe('most times one stream may be continued elsewhere'),
      })
      .strict()
      .prefault({})
      .describe('mid-stream failover'),
  })
  .strict()
  .superRefine((r, ctx) => {
    const regions = new Set<string>()
    const ids = new Set<string>()
    for (const region of r.regions) {
      if (regions.has(region.name))
        ctx.addIssue({ code: 'custom', message: `region ${region.name} is declared twice`, path: ['regions'] })
      regions.add(region.name)
      for (const node of region.nodes) {
        if (ids.has(node.id))
          ctx.addIssue({ code: 'custom', message: `node id ${node.id} is used twice`, path: ['regions'] })
        ids.add(node.id)
      }
    }
    const known = (name: string, path: (string | number)[]) => {
      if (!regions.has(name)) ctx.addIssue({ code: 'custom', message: `unknown region ${name}`, path })
    }
    r.regions.forEach((region, i) => {
      region.fallback.forEach((f, j) => {
        known(f, ['regions', i, 'fallback', j])
      })
    })
    if (r.region) known(r.region, ['region'])
    for (const [edge, region] of Object.entries(r.edgeRegions)) known(region, ['edgeRegions', edge])
  })

export type RoutingConfig = z.infer<typeof routingSchema>
export type StaticNode = z.infer<typeof nodeSchema>
export type DiscoveredNodes = z.infer<typeof discoveredNodesSchema>

const corsSchema = z
  .object({
    allowedOrigins: z
      .array(
        z
          .string()
          .regex(
            /^(\*|https?:\/\/[^/\s]+)$/,
            'must be * or an origin such as https://app.example.com (scheme, host and port, no path)',
          ),
      )
      .default([])
      .meta({
        description:
          'origins browser pages may call the gateway from (`https://app.example.com`, or `*`); see [CORS](operations.md#cors)',
        docDefault: '`[]` (CORS off)',
      }),
    maxAgeSeconds: z
      .number()
      .int()
      .min(0)
      .max(86_400)
      .default(600)
      .describe('how long a browser may reuse a preflight answer'),
  })
  .strict()
  .prefault({})

export const gatewayFileSchema = z
  .object({
    /** One backend node for every request (shorthand for a single region with one node). */
    backend: z
      .object({ url: backendUrl.describe('one backend node URL (or `BACKEND_URL`); give this or `routing`, not both') })
      .strict()
      .optional(),
    /** Regions of backend nodes, failover order, health checks, breakers, retries. */
    routing: routingSchema.optional(),
    auth: z
      .object({
        apiKeys: z
          .array(apiKeySchema)
          .default([])
          .describe('`{id, hash, tenant, models?, limits?}`; `hash` is the hex SHA-256 of the key'),
        jwt: jwtSchema.optional().meta({
          description:
            '`{jwksUrl` or `keys, algorithms, issuer?, audience?, clockToleranceSeconds: 5, maxLifetimeSeconds: 86400, claims: {tenant: "tenant", models?, limits?}}`',
          docDefault: 'off',
        }),
        /** Keys verified in the shared store, remembered for store outages (auth/api-keys.ts createKeyLookup). */
        keyCache: z
          .object({
            /** How long a verified key stays usable while the store is unreachable; also the longest a revocation can lag then. 0: off. */
            ttlSeconds: z
              .number()
              .int()
              .min(0)
              .max(86_400)
              .default(120)
              .describe(
                'admin-API keys verified in Redis stay usable for this long after their last check while Redis is unreachable (0 = off); also the longest a revocation can lag then',
              ),
            maxEntries: positiveInt.max(1_000_000).default(10_000).describe('most keys and revocations remembered'),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        /** Limits for keys and tokens that set none of their own. */
        // A default, not a prefault: limitsSchema's fields have none of their own (a key's unset limit falls back to these).
        defaults: limitsSchema
          .default({ requestsPerWindow: 600, requestWindowSeconds: 60, tokensPerMinute: 200_000, maxConcurrent: 64 })
          .meta({
            description: 'limits for keys and tokens that set none',
            docDefault: '600 requests / 60 s, 200,000 tokens/min, 64 concurrent',
          }),
        /** Per client IP, for routes without authentication. */
        perIp: z
          .object({ requestsPerWindow: positiveInt, requestWindowSeconds: positiveInt })
          .strict()
          .default({ requestsPerWindow: 1200, requestWindowSeconds: 60 })
          .meta({
            description: 'per client IP, for requests that fail authentication',
            docDefault: '1,200 requests / 60 s',
          }),
        trustedProxies: z.array(z.string()).default([]).describe('peers whose `X-Forwarded-For` is believed'),
        defaultMaxTokens: positiveInt
          .default(512)
          .describe(
            "tokens reserved for a chat request without `max_tokens` while the model's context window is not yet known (the request itself is forwarded without one)",
          ),
      })
      .strict()
      .prefault({}),
    metrics: z
      .object({
        keyIdLabels: z
          .number()
          .int()
          .min(0)
          .max(100_000)
          .default(100)
          .describe(
            'distinct key ids with their own `requests_total` / `tokens_total` series per process (first seen); later keys count as `(other)`; 0 = none',
          ),
      })
      .strict()
      .prefault({}),
    cache: z
      .object({
        enabled: z.boolean().default(true).describe('response cache on or off'),
        ttlSeconds: positiveInt.default(300).describe('how long a cached answer is kept'),
        maxEntryBytes: positiveInt.default(1 << 20).meta({ description: 'largest answer stored', docDefault: '1 MiB' }),
      })
      .strict()
      .prefault({}),
    server: z
      .object({
        maxBodyBytes: positiveInt.default(1 << 20).meta({ description: '413 beyond', docDefault: '1 MiB' }),
        /** Characters of prompt text (prompt or all messages) accepted. */
        maxPromptChars: positiveInt.default(200_000).describe('400 `prompt_too_large` beyond'),
        maxGrammarChars: positiveInt
          .default(65_536)
          .describe(
            'characters of `tools`, `response_format` and `guided_*` (as JSON) accepted; 400 `grammar_too_large` beyond. That text also counts toward the token reservation, as tools are rendered into the prompt',
          ),
        requestTimeoutMs: positiveInt
          .default(300_000)
          .describe('deadline for the whole request, retries and streams included'),
        maxHeaderBytes: positiveInt.default(16_384).describe('largest request header block'),
        /** Slowloris: a client that sends its request too slowly is cut off. */
        headersTimeoutMs: positiveInt
          .default(10_000)
          .describe('time a client has to send its header block (then 408 and closed; HTTP/1.1, read at start)'),
        receiveTimeoutMs: positiveInt
          .default(60_000)
          .describe(
            'time a client has to send its whole request, headers and body (then 408 and closed; HTTP/1.1, read at start; responses and streams are not limited by it)',
          ),
        drainTimeoutMs: positiveInt
          .default(60_000)
          .describe(
            'after SIGTERM, longest the gateway waits for requests in flight; connections still busy then are closed (logged with their count) and it exits 0 (read at start)',
          ),
        /** Browser clients: origins allowed to call the gateway (`*` for any); none = CORS off. */
        cors: corsSchema,
      })
      .strict()
      .refine((s) => s.headersTimeoutMs <= s.receiveTimeoutMs, {
        message: 'headersTimeoutMs must not exceed receiveTimeoutMs',
        path: ['headersTimeoutMs'],
      })
      .prefault({}),
  })
  .strict()

export type GatewayFileConfig = z.infer<typeof gatewayFileSchema>

const intFrom = (min: number, max: number, fallback: number) =>
  z.coerce.number().int().min(min).max(max).default(fallback)
const hostPorts = z.string().transform((s, ctx) =>
  s.split(',').map((part) => {
    const m = /^\s*([^:\s]+):(\d+)\s*$/.exec(part)
    if (!m) ctx.addIssue({ code: 'custom', message: `"${part}" is not host:port` })
    return { host: m?.[1] ?? '', port: Number(m?.[2] ?? 0) }
  }),
)

export const gatewayEnvSchema = z.object({
  GATEWAY_CONFIG: z.string().optional().describe('path of the JSON config file (all keys below have defaults)'),
  /** Overrides routing.region. */
  GATEWAY_REGION: z
    .string()
    .regex(/^[\w.-]{1,64}$/)
    .optional()
    .meta({ description: "the gateway's own region, for requests that name none", docDefault: '`routing.region`' }),
  BACKEND_SIGNING_KEY_FILE: z
    .string()
    .optional()
    .describe(
      'private JWK that signs gateway → backend tokens (see [Gateway → backend authentication](operations.md#gateway--backend-authentication)); without it requests to backends carry no token',
    ),
  HOST: z.string().min(1).default('127.0.0.1').describe('address to listen on'),
  PORT: intFrom(0, 65535, 8080).describe('port (`0` picks a free one)'),
  /** /metrics stays on the main port behind the admin token as well. */
  METRICS_PORT: intFrom(0, 65535, 0).describe(
    'a second, plain-HTTP port serving only `/metrics` without a token (0 = off)',
  ),
  BACKEND_URL: backendUrl
    .optional()
    .meta({ description: 'one backend node for every request (instead of `routing`)', docDefault: '`backend.url`' }),
  REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must start with redis:// or rediss://')
    .optional()
    .describe(
      '`redis://` or `rediss://`; without any Redis setting, stores are in memory (one instance only, said in the start log)',
    ),
  REDIS_SENTINELS: hostPorts.optional().describe('`host:port,host:port` of Redis Sentinels'),
  REDIS_SENTINEL_NAME: z.string().default('mymaster').describe('the Sentinel master name'),
  REDIS_CLUSTER_NODES: hostPorts.optional().describe('`host:port,…` of Redis Cluster nodes'),
  ADMIN_TOKEN: z
    .string()
    .min(16, 'must be at least 16 characters')
    .optional()
    .describe('bearer token for `/admin/*` and `/metrics` (at least 16 characters; under 24 the start log warns once)'),
  TLS_CERT_FILE: z.string().optional().describe('PEM certificate: serve HTTPS (with `TLS_KEY_FILE`)'),
  TLS_KEY_FILE: z.string().optional().describe('PEM key: serve HTTPS (with `TLS_CERT_FILE`)'),
  ...logSettingsSchema,
  LOG_LEVEL: logSettingsSchema.LOG_LEVEL.describe('pino level'),
  LOG_FORMAT: logSettingsSchema.LOG_FORMAT.describe(
    '`pretty` (readable lines), `json` (one JSON object per line), or `auto`: pretty when stdout is a terminal, JSON otherwise',
  ),
})

export type GatewayEnv = z.infer<typeof gatewayEnvSchema>

export interface GatewayConfig extends Omit<GatewayFileConfig, 'routing' | 'backend'> {
  env: GatewayEnv
  /** Always set: `backend.url` / BACKEND_URL become one region `default` with one node `default`. */
  routing: RoutingConfig
}
