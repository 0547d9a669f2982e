import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Asks the OS for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

export interface RedisServer {
  port: number
  url: string
  child: ChildProcess
  /** SIGTERM and wait for exit. */
  stop(): Promise<void>
  /** Starts a fresh server on the same port (after stop), e.g. to test recovery. */
  restart(): Promise<void>
}

/** Starts a private redis-server (no persistence) on a free port; args are extra flags. */
export async function startRedis(args: string[] = [], fixedPort?: number): Promise<RedisServer> {
  let port = fixedPort ?? (await freePort())
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-redis-'))
  let child!: ChildProcess
  const launch = async () => {
    child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let output = ''
    child.stdout!.on('data', (d) => (output += d))
    const deadline = Date.now() + 10_000
    while (!output.includes('Ready to accept connections')) {
      if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`)
      if (Date.now() > deadline) throw new Error(`redis-server not ready: ${output}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
  // Test files run in parallel: another may take the free port before redis binds it. Then take another.
  for (let tries = 1; ; tries++) {
    try {
      await launch()
      break
    } catch (error) {
      if (fixedPort !== undefined || tries === 3 || !/Address already in use/.test(String(error))) throw error
      port = await freePort()
    }
  }
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get child() {
      return child
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        await once(child, 'exit')
      }
    },
    async restart() {
      await server.stop()
      await launch()
    },
  }
  process.once('exit', () => {
    child.kill('SIGKILL')
    rmSync(dir, { recursive: true, force: true })
  })
  return server
}
