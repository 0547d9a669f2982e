import { type GatewayConfig, gatewayEnvSchema, gatewayFileSchema } from './schema.ts'

/** A configuration that cannot be used; the message names each bad key. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

const issues = (error: { issues: { path: PropertyKey[]; message: string }[] }, prefix: string) =>
  error.issues.map((i) => `${prefix}${i.path.map(String).join('.')}: ${i.message}`).join('; ')

/** Validates a parsed config file plus the environment into one GatewayConfig. */
export function parseGatewayConfig(file: unknown, env: Record<string, string | undefined>): GatewayConfig {
  const envPicked = Object.fromEntries(Object.keys(gatewayEnvSchema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]))
  const envResult = gatewayEnvSchema.safeParse(envPicked)
  if (!envResult.success) throw new ConfigError(issues(envResult.error, ''))
  const fileResult = gatewayFileSchema.safeParse(file ?? {})
  if (!fileResult.success) throw new ConfigError(issues(fileResult.error, 'config '))
  const parsed = fileResult.data
  const backendUrl = envResult.data.BACKEND_URL ?? parsed.backend?.url
  if (!backendUrl) throw new ConfigError('no backend: set BACKEND_URL or backend.url in the config file')
  if (Boolean(envResult.data.TLS_CERT_FILE) !== Boolean(envResult.data.TLS_KEY_FILE)) throw new ConfigError('TLS_CERT_FILE and TLS_KEY_FILE go together')
  return { ...parsed, backend: { url: backendUrl.replace(/\/+$/, '') }, env: envResult.data }
}
