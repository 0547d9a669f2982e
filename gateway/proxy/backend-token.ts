/**
 * The short-lived token the gateway puts on every request to a backend node, which verifies it
 * against the gateway's public keys (backend/api/gateway-auth.ts). One token is signed and
 * reused until half its lifetime is gone, so a request costs a cache lookup, not a signature.
 *
 * Web-standard only (jose over WebCrypto): runs on Node and on Cloudflare Workers. Node reads
 * the key file with `loadPrivateJwk` (node/signing-key.ts); on Workers, pass the key (from a
 * secret) to `parsePrivateJwk` instead.
 */
import { importJWK, type JWK, SignJWT } from 'jose'

/** The algorithms backends accept, each with the one key type it may use. */
const KEY_TYPES = {
  EdDSA: { kty: 'OKP', crv: 'Ed25519' },
  ES256: { kty: 'EC', crv: 'P-256' },
} as const
type SigningAlgorithm = keyof typeof KEY_TYPES

/** Backends refuse tokens whose exp − iat exceeds this. */
const MAX_LIFETIME_SECONDS = 300
/** Shorter lifetimes would have the gateway re-signing every few seconds for nothing. */
const MIN_LIFETIME_SECONDS = 10

/** A validated private signing key. */
export interface BackendSigningJwk extends JWK {
  kid: string
  alg: SigningAlgorithm
}

/**
 * Checks that `value` is a private EC P-256 (ES256) or OKP Ed25519 (EdDSA) JWK with a kid.
 * `alg` may be left out (the curve decides it); if present it must match. Throws one line.
 */
export function parsePrivateJwk(value: unknown): BackendSigningJwk {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new Error('the signing key is not a JWK object')
  const jwk = value as JWK
  if (typeof jwk.kid !== 'string' || jwk.kid === '')
    throw new Error('the signing key has no "kid" (backends find the public key by it)')
  const alg = (Object.keys(KEY_TYPES) as SigningAlgorithm[]).find(
    (a) => KEY_TYPES[a].kty === jwk.kty && KEY_TYPES[a].crv === jwk.crv,
  )
  if (!alg) throw new Error(`signing key "${jwk.kid}": must be an EC P-256 or OKP Ed25519 key`)
  if (jwk.alg !== undefined && jwk.alg !== alg)
    throw new Error(`signing key "${jwk.kid}": alg ${jwk.alg} does not fit ${jwk.kty} ${jwk.crv} (use ${alg})`)
  if (typeof jwk.d !== 'string' || jwk.d === '')
    throw new Error(`signing key "${jwk.kid}" is a public key: the private key ("d") is needed to sign`)
  return { ...jwk, kid: jwk.kid, alg }
}

export interface BackendTokenSignerOptions {
  privateJwk: JWK
  /** 10–300 seconds. Default 60. */
  lifetimeSeconds?: number
  issuer?: string
  /** Must match the backends' GATEWAY_TOKEN_AUDIENCE. */
  audience?: string
  /** Clock in milliseconds, for tests. */
  now?: () => number
}

export interface BackendTokenSigner {
  /** A valid token: the cached one (synchronously), or a fresh one when less than half its lifetime is left. */
  token(): Promise<string> | string
}

export function createBackendTokenSigner(options: BackendTokenSignerOptions): BackendTokenSigner {
  const jwk = parsePrivateJwk(options.privateJwk)
  const lifetime = options.lifetimeSeconds ?? 60
  if (!Number.isInteger(lifetime) || lifetime < MIN_LIFETIME_SECONDS || lifetime > MAX_LIFETIME_SECONDS) {
    throw new Error(
      `lifetimeSeconds must be an integer from ${MIN_LIFETIME_SECONDS} to ${MAX_LIFETIME_SECONDS} (backends refuse longer-lived tokens)`,
    )
  }
  const issuer = options.issuer ?? 'switchyard-gateway'
  const audience = options.audience ?? 'switchyard-backend'
  if (issuer === '' || audience === '') throw new Error('issuer and audience must not be empty')
  const now = options.now ?? Date.now

  let key: Promise<CryptoKey> | undefined
  let cached: { token: string; renewAtMs: number } | undefined
  let signing: Promise<string> | undefined

  async function sign(): Promise<string> {
    // A failed import is not cached, so the next call tries again.
    key ??= (importJWK(jwk, jwk.alg) as Promise<CryptoKey>).catch((error) => {
      key = undefined
      throw error
    })
    const issuedAt = Math.floor(now() / 1000)
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: jwk.alg, kid: jwk.kid, typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience(audience)
      .setIssuedAt(issuedAt)
      .setExpirationTime(issuedAt + lifetime)
      .sign(await key)
    cached = { token, renewAtMs: (issuedAt + lifetime / 2) * 1000 }
    return token
  }

  return {
    token() {
      if (cached && now() < cached.renewAtMs) return cached.token
      // Callers arriving during a renewal share it instead of each signing.
      signing ??= sign().finally(() => {
        signing = undefined
      })
      return signing
    },
  }
}
