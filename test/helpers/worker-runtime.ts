/**
 * The Workers build under test: bundled by wrangler exactly as `wrangler deploy` would upload
 * it, and run on workerd through Miniflare with the bindings wrangler.toml declares.
 */
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import type { Readable } from 'node:stream'
import { promisify } from 'node:util'
import { gzipSync } from 'node:zlib'
import { Miniflare } from 'miniflare'
import { unstable_getMiniflareWorkerOptions } from 'wrangler'
import { errorMessage } from '../../lib/error-message.ts'
import { ADMIN_TOKEN } from './gateway-process.ts'
import { REPO_ROOT } from './paths.ts'

const WRANGLER = resolve(REPO_ROOT, 'node_modules/wrangler/bin/wrangler.js')
/** No account, no telemetry, no network: the build must work offline. */
const OFFLINE = {
  WRANGLER_SEND_METRICS: 'false',
  CLOUDFLARE_CF_FETCH_ENABLED: 'false',
  WRANGLER_SEND_ERROR_REPORTS: 'false',
}

export interface WorkerBuild {
  scriptPath: string
  bytes: number
  gzipBytes: number
  /** What wrangler printed (bindings, its own size figures). */
  output: string
  /** Deletes the bundle's directory. */
  remove(): void
}

/** `wrangler deploy --dry-run --outdir <tmp>`: the bundle a deploy would upload. */
export async function buildWorker(): Promise<WorkerBuild> {
  const outdir = mkdtempSync(join(tmpdir(), 'switchyard-worker-'))
  const { stdout, stderr } = await promisify(execFile)(
    process.execPath,
    [WRANGLER, 'deploy', '--dry-run', '--outdir', outdir],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...OFFLINE, WRANGLER_LOG_PATH: join(outdir, 'logs') },
    },
  )
  // wrangler names the bundle after the entry (gateway/workers/index.ts).
  const scriptPath = join(outdir, 'index.js')
  const code = readFileSync(scriptPath)
  return {
    scriptPath,
    bytes: code.byteLength,
    gzipBytes: gzipSync(code).byteLength,
    output: stdout + stderr,
    remove: () => rmSync(outdir, { recursive: true, force: true }),
  }
}

export interface RunningWorker {
  /** Base URL, e.g. http://127.0.0.1:PORT */
  url: string
  mf: Miniflare
  /** Everything the Worker wrote to its console. */
  output: () => string
  /** A Durable Object namespace binding, callable from the test over RPC. */
  namespace<T>(binding: string): Promise<T>
  stop(): Promise<void>
}

/**
 * Runs the built Worker with wrangler.toml's bindings (Durable Objects, KV, Analytics Engine,
 * compatibility date and flags), `config` as GATEWAY_CONFIG_JSON and ADMIN_TOKEN set; `vars`
 * adds or overrides vars and secrets. Storage is in memory: every run starts empty.
 */
export async function startWorker(
  build: WorkerBuild,
  config: object,
  vars: Record<string, string> = {},
): Promise<RunningWorker> {
  const { workerOptions } = unstable_getMiniflareWorkerOptions(resolve(REPO_ROOT, 'wrangler.toml'))
  let output = ''
  const mf = new Miniflare({
    ...workerOptions,
    modules: true,
    scriptPath: build.scriptPath,
    modulesRoot: dirname(build.scriptPath),
    cf: false,
    host: '127.0.0.1',
    port: 0,
    bindings: { ...workerOptions.bindings, GATEWAY_CONFIG_JSON: JSON.stringify(config), ADMIN_TOKEN, ...vars },
    handleRuntimeStdio: (stdout: Readable, stderr: Readable) => {
      stdout.on('data', (d: Buffer) => (output += d))
      stderr.on('data', (d: Buffer) => (output += d))
    },
  })
  let url: string
  try {
    url = (await mf.ready).origin
  } catch (error) {
    await mf.dispose().catch(() => {})
    throw new Error(`workerd did not start: ${errorMessage(error)}\n${output}`)
  }
  return {
    url,
    mf,
    output: () => output,
    namespace: async <T>(binding: string) => plainResults(await mf.getDurableObjectNamespace(binding)) as T,
    stop: () => mf.dispose(),
  }
}

type RemoteStub = Record<string, (...args: unknown[]) => Promise<unknown>>
interface RemoteNamespace {
  idFromName(name: string): unknown
  get(id: unknown): RemoteStub
}

/**
 * Miniflare hands an RPC result to Node as a proxy of the remote object; the stores' results are
 * plain JSON values, so each is copied into a real object (assertions compare them deeply).
 */
function plainResults(remote: unknown): RemoteNamespace {
  const namespace = remote as RemoteNamespace
  return {
    idFromName: (name) => namespace.idFromName(name),
    get(id) {
      const stub = namespace.get(id)
      return new Proxy({} as RemoteStub, {
        get:
          (_, method: string) =>
          async (...args: unknown[]) => {
            const result = await stub[method](...args)
            return result !== null && typeof result === 'object' ? JSON.parse(JSON.stringify(result)) : result
          },
      })
    },
  }
}
