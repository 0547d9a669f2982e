import pino from 'pino'
import pretty from 'pino-pretty'
import type { LogFormat } from './log-settings.ts'

/**
 * The service's pino logger. JSON lines unless stdout is a terminal (or LOG_FORMAT=pretty): a
 * person starting `npm start` reads lines, a collector parses JSON. Pretty printing runs in
 * this thread, synchronously, so nothing is lost when the process exits.
 */
export function createLogger(options: { service: string; level: string; format: LogFormat }): pino.Logger {
  const base = { level: options.level, base: { service: options.service } }
  const terminal = process.stdout.isTTY === true
  if (options.format === 'json' || (options.format === 'auto' && !terminal)) return pino(base)
  return pino(
    base,
    pretty({
      colorize: terminal,
      sync: true,
      singleLine: true,
      ignore: 'pid,hostname,service',
      translateTime: 'SYS:HH:MM:ss.l',
      messageFormat: `${options.service.replace('switchyard-', '')}: {msg}`,
    }),
  )
}
