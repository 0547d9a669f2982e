import { createEventParser, encodeEvent } from './event-stream.ts'

/**
 * A cached answer replayed as a new one: the same content under its own `id` and `created`, as
 * every answer from OpenAI has (clients use the id to tell answers apart and for logs). The id
 * keeps the stored one's prefix (`chatcmpl-`, `cmpl-`); bodies without an id (/generate) are kept.
 */
export interface FreshIdentity {
  id: (stored: string) => string
  created: number
}

export function freshIdentity(now = Date.now()): FreshIdentity {
  const suffix = crypto.randomUUID().replaceAll('-', '')
  return { id: (stored) => `${/^[A-Za-z]+-/.exec(stored)?.[0] ?? ''}${suffix}`, created: Math.floor(now / 1000) }
}

/** One JSON body or `data:` payload with the new identity; anything else as it was. */
export function withIdentity(data: string, identity: FreshIdentity): string {
  if (!data.startsWith('{') || !data.includes('"id"')) return data
  let parsed: Record<string, unknown>
  try {
    parsed = JSON.parse(data) as Record<string, unknown>
  } catch {
    return data
  }
  if (typeof parsed.id !== 'string') return data
  parsed.id = identity.id(parsed.id)
  if (typeof parsed.created === 'number') parsed.created = identity.created
  return JSON.stringify(parsed)
}

/** A live event stream (a shared flight's) with every event given the new identity. */
export function eventStreamWithIdentity(
  body: ReadableStream<Uint8Array>,
  identity: FreshIdentity,
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder()
  let pending: string[] = []
  const parse = createEventParser((data) => pending.push(encodeEvent(withIdentity(data, identity))))
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        parse(chunk)
        if (pending.length === 0) return
        controller.enqueue(encoder.encode(pending.join('')))
        pending = []
      },
    }),
  )
}
