import type { GatewayEnv } from '../config/schema.ts'
import type { Logger } from '../types.ts'

const LEVELS = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity } as const

/**
 * JSON lines on the console, the shape of the Node gateway's pino lines (`level`, `time`,
 * `msg` and the fields). On Workers the console is the log pipeline: Workers Logs indexes the
 * fields, and `wrangler tail`, tail Workers and Logpush receive the same lines.
 */
export function createConsoleLogger(level: GatewayEnv['LOG_LEVEL']): Logger {
  const threshold = LEVELS[level]
  const line = (name: 'info' | 'warn' | 'error', fields: Record<string, unknown>, message: string) =>
    JSON.stringify({
      level: name,
      time: new Date().toISOString(),
      service: 'switchyard-gateway',
      ...fields,
      msg: message,
    })
  return {
    info: (fields, message) => {
      if (LEVELS.info >= threshold) console.log(line('info', fields, message))
    },
    warn: (fields, message) => {
      if (LEVELS.warn >= threshold) console.warn(line('warn', fields, message))
    },
    error: (fields, message) => {
      if (LEVELS.error >= threshold) console.error(line('error', fields, message))
    },
  }
}
