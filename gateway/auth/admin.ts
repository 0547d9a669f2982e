/**
 * The admin API, mounted by the app at `/admin`: create, list and revoke API keys.
 *
 *   POST   /admin/keys      {tenant, models?, limits?, id?} -> 201 {id, key, tenant, models, limits, created_at}
 *   GET    /admin/keys      -> {object: 'list', data: [{id, tenant, models, limits, created_at, revoked, source}]}
 *   DELETE /admin/keys/:id  -> {id, revoked: true} | 404 | 409 (a config-file key: revoke it there)
 *
 * Ids are unique across sources: an id a config-file key has is refused (409) on create.
 *
 * Every route needs `Authorization: Bearer <adminToken>`. Without an admin token configured the
 * admin surface does not exist: every route answers the app's ordinary 404.
 */
import { Hono, type MiddlewareHandler } from 'hono'
import { bodyLimit } from 'hono/body-limit'
import { z } from 'zod'
import { errorMessage } from '../../lib/error-message.ts'
import { errorBody } from '../../openai/errors.ts'
import type { ApiKeyRecord, KeyStore, Limits, Logger } from '../types.ts'
import { constantTimeEqual, generateApiKey, generateKeyId, hashApiKey } from './api-keys.ts'
import { isWellFormedCredential, parseBearer, UNAUTHORIZED_HEADERS, unauthorizedBody } from './errors.ts'

export interface AdminRoutesOptions {
  adminToken: string | undefined
  store: KeyStore
  logger: Logger
  /** Whether a config-file key has this id. Default: none has. */
  isConfigKey?: (id: string) => boolean
  /** Called after a key was revoked (so the key lookup's outage cache forgets it). */
  onRevoked?: (id: string) => void
}

const MAX_BODY_BYTES = 64 * 1024

const positiveInt = z.number().int().positive().max(Number.MAX_SAFE_INTEGER)
const limitsSchema = z.strictObject({
  requestsPerWindow: positiveInt.optional(),
  requestWindowSeconds: positiveInt.optional(),
  tokensPerMinute: positiveInt.optional(),
  maxConcurrent: positiveInt.optional(),
})
// Lone surrogates are refused too: Redis's Lua JSON decoder rejects them, so such a key could never be revoked.
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it refuses
const noControlChars = /^[^\x00-\x1f\x7f\p{Cs}]+$/u
const createKeySchema = z.strictObject({
  tenant: z
    .string()
    .trim()
    .min(1)
    .max(128)
    .regex(noControlChars, 'must not contain control characters or lone surrogates'),
  models: z
    .array(z.string().min(1).max(256).regex(noControlChars, 'must not contain control characters or lone surrogates'))
    .max(1000)
    .optional(),
  limits: limitsSchema.optional(),
  id: z
    .string()
    .regex(
      /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/,
      'must be 1-64 characters of A-Z a-z 0-9 _ . : - starting with a letter or digit',
    )
    .optional(),
})

function isConfigured(adminToken: string | undefined): adminToken is string {
  return typeof adminToken === 'string' && adminToken.trim() !== ''
}

/**
 * Middleware that lets only `Authorization: Bearer <adminToken>` through (timing-safe compare).
 * With no admin token configured it answers 404 for everything, so the route seems not to exist.
 */
export function requireAdmin(adminToken: string | undefined, logger?: Logger): MiddlewareHandler {
  const configured = isConfigured(adminToken)
  return async (c, next) => {
    if (!configured) return c.notFound()
    const bearer = parseBearer(c.req.header('authorization'))
    const ok =
      typeof bearer === 'string' && isWellFormedCredential(bearer) && (await constantTimeEqual(bearer, adminToken))
    if (!ok) {
      logger?.warn(
        {
          reason: 'admin_not_authorized',
          detail: bearer === undefined ? 'missing' : 'invalid',
          method: c.req.method,
          path: c.req.path,
        },
        'admin authentication failed',
      )
      return c.json(unauthorizedBody(), 401, { ...UNAUTHORIZED_HEADERS })
    }
    await next()
  }
}

function describe(record: ApiKeyRecord) {
  return {
    id: record.id,
    tenant: record.tenant,
    models: record.models ?? null,
    limits: record.limits ?? {},
    created_at: record.createdAt,
    revoked: record.revoked === true,
    source: record.source,
  }
}

function storeUnavailable(logger: Logger, operation: string, error: unknown) {
  logger.error({ operation, error: errorMessage(error) }, 'key store unavailable')
  return errorBody('The key store is temporarily unavailable; retry shortly', {
    type: 'server_error',
    code: 'store_unavailable',
  })
}

/** The admin sub-app; mount it with `app.route('/admin', createAdminRoutes(...))`. */
export function createAdminRoutes(options: AdminRoutesOptions): Hono {
  const { store, logger } = options
  const isConfigKey = options.isConfigKey ?? (() => false)
  const app = new Hono()
  app.use('*', requireAdmin(options.adminToken, logger))

  app.post(
    '/keys',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: (c) =>
        c.json(errorBody(`Request body larger than ${MAX_BODY_BYTES} bytes`, { code: 'body_too_large' }), 413),
    }),
    async (c) => {
      let raw: unknown
      try {
        raw = JSON.parse(await c.req.text())
      } catch {
        return c.json(errorBody('Request body must be a JSON object', { code: 'invalid_json' }), 400)
      }
      const parsed = createKeySchema.safeParse(raw)
      if (!parsed.success) {
        const issue = parsed.error.issues[0]
        const param = issue.path.map(String).join('.') || null
        const message = param ? `Invalid value for '${param}': ${issue.message}` : issue.message
        return c.json(errorBody(message, { param, code: 'invalid_value' }), 400)
      }
      const input = parsed.data

      const keyExists = (where: string) =>
        c.json(
          errorBody(`A key with id '${input.id}' already exists${where}`, { param: 'id', code: 'key_exists' }),
          409,
        )
      // Checked before the store: a config-file id is refused even while the store is down.
      if (input.id !== undefined && isConfigKey(input.id)) return keyExists(" in the gateway's config file")
      let existing: ApiKeyRecord[]
      try {
        existing = await store.list()
      } catch (error) {
        return c.json(storeUnavailable(logger, 'list', error), 503)
      }
      const taken = new Set(existing.map((r) => r.id))
      if (input.id !== undefined && taken.has(input.id)) return keyExists('')
      const generated = generateApiKey()
      let id = input.id ?? generated.id
      while (taken.has(id) || isConfigKey(id)) id = generateKeyId()

      const limits: Limits = { ...input.limits }
      const models = input.models === undefined ? undefined : [...new Set(input.models)]
      const record: ApiKeyRecord = {
        id,
        hash: await hashApiKey(generated.key),
        tenant: input.tenant,
        limits,
        createdAt: new Date().toISOString(),
        source: 'store',
      }
      if (models !== undefined) record.models = models
      try {
        await store.create(record)
      } catch (error) {
        return c.json(storeUnavailable(logger, 'create', error), 503)
      }
      logger.info({ keyId: id, tenant: record.tenant }, 'api key created')
      return c.json(
        { id, key: generated.key, tenant: record.tenant, models: models ?? null, limits, created_at: record.createdAt },
        201,
        { 'cache-control': 'no-store' },
      )
    },
  )

  app.get('/keys', async (c) => {
    try {
      const records = await store.list()
      return c.json({ object: 'list', data: records.map(describe) }, 200, { 'cache-control': 'no-store' })
    } catch (error) {
      return c.json(storeUnavailable(logger, 'list', error), 503)
    }
  })

  app.delete('/keys/:id', async (c) => {
    const id = c.req.param('id')
    let revoked: boolean
    try {
      // Also for a config-file id: a store key may have it from before ids were unique across sources.
      revoked = await store.revoke(id)
    } catch (error) {
      return c.json(storeUnavailable(logger, 'revoke', error), 503)
    }
    if (revoked) {
      options.onRevoked?.(id)
      logger.info({ keyId: id }, 'api key revoked')
    }
    if (isConfigKey(id)) {
      const also = revoked
        ? ` (a key-store key with the same id, made before ids were unique across sources, was revoked)`
        : ''
      const message = `Key '${id}' is defined in the gateway's config file and cannot be revoked through the admin API; remove it from the config file and reload the gateway${also}`
      return c.json(errorBody(message, { param: 'id', code: 'config_key' }), 409)
    }
    if (!revoked) return c.json(errorBody('No such API key', { param: 'id', code: 'key_not_found' }), 404)
    return c.json({ id, revoked: true }, 200)
  })

  return app
}
