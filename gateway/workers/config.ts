import { errorMessage } from '../../lib/error-message.ts'
import { ConfigError, parseGatewayConfig } from '../config/parse.ts'
import type { GatewayConfig } from '../config/schema.ts'
import { type BackendSigningJwk, parsePrivateJwk } from '../proxy/backend-token.ts'
import type { ApiKeyIndexRpc, ApiKeyRpc } from './key-store.ts'
import type { RateLimiterRpc } from './rate-limits.ts'
import type { AnalyticsEngineDataset, DurableObjectNamespace, KVNamespace } from './runtime.ts'

/** The Worker's bindings (wrangler.toml), vars and secrets. */
export interface WorkerEnv {
  /** The JSON config, the same schema as the Node gateway's GATEWAY_CONFIG file (a var; at most 5 KB). */
  GATEWAY_CONFIG_JSON?: string
  /** Secret: the private JWK (JSON) that signs gateway → backend tokens. */
  BACKEND_SIGNING_KEY?: string
  RATE_LIMITER: DurableObjectNamespace<RateLimiterRpc>
  API_KEY_INDEX: DurableObjectNamespace<ApiKeyIndexRpc>
  API_KEYS: DurableObjectNamespace<ApiKeyRpc>
  /** Optional: without it the response cache lives in each isolate's memory. */
  RESPONSE_CACHE?: KVNamespace
  /** Optional: Workers Analytics Engine dataset for metrics. */
  METRICS?: AnalyticsEngineDataset
  /** ADMIN_TOKEN (secret), GATEWAY_REGION, BACKEND_URL, LOG_LEVEL as in the Node gateway. */
  [name: string]: unknown
}

/** Node settings with no meaning in a Worker: refused, so nobody believes they apply. */
const NODE_ONLY: Record<string, string> = {
  GATEWAY_CONFIG: 'put the JSON itself in GATEWAY_CONFIG_JSON',
  BACKEND_SIGNING_KEY_FILE: 'put the JWK itself in the BACKEND_SIGNING_KEY secret',
  REDIS_URL: 'limits and keys use Durable Objects, the cache KV',
  REDIS_SENTINELS: 'limits and keys use Durable Objects, the cache KV',
  REDIS_CLUSTER_NODES: 'limits and keys use Durable Objects, the cache KV',
  TLS_CERT_FILE: 'Cloudflare terminates TLS',
  TLS_KEY_FILE: 'Cloudflare terminates TLS',
  METRICS_PORT: 'metrics go to Analytics Engine (the METRICS binding)',
}

export interface WorkerSettings {
  config: GatewayConfig
  signingKey?: BackendSigningJwk
}

/**
 * Validates the Worker's config, vars and secrets; throws a ConfigError naming what is wrong.
 * Synchronous, so the first requests of an isolate never wait on each other's promises.
 */
export function readWorkerSettings(env: WorkerEnv): WorkerSettings {
  const vars = Object.fromEntries(
    Object.entries(env).filter((entry): entry is [string, string] => typeof entry[1] === 'string'),
  )
  for (const [name, instead] of Object.entries(NODE_ONLY))
    if (vars[name]) throw new ConfigError(`${name} is not used by the Workers gateway: ${instead}`)
  for (const name of ['RATE_LIMITER', 'API_KEY_INDEX', 'API_KEYS'] as const)
    if (!env[name]) throw new ConfigError(`the ${name} Durable Object binding is missing (see wrangler.toml)`)

  let file: unknown = {}
  if (vars.GATEWAY_CONFIG_JSON) {
    try {
      file = JSON.parse(vars.GATEWAY_CONFIG_JSON)
    } catch (error) {
      throw new ConfigError(`GATEWAY_CONFIG_JSON: not valid JSON (${errorMessage(error)})`)
    }
  }
  const config = parseGatewayConfig(file, vars)
  for (const region of config.routing.regions) {
    if (region.nodes.some((n) => 'dns' in n))
      throw new ConfigError(
        `routing region ${region.name}: nodes found by DNS need the Node gateway; list the nodes by url`,
      )
  }
  return { config, signingKey: vars.BACKEND_SIGNING_KEY ? signingKey(vars.BACKEND_SIGNING_KEY) : undefined }
}

function signingKey(text: string): BackendSigningJwk {
  try {
    return parsePrivateJwk(JSON.parse(text))
  } catch (error) {
    throw new ConfigError(
      `BACKEND_SIGNING_KEY: ${error instanceof SyntaxError ? 'not valid JSON' : errorMessage(error)}`,
    )
  }
}
