/** Shared by the store and limit tests: recording hooks, polling, and a private Sentinel. */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { RedisClient, StoreHooks } from '../../../../gateway/node/stores/redis-client.ts'
import { freePort } from '../../../helpers/redis-server.ts'

export type LogEntry = { level: 'info' | 'warn' | 'error'; fields: Record<string, unknown>; message: string }

/** A logger and the store metrics, recording every call. */
export function recordingHooks() {
  const logs: LogEntry[] = []
  const storeErrors: string[] = []
  const storeUp: boolean[] = []
  const hooks: StoreHooks = {
    logger: {
      info: (fields, message) => logs.push({ level: 'info', fields, message }),
      warn: (fields, message) => logs.push({ level: 'warn', fields, message }),
      error: (fields, message) => logs.push({ level: 'error', fields, message }),
    },
    metrics: {
      storeError: (_store, operation) => storeErrors.push(operation),
      storeUp: (up) => storeUp.push(up),
    },
  }
  const count = (text: string) => logs.filter((l) => l.message.includes(text)).length
  return { hooks, logs, storeErrors, storeUp, count }
}

/** Polls until `check` is true; generous deadline for a loaded machine. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 25))
  }
}

export const untilReady = (redis: RedisClient) => waitFor(() => redis.status === 'ready', 'redis client ready')

/** Measures how long a promise takes to settle. */
export async function timed<T>(run: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now()
  const value = await run()
  return { value, ms: performance.now() - start }
}

export interface SentinelProcess {
  port: number
  /** What the sentinel printed so far, for failure messages. */
  output(): string
  stop(): Promise<void>
}

/** `redis-server --sentinel` on a free port, monitoring 127.0.0.1:masterPort as `name` (quorum 1). */
export async function startSentinel(masterPort: number, name = 'mymaster'): Promise<SentinelProcess> {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-sentinel-'))
  const conf = join(dir, 'sentinel.conf')
  // Sentinel rewrites its config file, so it lives in a private writable directory.
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`,
      `sentinel down-after-milliseconds ${name} 500`,
      `sentinel failover-timeout ${name} 5000`,
      '',
    ].join('\n'),
  )
  const child: ChildProcess = spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout!.on('data', (d) => (output += d))
  child.stderr!.on('data', (d) => (output += d))
  const cleanup = () => rmSync(dir, { recursive: true, force: true })
  process.once('exit', () => {
    child.kill('SIGKILL')
    cleanup()
  })
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`sentinel exited: ${output}`)
    return output.includes('+monitor master')
  }, `sentinel ready (${output})`)
  return {
    port,
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        await once(child, 'exit')
      }
      cleanup()
    },
  }
}
