import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { exportJWK, generateKeyPair } from 'jose'
import { parseGatewayConfig } from '../gateway/config/parse.ts'
import { type RunningGateway, startNodeGateway } from '../gateway/node/server.ts'
import { loadPrivateJwk } from '../gateway/node/signing-key.ts'
import { createBackendTokenSigner } from '../gateway/proxy/backend-token.ts'
import { ListenError, listenError } from '../lib/listen-error.ts'

// `npm start`: one backend node and the gateway in front of it on localhost, in-memory
// stores, and a demo API key printed once. For trying Switchyard, not for production.
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const backendPort = Number(process.env.BACKEND_PORT ?? 8000)
const backendUrl = `http://127.0.0.1:${backendPort}`
const gatewayPort = Number(process.env.PORT ?? 8080)

// A throwaway key pair, so even the local backend accepts only the gateway's signed requests.
const keyDir = mkdtempSync(join(tmpdir(), 'switchyard-keys-'))
const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
writeFileSync(
  join(keyDir, 'signing.json'),
  JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'embedded', alg: 'EdDSA' }),
  { mode: 0o600 },
)
writeFileSync(
  join(keyDir, 'verify.json'),
  JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'embedded', alg: 'EdDSA', use: 'sig' }] }),
)
process.on('exit', () => rmSync(keyDir, { recursive: true, force: true }))

// Both ports are checked before anything starts, so a port in use is one line, not a stack trace.
for (const [variable, port] of [
  ['BACKEND_PORT', backendPort],
  ['PORT', gatewayPort],
] as const) {
  const problem = await portProblem(port)
  if (problem) {
    console.error(`switchyard: ${listenError(problem, port, variable).message}`)
    process.exit(2)
  }
}

const backend = spawn(process.execPath, ['--import', 'tsx', resolve(root, 'backend/node.ts')], {
  cwd: root,
  // CPU unless asked otherwise: a first try on a laptop has no GPU to look for.
  env: {
    DEVICE: 'cpu',
    ...process.env,
    HOST: '127.0.0.1',
    PORT: String(backendPort),
    GATEWAY_VERIFY_KEYS_FILE: join(keyDir, 'verify.json'),
    SWITCHYARD_PORT_VARIABLE: 'BACKEND_PORT',
  },
  // The IPC channel closes when this process ends however it ends (SIGKILL included), and the node then stops too.
  stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
})
const backendExited = new Promise<number | null>((resolve) => backend.once('exit', (code) => resolve(code)))
const backendFailed = (code: number | null) => {
  console.error(`switchyard: the backend node exited (${code}); stopping`)
  process.exit(code || 1)
}
backend.on('exit', backendFailed)
// Every other way out (an error, process.exit) stops the node too.
process.on('exit', () => {
  if (backend.exitCode === null && backend.signalCode === null) backend.kill('SIGTERM')
})

let gateway: RunningGateway | undefined
let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  backend.off('exit', backendFailed)
  backend.kill('SIGTERM')
  await gateway?.close()
  // The node drains its own requests; give it the time it takes, then make sure it is gone.
  const gone = await Promise.race([
    backendExited.then(() => true),
    new Promise<false>((r) => setTimeout(() => r(false), 35_000)),
  ])
  if (!gone) backend.kill('SIGKILL')
  rmSync(keyDir, { recursive: true, force: true })
  process.exit(0)
}
for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => void stop())
// `npm start` runs this under `sh -c`, and a SIGTERM to npm ends npm and the shell but never
// reaches this process: it would run on as an orphan. A changed parent means whoever started it is gone.
const parent = process.ppid
setInterval(() => process.ppid !== parent && void stop(), 250).unref()

const deadline = Date.now() + 120_000
while (
  !(await fetch(`${backendUrl}/ready`).then(
    (r) => r.ok,
    () => false,
  ))
) {
  if (Date.now() > deadline) {
    console.error('switchyard: the backend node did not become ready in 120 s')
    backend.kill('SIGTERM')
    process.exit(1)
  }
  await new Promise((r) => setTimeout(r, 100))
}

const demoKey = `sy-${randomBytes(32).toString('base64url')}`
const config = parseGatewayConfig(
  { auth: { apiKeys: [{ id: 'demo', tenant: 'demo', hash: createHash('sha256').update(demoKey).digest('hex') }] } },
  {
    ...process.env,
    BACKEND_URL: backendUrl,
    PORT: String(gatewayPort),
    BACKEND_SIGNING_KEY_FILE: join(keyDir, 'signing.json'),
  },
)
gateway = await startNodeGateway(config).catch((error: unknown) => {
  if (!(error instanceof ListenError)) throw error
  console.error(`switchyard: ${error.message}`)
  process.exit(2)
})
const signer = createBackendTokenSigner({ privateJwk: await loadPrivateJwk(join(keyDir, 'signing.json')) })
const models = (
  (await (
    await fetch(`${backendUrl}/v1/models`, { headers: { authorization: `Bearer ${await signer.token()}` } })
  ).json()) as { data: { id: string }[] }
).data.map((m) => m.id)
const base = `http://127.0.0.1:${gateway.port}`
console.log(`
Switchyard is running: gateway ${base} → backend node ${backendUrl} (models: ${models.join(', ')})
Demo API key (shown once, kept in memory only): ${demoKey}

  curl -N ${base}/v1/chat/completions -H "Authorization: Bearer ${demoKey}" \\
    -H 'content-type: application/json' \\
    -d '{"model":"${models[0]}","messages":[{"role":"user","content":"Tell me a story"}],"max_tokens":60,"stream":true}'
`)

/** Why `port` cannot be listened on at 127.0.0.1, or null when it can. */
function portProblem(port: number): Promise<Error | null> {
  return new Promise((resolve) => {
    const probe = createServer()
    probe.once('error', (error) => resolve(error))
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve(null)))
  })
}
