import { createHash } from 'node:crypto'
import { Cluster } from 'ioredis'
import { errorMessage } from '../../../lib/error-message.ts'
import type { RedisClient } from './redis-client.ts'

export interface RedisScript {
  /** Runs the script (EVALSHA; EVAL once after a server restart emptied its script cache). */
  run(redis: RedisClient, keys: string[], args: (string | number)[]): Promise<unknown>
  /** Puts the script in the server's cache (every master of a Cluster). */
  load(redis: RedisClient): Promise<void>
}

/**
 * Loads the scripts now if connected, and again each time the client is ready (a restarted
 * server has an empty script cache). Without this a script's first call is EVALSHA, NOSCRIPT,
 * then EVAL: if that first call times out (a stalled server), the reply is dropped and the
 * EVAL never sent, so a call that must run late (a slot release) would never run.
 */
export function preloadScripts(redis: RedisClient, scripts: RedisScript[], onError: () => void): void {
  const load = () => void Promise.all(scripts.map((script) => script.load(redis))).catch(onError)
  redis.on('ready', load)
  if (redis.status === 'ready') load()
}

/** A Lua script sent by digest, so each call costs one short round trip. */
export function defineScript(lua: string): RedisScript {
  const sha = createHash('sha1').update(lua).digest('hex')
  return {
    async run(redis, keys, args) {
      try {
        return await redis.evalsha(sha, keys.length, ...keys, ...args)
      } catch (error) {
        if (!errorMessage(error).startsWith('NOSCRIPT')) throw error
        return redis.eval(lua, keys.length, ...keys, ...args)
      }
    },
    async load(redis) {
      const nodes = redis instanceof Cluster ? redis.nodes('master') : [redis]
      await Promise.all(nodes.map((node) => node.script('LOAD', lua)))
    },
  }
}
