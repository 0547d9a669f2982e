import type { RedisClient } from './redis-client.ts'

/**
 * The Redis clock as seen from this process: an offset to the local monotonic clock, taken
 * from replies that came back within half of `windowMs` (so its error is under a quarter of it), and
 * taken again after each reconnect (a failover may bring another server's clock). `deadline`
 * answers the Redis time past which a call sent now must change nothing: half the client's
 * command timeout ahead, so an offset error up to that margin still cannot let a call the
 * client gave up on take effect.
 */
export function createRedisClock(redis: RedisClient, windowMs: number | undefined) {
  let offset: number | undefined
  let syncing: Promise<void> | undefined
  redis.on('ready', () => (offset = undefined))
  const observe = (redisNow: number, sentAt: number) => {
    const receivedAt = performance.now()
    if (windowMs !== undefined && receivedAt - sentAt <= windowMs / 2) offset = redisNow - (sentAt + receivedAt) / 2
  }
  const sync = async () => {
    const sentAt = performance.now()
    const [seconds, micros] = await redis.time()
    observe(Number(seconds) * 1000 + Math.floor(Number(micros) / 1000), sentAt)
  }
  return {
    observe,
    /** 0 (no deadline) only when the client never gives up on a command. */
    async deadline(): Promise<number> {
      if (windowMs === undefined) return 0
      if (offset === undefined) await (syncing ??= sync().finally(() => (syncing = undefined)))
      if (offset === undefined) throw new Error('redis clock unknown')
      return Math.floor(performance.now() + offset + windowMs / 2)
    },
  }
}
