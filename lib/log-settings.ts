import { z } from 'zod'

/** The log settings both services read from the environment (backend/config.ts, gateway/config/schema.ts). */
export const logSettingsSchema = {
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** `auto`: readable lines on a terminal, JSON lines otherwise (log collectors, pipes, files). */
  LOG_FORMAT: z.enum(['auto', 'pretty', 'json']).default('auto'),
}

export type LogFormat = z.infer<typeof logSettingsSchema.LOG_FORMAT>
