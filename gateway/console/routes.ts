/**
 * The operator console, mounted by the app at `/console`:
 *
 *   GET /console                  the page (a shell with no data; public)
 *   GET /console/{app,charts,playground}.js, style.css, icon.svg   its code (public, static)
 *   GET /console/api/snapshot     router status + chart history (admin bearer token)
 *
 * A browser cannot send a bearer header when it navigates, so the page itself carries no data:
 * its script asks the operator for the admin token, keeps it in sessionStorage (this tab only)
 * and sends it to /console/api/*. The assets are string constants, so the same module serves
 * them on Node and on Workers with no file system and no build step. Without an admin token
 * configured the console does not exist (404), like the admin API.
 */
import { Hono, type MiddlewareHandler } from 'hono'
import { requireAdmin } from '../auth/admin.ts'
import type { Router } from '../routing/router.ts'
import type { GatewayMetrics, Logger } from '../types.ts'
import { APP_JS } from './app-script.ts'
import { CHARTS_JS } from './charts-script.ts'
import { ICON_SVG, PAGE_HTML } from './page.ts'
import { PLAYGROUND_JS } from './playground-script.ts'
import { STEP_SECONDS, statsFor, teeMetrics } from './stats.ts'
import { STYLE_CSS } from './style.ts'

export interface ConsoleOptions {
  adminToken: string | undefined
  router: Router
  /** The gateway's metrics; the console keeps its chart history from the same calls. */
  metrics: GatewayMetrics
  logger: Logger
  /** The header the playground sends to ask for a region (routing.regionHeader). */
  regionHeader: string
}

// Everything the page loads comes from this origin; no inline script or style, no framing,
// no form posts anywhere, no referrer.
const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "connect-src 'self'",
  "img-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')

const securityHeaders: MiddlewareHandler = async (c, next) => {
  await next()
  c.header('content-security-policy', CONTENT_SECURITY_POLICY)
  c.header('x-frame-options', 'DENY')
  c.header('x-content-type-options', 'nosniff')
  c.header('referrer-policy', 'no-referrer')
  c.header('cross-origin-opener-policy', 'same-origin')
  c.header('cross-origin-resource-policy', 'same-origin')
  // Snapshots must never be stored; the assets are small and change with the gateway's version.
  c.header('cache-control', 'no-store')
}

const assets: Record<string, { body: string; type: string }> = {
  '/app.js': { body: APP_JS, type: 'text/javascript; charset=utf-8' },
  '/charts.js': { body: CHARTS_JS, type: 'text/javascript; charset=utf-8' },
  '/playground.js': { body: PLAYGROUND_JS, type: 'text/javascript; charset=utf-8' },
  '/style.css': { body: STYLE_CSS, type: 'text/css; charset=utf-8' },
  '/icon.svg': { body: ICON_SVG, type: 'image/svg+xml' },
}

/**
 * The console's routes, and the metrics the app should record to (the given ones, teed into
 * the console's history). With no admin token configured: no routes and the metrics unchanged.
 */
export function createConsole(options: ConsoleOptions): { routes: Hono; metrics: GatewayMetrics } {
  const routes = new Hono()
  if (!options.adminToken?.trim()) return { routes, metrics: options.metrics }
  const stats = statsFor(options.metrics)

  routes.use('*', securityHeaders)
  routes.get('/', (c) => c.html(PAGE_HTML))
  for (const [path, asset] of Object.entries(assets))
    routes.get(path, (c) => c.body(asset.body, 200, { 'content-type': asset.type }))

  routes.use('/api/*', requireAdmin(options.adminToken, options.logger))
  routes.get('/api/snapshot', (c) =>
    c.json({
      serverTime: Date.now(),
      regionHeader: options.regionHeader,
      status: options.router.status(),
      stepSeconds: STEP_SECONDS,
      series: stats.series(),
      totals: stats.totalsSinceStart(),
    }),
  )
  return { routes, metrics: teeMetrics(options.metrics, stats) }
}
