import { type GatewayConfig, gatewayEnvSchema, gatewayFileSchema, routingSchema } from './schema.ts'

/** A configuration that cannot be used; the message names each bad key. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

const issues = (error: { issues: { path: PropertyKey[]; message: string }[] }, prefix: string) =>
  error.issues.map((i) => `${prefix}${i.path.map(String).join('.')}: ${i.message}`).join('; ')

/** Validates a parsed config file plus the environment into one GatewayConfig. */
export function parseGatewayConfig(file: unknown, env: Record<string, string | undefined>): GatewayConfig {
  const envPicked = Object.fromEntries(
    Object.keys(gatewayEnvSchema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]),
  )
  const envResult = gatewayEnvSchema.safeParse(envPicked)
  if (!envResult.success) throw new ConfigError(issues(envResult.error, ''))
  const fileResult = gatewayFileSchema.safeParse(file ?? {})
  if (!fileResult.success) throw new ConfigError(issues(fileResult.error, 'config '))
  const { backend, routing, ...parsed } = fileResult.data
  const settings = envResult.data
  if (Boolean(settings.TLS_CERT_FILE) !== Boolean(settings.TLS_KEY_FILE))
    throw new ConfigError('TLS_CERT_FILE and TLS_KEY_FILE go together')
  const backendUrl = settings.BACKEND_URL ?? backend?.url
  if (routing && backendUrl)
    throw new ConfigError('give either routing.regions or a single backend (backend.url / BACKEND_URL), not both')
  let resolved = routing
  if (!resolved) {
    if (!backendUrl)
      throw new ConfigError('no backend: set BACKEND_URL, backend.url or routing.regions in the config file')
    const single = routingSchema.safeParse({
      regions: [{ name: 'default', nodes: [{ id: 'default', url: backendUrl }] }],
    })
    if (!single.success) throw new ConfigError(issues(single.error, 'backend '))
    resolved = single.data
  }
  if (settings.GATEWAY_REGION && !resolved.regions.some((r) => r.name === settings.GATEWAY_REGION))
    throw new ConfigError(`GATEWAY_REGION: unknown region ${settings.GATEWAY_REGION}`)
  const regions = resolved.regions.map((r) => ({
    ...r,
    nodes: r.nodes.map((n) => ('url' in n ? { ...n, url: n.url.replace(/\/+$/, '') } : n)),
  }))
  return {
    ...parsed,
    routing: { ...resolved, regions, region: settings.GATEWAY_REGION ?? resolved.region ?? regions[0].name },
    env: settings,
  }
}
