import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnEntry } from './node-process.ts'

export interface GatewayProcess {
  url: string
  port: number
  child: ChildProcess
  output: () => string
  /** The config file it was started with (rewrite it to test reloads). */
  configPath: string
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

export const ADMIN_TOKEN = 'test-admin-token-0123456789'

/** Starts a real gateway process (`gateway/node/index.ts`) with a config file, on a free port. */
export async function startGateway(config: object, env: Record<string, string> = {}): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-gateway-'))
  const configPath = join(dir, 'gateway.json')
  writeFileSync(configPath, JSON.stringify(config))
  const { child, output, stop } = spawnEntry('gateway/node/index.ts', {
    GATEWAY_CONFIG: configPath,
    HOST: '127.0.0.1',
    PORT: '0',
    ADMIN_TOKEN,
    LOG_LEVEL: 'info',
    ...env,
  })
  const deadline = Date.now() + 20_000
  while (true) {
    const match = /"port":(\d+).*"gateway listening"/.exec(output())
    if (match) {
      const port = Number(match[1])
      const scheme = env.TLS_CERT_FILE ? 'https' : 'http'
      return { url: `${scheme}://127.0.0.1:${port}`, port, child, output, stop, configPath }
    }
    if (child.exitCode !== null) throw new Error(`gateway exited with ${child.exitCode}:\n${output()}`)
    if (Date.now() > deadline) {
      await stop('SIGKILL')
      throw new Error(`gateway did not start:\n${output()}`)
    }
    await new Promise((r) => setTimeout(r, 25))
  }
}
