/**
 * Writes the configuration reference tables of docs/configuration.md from the config schemas
 * (gateway/config/schema.ts, backend/config.ts), so the documented defaults and descriptions
 * cannot drift from the code. Each table sits between marker comments; the rest of the file is
 * prose and stays as written.
 *
 *   node --import tsx scripts/config-docs.ts [--check] [file]     (npm run docs:config)
 *
 * --check writes nothing and exits 1 when the file differs from what would be written (run by
 * test/scripts/config-docs.test.ts, so CI fails on a stale table).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { z } from 'zod'
import { backendConfigSchema } from '../backend/config.ts'
import { gatewayEnvSchema, gatewayFileSchema } from '../gateway/config/schema.ts'

/** What `.describe()` / `.meta()` may carry: `docDefault` replaces a default that is not a plain value. */
interface DocMeta {
  description?: string
  docDefault?: string
}

interface Row {
  name: string
  type: string
  default: string
  description: string
}

// zod 4's internals, as far as this script reads them.
type Def = {
  type: string
  innerType?: Schema
  in?: Schema
  element?: Schema
  options?: Schema[]
  entries?: Record<string, string>
  shape?: Record<string, Schema>
  defaultValue?: unknown
}
type Schema = z.ZodType & { def: Def; isInt?: boolean }

const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'pipe', 'readonly'])

/** The schema under optional/default/prefault/pipe wrappers, and what the wrappers say. */
function unwrap(schema: Schema): {
  core: Schema
  meta: DocMeta
  optional: boolean
  default?: unknown
  prefault?: unknown
} {
  const found: { meta: DocMeta; optional: boolean; default?: unknown; prefault?: unknown } = {
    meta: {},
    optional: false,
  }
  let s = schema
  for (;;) {
    // The outermost description wins (a `.describe()` written last).
    const meta = z.globalRegistry.get(s) as DocMeta | undefined
    if (meta?.description && !found.meta.description) found.meta = { ...meta }
    if (meta?.docDefault && !found.meta.docDefault) found.meta.docDefault = meta.docDefault
    const def = s.def
    if (!WRAPPERS.has(def.type)) return { core: s, ...found }
    if (def.type === 'optional') found.optional = true
    if (def.type === 'default' && !('default' in found)) found.default = def.defaultValue
    if (def.type === 'prefault' && !('prefault' in found)) found.prefault = def.defaultValue
    s = (def.type === 'pipe' ? def.in : def.innerType) as Schema
  }
}

function typeOf(schema: Schema): string {
  const { core } = unwrap(schema)
  const def = core.def
  switch (def.type) {
    case 'number':
      return core.isInt ? 'integer' : 'number'
    case 'enum':
      return Object.values(def.entries!)
        .map((v) => `\`${v}\``)
        .join(' / ')
    case 'array':
      return `${typeOf(def.element!)}[]`
    case 'record':
    case 'object':
      return 'object'
    case 'union':
      return def.options!.map(typeOf).join(' or ')
    default:
      return def.type
  }
}

function formatValue(value: unknown): string {
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length > 0) {
    return Object.entries(value)
      .map(([k, v]) => `${k}: ${JSON.stringify(v)}`)
      .join(', ')
  }
  return `\`${typeof value === 'string' ? value : JSON.stringify(value)}\``
}

/** `inOptional`: the field sits in an optional object, so it is not required of every config. */
function row(name: string, schema: Schema, inOptional = false): Row {
  const u = unwrap(schema)
  if (!u.meta.description) throw new Error(`${name} has no description: add .describe() in its schema`)
  let shown: string
  if (u.meta.docDefault !== undefined) shown = u.meta.docDefault
  else if ('default' in u) shown = formatValue(u.default)
  else if ('prefault' in u) shown = formatValue(schema.parse(undefined))
  else shown = u.optional || inOptional ? 'none' : 'required'
  return { name: `\`${name}\``, type: typeOf(schema), default: shown, description: u.meta.description }
}

/**
 * One row per described field, depth first. An object is entered when it has no description
 * of its own, or when it defaults to its fields' defaults (`.prefault({})`: its row sums them
 * up, its fields have their own rows); other described objects, arrays and records are one row.
 */
function fileRows(shape: Record<string, Schema>, prefix = '', inOptional = false): Row[] {
  const rows: Row[] = []
  for (const [key, schema] of Object.entries(shape)) {
    const u = unwrap(schema)
    const ofObjects = u.core.def.type === 'array' && unwrap(u.core.def.element!).core.def.type === 'object'
    const path = `${prefix}${key}${ofObjects ? '[]' : ''}`
    const enter = u.core.def.type === 'object' && (!u.meta.description || 'prefault' in u)
    if (u.meta.description) rows.push(row(path, schema, inOptional))
    if (enter) rows.push(...fileRows(u.core.def.shape!, `${path}.`, inOptional || u.optional))
    else if (!u.meta.description) throw new Error(`${path} has no description: add .describe() in its schema`)
  }
  return rows
}

function envRows(shape: Record<string, Schema>): Row[] {
  return Object.entries(shape).map(([name, schema]) => row(name, schema))
}

const cell = (text: string) => text.replaceAll('|', '\\|').replaceAll('\n', ' ')

function table(header: string, rows: Row[]): string {
  return [
    `| ${header} | type | default | meaning |`,
    '|---|---|---|---|',
    ...rows.map((r) => `| ${[r.name, r.type, r.default, r.description].map(cell).join(' | ')} |`),
  ].join('\n')
}

/** Marker name → the table written between its markers. */
export function configTables(): Record<string, string> {
  return {
    'gateway-env': table('variable', envRows(gatewayEnvSchema.shape as unknown as Record<string, Schema>)),
    'gateway-file': table('config key', fileRows(gatewayFileSchema.shape as unknown as Record<string, Schema>)),
    'backend-env': table('variable', envRows(backendConfigSchema.shape as unknown as Record<string, Schema>)),
  }
}

const SOURCE = 'npm run docs:config'

/** The file's text with every marked table replaced; a marker missing from the file is an error. */
export function renderConfigDocs(text: string, tables = configTables()): string {
  let out = text
  for (const [name, body] of Object.entries(tables)) {
    const pattern = new RegExp(
      `(<!-- config-docs:${name} start[^>]*-->\\n)[\\s\\S]*?(<!-- config-docs:${name} end -->)`,
    )
    if (!pattern.test(out))
      throw new Error(`no <!-- config-docs:${name} start --> … <!-- config-docs:${name} end --> markers`)
    out = out.replace(pattern, (_m, start: string, end: string) => `${start}${body}\n${end}`)
  }
  return out
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2)
  const check = args.includes('--check')
  const file = resolve(
    args.find((a) => !a.startsWith('--')) ?? resolve(fileURLToPath(import.meta.url), '../../docs/configuration.md'),
  )
  const text = readFileSync(file, 'utf8')
  const next = renderConfigDocs(text)
  if (check) {
    if (next !== text) {
      console.error(`${file} is stale: its configuration tables differ from the schemas. Run ${SOURCE}.`)
      process.exit(1)
    }
    console.log(`${file}: configuration tables up to date`)
  } else if (next !== text) {
    writeFileSync(file, next)
    console.log(`${file}: configuration tables written`)
  } else {
    console.log(`${file}: configuration tables already up to date`)
  }
}
