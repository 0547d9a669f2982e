import { readFile } from 'node:fs/promises'
import { importJWK } from 'jose'
import { errorMessage } from '../../lib/error-message.ts'
import { type BackendSigningJwk, parsePrivateJwk } from '../proxy/backend-token.ts'

/** Reads a private JWK file (Node only), validates it, and checks that it imports. */
export async function loadPrivateJwk(path: string): Promise<BackendSigningJwk> {
  let document: unknown
  try {
    document = JSON.parse(await readFile(path, 'utf8'))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new Error(code ? `cannot read ${path} (${code})` : `${path}: not valid JSON`)
  }
  let jwk: BackendSigningJwk
  try {
    jwk = parsePrivateJwk(document)
    await importJWK(jwk, jwk.alg)
  } catch (error) {
    throw new Error(`${path}: ${errorMessage(error)}`)
  }
  return jwk
}
