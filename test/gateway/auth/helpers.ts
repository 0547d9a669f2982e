/** Test doubles for the auth tests: an in-memory KeyStore, a recording Logger, a tiny app. */
import { Hono } from 'hono'
import { HTTPException } from 'hono/http-exception'
import { createAdminRoutes, requireAdmin } from '../../../gateway/auth/admin.ts'
import { createKeyLookup, type KeyCacheOptions } from '../../../gateway/auth/api-keys.ts'
import type { JwtVerifier } from '../../../gateway/auth/jwt.ts'
import { authenticate, requireModelAccess } from '../../../gateway/auth/middleware.ts'
import type { ApiKeyRecord, KeyStore, Limits, Logger } from '../../../gateway/types.ts'

/** A KeyStore in a Map, with switches to make it fail and counters to see whether it was asked. */
export class MemoryKeyStore implements KeyStore {
  readonly records = new Map<string, ApiKeyRecord>()
  failing = false
  findCalls = 0

  private check() {
    if (this.failing) throw new Error('store down (test)')
  }
  async findByHash(hash: string): Promise<ApiKeyRecord | null> {
    this.findCalls++
    this.check()
    for (const record of this.records.values())
      if (record.hash === hash && !record.revoked) return structuredClone(record)
    return null
  }
  async create(record: ApiKeyRecord): Promise<void> {
    this.check()
    if (this.records.has(record.id)) throw new Error('duplicate id')
    this.records.set(record.id, structuredClone(record))
  }
  async list(): Promise<ApiKeyRecord[]> {
    this.check()
    return [...this.records.values()].map((r) => structuredClone(r))
  }
  async revoke(id: string): Promise<boolean> {
    this.check()
    const record = this.records.get(id)
    if (!record || record.revoked) return false
    record.revoked = true
    return true
  }
}

export type LogEntry = { level: 'info' | 'warn' | 'error'; fields: Record<string, unknown>; message: string }

export class RecordingLogger implements Logger {
  readonly entries: LogEntry[] = []
  info(fields: Record<string, unknown>, message: string) {
    this.entries.push({ level: 'info', fields, message })
  }
  warn(fields: Record<string, unknown>, message: string) {
    this.entries.push({ level: 'warn', fields, message })
  }
  error(fields: Record<string, unknown>, message: string) {
    this.entries.push({ level: 'error', fields, message })
  }
  reasons(): unknown[] {
    return this.entries.map((e) => e.fields.reason).filter((r) => r !== undefined)
  }
  lastReason(): unknown {
    return this.reasons().at(-1)
  }
  text(): string {
    return JSON.stringify(this.entries)
  }
}

export const DEFAULT_LIMITS: Limits = {
  requestsPerWindow: 100,
  requestWindowSeconds: 60,
  tokensPerMinute: 10_000,
  maxConcurrent: 8,
}

/**
 * `/v1/whoami` returns the principal; `/v1/use/:model` also checks model access;
 * `/admin/*` is the admin API; `/metrics` sits behind requireAdmin.
 */
export function buildApp(
  options: {
    store?: KeyStore
    configKeys?: ApiKeyRecord[]
    jwt?: JwtVerifier
    adminToken?: string
    defaultLimits?: Limits
    logIntervalMs?: number
    keyCache?: KeyCacheOptions
    now?: () => number
  } = {},
) {
  const store = options.store ?? new MemoryKeyStore()
  const logger = new RecordingLogger()
  const lookup = createKeyLookup({
    configKeys: options.configKeys ?? [],
    store,
    cache: options.keyCache,
    now: options.now,
  })
  const app = new Hono()
  app.get('/metrics', requireAdmin(options.adminToken, logger), (c) => c.text('metrics 1\n'))
  app.route(
    '/admin',
    createAdminRoutes({
      adminToken: options.adminToken,
      store,
      logger,
      isConfigKey: lookup.isConfigKey,
      onRevoked: lookup.forget,
    }),
  )
  app.use(
    '/v1/*',
    authenticate({
      lookup,
      jwt: options.jwt,
      defaultLimits: options.defaultLimits ?? DEFAULT_LIMITS,
      logger,
      logIntervalMs: options.logIntervalMs ?? 0,
    }),
  )
  app.get('/v1/whoami', (c) => c.json(c.get('principal')))
  app.get('/v1/use/:model', (c) => {
    requireModelAccess(c.get('principal'), c.req.param('model'))
    return c.json({ ok: true, model: c.req.param('model') })
  })
  app.notFound((c) =>
    c.json({ error: { message: 'Not found', type: 'invalid_request_error', param: null, code: 'not_found' } }, 404),
  )
  app.onError((error, c) => {
    if (error instanceof HTTPException) return error.getResponse()
    return c.json(
      { error: { message: 'Internal server error', type: 'server_error', param: null, code: 'internal_error' } },
      500,
    )
  })
  return { app, store, logger }
}

export async function hexSha256(value: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(value)))
  return [...digest].map((b) => b.toString(16).padStart(2, '0')).join('')
}

export const UNAUTHORIZED_BODY = {
  error: {
    message: 'Invalid or missing credentials',
    type: 'invalid_request_error',
    param: null,
    code: 'invalid_api_key',
  },
}
