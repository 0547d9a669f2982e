import { spawn } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { exportJWK, generateKeyPair } from 'jose'
import { parseGatewayConfig } from './config/parse.ts'
import { createBackendTokenSigner, loadPrivateJwk } from './proxy/backend-token.ts'
import { startNodeGateway } from './server.ts'

// `npm start`: one backend node and the gateway in front of it on localhost, in-memory
// stores, and a demo API key printed once. For trying Switchyard, not for production.
const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const backendPort = Number(process.env.BACKEND_PORT ?? 8000)
const backendUrl = `http://127.0.0.1:${backendPort}`

// A throwaway key pair, so even the local backend accepts only the gateway's signed requests.
const keyDir = mkdtempSync(join(tmpdir(), 'switchyard-keys-'))
const { privateKey, publicKey } = await generateKeyPair('EdDSA', { extractable: true })
writeFileSync(join(keyDir, 'signing.json'), JSON.stringify({ ...(await exportJWK(privateKey)), kid: 'embedded', alg: 'EdDSA' }), { mode: 0o600 })
writeFileSync(join(keyDir, 'verify.json'), JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: 'embedded', alg: 'EdDSA', use: 'sig' }] }))
process.on('exit', () => rmSync(keyDir, { recursive: true, force: true }))

const backend = spawn(process.execPath, ['--import', 'tsx', resolve(root, 'backend/node.ts')], {
  cwd: root,
  // CPU unless asked otherwise: probing for CUDA on a laptop only prints onnxruntime's loader errors.
  env: { DEVICE: 'cpu', ...process.env, HOST: '127.0.0.1', PORT: String(backendPort), GATEWAY_VERIFY_KEYS_FILE: join(keyDir, 'verify.json') },
  stdio: ['ignore', 'inherit', 'inherit'],
})
backend.on('exit', (code) => {
  console.error(`switchyard: the backend node exited (${code}); stopping`)
  process.exit(code || 1)
})

const deadline = Date.now() + 120_000
while (!(await fetch(`${backendUrl}/ready`).then((r) => r.ok, () => false))) {
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
  { ...process.env, BACKEND_URL: backendUrl, PORT: process.env.PORT ?? '8080', BACKEND_SIGNING_KEY_FILE: join(keyDir, 'signing.json') },
)
const gateway = await startNodeGateway(config)
const signer = createBackendTokenSigner({ privateJwk: await loadPrivateJwk(join(keyDir, 'signing.json')) })
const models = ((await (await fetch(`${backendUrl}/v1/models`, { headers: { authorization: `Bearer ${await signer.token()}` } })).json()) as { data: { id: string }[] }).data.map((m) => m.id)
const base = `http://127.0.0.1:${gateway.port}`
console.log(`
Switchyard is running: gateway ${base} → backend node ${backendUrl} (models: ${models.join(', ')})
Demo API key (shown once, kept in memory only): ${demoKey}

  curl -N ${base}/v1/chat/completions -H "Authorization: Bearer ${demoKey}" \\
    -H 'content-type: application/json' \\
    -d '{"model":"${models[0]}","messages":[{"role":"user","content":"Tell me a story"}],"max_tokens":60,"stream":true}'
`)

const stop = async () => {
  backend.removeAllListeners('exit')
  rmSync(keyDir, { recursive: true, force: true })
  backend.kill('SIGTERM')
  await gateway.close()
  process.exit(0)
}
process.on('SIGTERM', () => void stop())
process.on('SIGINT', () => void stop())
