import { errorMessage } from '../../lib/error-message.ts'
import { ListenError } from '../../lib/listen-error.ts'
import { ConfigError } from '../config/parse.ts'
import type { GatewayConfig } from '../config/schema.ts'
import { loadGatewayConfig } from './config/load.ts'
import { startNodeGateway } from './server.ts'

// Node entry: configuration from GATEWAY_CONFIG and the environment, then serve until a signal.
let config: GatewayConfig
try {
  config = loadGatewayConfig()
} catch (error) {
  console.error(`switchyard gateway: invalid configuration: ${errorMessage(error)}`)
  process.exit(error instanceof ConfigError ? 2 : 1)
}
const gateway = await startNodeGateway(config).catch((error: unknown) => {
  if (!(error instanceof ListenError)) throw error
  console.error(`switchyard gateway: ${error.message}`)
  process.exit(2)
})
const stop = async () => {
  await gateway.close()
  process.exit(0)
}
process.on('SIGTERM', () => void stop())
process.on('SIGINT', () => void stop())
