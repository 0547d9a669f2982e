import type { StreamOutcome } from '../types.ts'
/**
 * Passes a byte stream through unchanged (each chunk is forwarded as soon as it arrives),
 * letting the caller look at chunks and learn how the stream ended: complete, cancelled by
 * the client, or failed upstream.
 */
export function observeStream(
  source: ReadableStream<Uint8Array>,
  hooks: { onChunk?: (chunk: Uint8Array) => Uint8Array | null; onEnd: (outcome: StreamOutcome) => void },
): ReadableStream<Uint8Array> {
  const reader = source.getReader()
  let ended = false
  const end = (outcome: StreamOutcome) => {
    if (ended) return
    ended = true
    hooks.onEnd(outcome)
  }
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await reader.read()
        if (done) {
          end('ok')
          controller.close()
          return
        }
        const out = hooks.onChunk ? hooks.onChunk(value) : value
        if (out && out.byteLength > 0) controller.enqueue(out)
      } catch (error) {
        end('upstream_error')
        controller.error(error)
      }
    },
    async cancel(reason) {
      end('client_closed')
      await reader.cancel(reason).catch(() => {})
    },
  })
}
