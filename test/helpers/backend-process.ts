import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { spawnEntry } from './node-process.ts'
import { STORIES_DIR } from './paths.ts'

export interface BackendProcess {
  url: string
  port: number
  child: ChildProcess
  /** Everything the process wrote so far. */
  output: () => string
  /** SIGTERM (or the given signal) and wait for the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

/** Starts a real backend node (`backend/node.ts`) on a free port and waits for /ready. */
export async function startBackend(
  env: Record<string, string> = {},
  options: { waitReady?: boolean; timeoutMs?: number } = {},
): Promise<BackendProcess> {
  const {
    child,
    output: outputOf,
    stop,
  } = spawnEntry('backend/node.ts', {
    MODEL_DIR: STORIES_DIR,
    HOST: '127.0.0.1',
    PORT: '0',
    DEVICE: 'cpu',
    CPU_THREADS: '1',
    LOG_LEVEL: 'info',
    ...env,
  })
  const deadline = Date.now() + (options.timeoutMs ?? 30_000)
  let port = 0
  while (!port) {
    const match = /"port":(\d+)/.exec(outputOf())
    if (match) port = Number(match[1])
    else if (child.exitCode !== null)
      throw new Error(`backend exited with ${child.exitCode} before listening:\n${outputOf()}`)
    else if (Date.now() > deadline) {
      await stop('SIGKILL')
      throw new Error(`backend did not listen in time:\n${outputOf()}`)
    } else await new Promise((r) => setTimeout(r, 25))
  }
  const url = `http://127.0.0.1:${port}`
  if (options.waitReady ?? true) {
    while (true) {
      const ok = await fetch(`${url}/ready`).then(
        (r) => r.ok,
        () => false,
      )
      if (ok) break
      if (child.exitCode !== null) throw new Error(`backend exited with ${child.exitCode}:\n${outputOf()}`)
      if (Date.now() > deadline) {
        await stop('SIGKILL')
        throw new Error(`backend not ready in time:\n${outputOf()}`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
  }
  return { url, port, child, output: outputOf, stop }
}

/** Runs the backend entry to completion (for start-up failures); resolves with code and output. */
export async function runBackendToExit(
  env: Record<string, string>,
  timeoutMs = 30_000,
): Promise<{ code: number | null; output: string }> {
  const backend = await startBackend(env, { waitReady: false, timeoutMs }).catch((error: Error) => ({ error }))
  if ('error' in backend) {
    const match = /backend exited with (\S+) before listening:\n([\s\S]*)$/.exec(backend.error.message)
    if (match) return { code: match[1] === 'null' ? null : Number(match[1]), output: match[2] }
    throw backend.error
  }
  // It may have exited already (a load error right after listening): 'exit' would not come again.
  const { child } = backend
  const code =
    child.exitCode !== null || child.signalCode !== null
      ? child.exitCode
      : await once(child, 'exit').then(([c]) => c as number | null)
  return { code, output: backend.output() }
}

export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

/** Reads an SSE response into its `data:` payloads (JSON-parsed, except `[DONE]`). */
export async function readSse(response: Response): Promise<unknown[]> {
  const text = await response.text()
  return text
    .split('\n\n')
    .map((block) =>
      block
        .split('\n')
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).trimStart())
        .join('\n'),
    )
    .filter((data) => data.length > 0)
    .map((data) => (data === '[DONE]' ? data : JSON.parse(data)))
}
