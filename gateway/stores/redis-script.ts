import { createHash } from 'node:crypto'
import type { RedisClient } from './redis-client.ts'

export interface RedisScript {
  /** Runs the script (EVALSHA; EVAL once after a server restart emptied its script cache). */
  run(redis: RedisClient, keys: string[], args: (string | number)[]): Promise<unknown>
}

/** A Lua script sent by digest, so each call costs one short round trip. */
export function defineScript(lua: string): RedisScript {
  const sha = createHash('sha1').update(lua).digest('hex')
  return {
    async run(redis, keys, args) {
      try {
        return await redis.evalsha(sha, keys.length, ...keys, ...args)
      } catch (error) {
        if (!String((error as Error)?.message).startsWith('NOSCRIPT')) throw error
        return redis.eval(lua, keys.length, ...keys, ...args)
      }
    },
  }
}
