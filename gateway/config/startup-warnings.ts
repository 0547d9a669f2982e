import type { GatewayConfig } from './schema.ts'

/** Admin tokens shorter than this are accepted (the schema's minimum is 16) but warned about. */
export const RECOMMENDED_ADMIN_TOKEN_LENGTH = 24

/**
 * What a configuration that starts will still get wrong, said once at start-up: an operator
 * who reads the start log should not have to learn it from clients' 401s.
 */
export function startupWarnings(config: GatewayConfig): string[] {
  const warnings: string[] = []
  const adminToken = config.env.ADMIN_TOKEN
  if (config.auth.apiKeys.length === 0 && !config.auth.jwt && !adminToken) {
    warnings.push(
      'no authentication is configured (no auth.apiKeys, auth.jwt or ADMIN_TOKEN to create keys with): every API request will be answered 401',
    )
  }
  if (adminToken && adminToken.length < RECOMMENDED_ADMIN_TOKEN_LENGTH) {
    warnings.push(
      `ADMIN_TOKEN is shorter than ${RECOMMENDED_ADMIN_TOKEN_LENGTH} characters; use a longer random one (e.g. openssl rand -base64 32)`,
    )
  }
  return warnings
}
