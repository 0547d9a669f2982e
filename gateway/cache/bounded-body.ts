export type BoundedRead =
  | { complete: true; bytes: Uint8Array<ArrayBuffer> }
  | { complete: false; body: ReadableStream<Uint8Array> }

/**
 * Reads a body into memory up to `limit` bytes. A larger body is not read any further: the
 * result is then a stream of the same bytes (what was read, then the rest as it comes), so the
 * client still gets all of it without the gateway holding it.
 */
export async function readBounded(body: ReadableStream<Uint8Array>, limit: number): Promise<BoundedRead> {
  const reader = body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { value, done } = await reader.read()
    if (done) break
    chunks.push(value)
    size += value.byteLength
    if (size > limit) return { complete: false, body: prefixed(chunks, reader) }
  }
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return { complete: true, bytes }
}

function prefixed(chunks: Uint8Array[], reader: ReadableStreamDefaultReader<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const head = chunks.shift()
        if (head) return controller.enqueue(head)
        const { value, done } = await reader.read()
        if (done) controller.close()
        else controller.enqueue(value)
      },
      cancel: (reason) => reader.cancel(reason),
    },
    { highWaterMark: 0 },
  )
}
