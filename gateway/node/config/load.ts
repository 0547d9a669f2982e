import { readFileSync } from 'node:fs'
import { errorMessage } from '../../../lib/error-message.ts'
import { ConfigError, parseGatewayConfig } from '../../config/parse.ts'
import type { GatewayConfig } from '../../config/schema.ts'

// Node only: reads the config file. The Workers entry passes its config object to parseGatewayConfig.
/** Reads GATEWAY_CONFIG (if set) and the environment (Node entry). */
export function loadGatewayConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  let file: unknown = {}
  if (env.GATEWAY_CONFIG) {
    let text: string
    try {
      text = readFileSync(env.GATEWAY_CONFIG, 'utf8')
    } catch (error) {
      throw new ConfigError(`GATEWAY_CONFIG ${env.GATEWAY_CONFIG}: ${errorMessage(error)}`)
    }
    try {
      file = JSON.parse(text)
    } catch (error) {
      throw new ConfigError(`GATEWAY_CONFIG ${env.GATEWAY_CONFIG}: not valid JSON (${errorMessage(error)})`)
    }
  }
  return parseGatewayConfig(file, env)
}
