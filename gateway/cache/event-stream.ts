import { errorBody } from '../../openai/errors.ts'

const encoder = new TextEncoder()

/** The SSE bytes of one event carrying `data` (multi-line data becomes several `data:` lines). */
export function encodeEvent(data: string): string {
  if (!data.includes('\n')) return `data: ${data}\n\n`
  return `${data
    .split('\n')
    .map((line) => `data: ${line}`)
    .join('\n')}\n\n`
}

/** An error event in OpenAI's shape, sent to followers when the shared upstream stream broke. */
export const BROKEN_STREAM_EVENT = JSON.stringify(
  errorBody('The upstream stream broke', { type: 'server_error', code: 'upstream_error' }),
)

/** True for an event whose payload is a JSON object with an `error` field. */
export function isErrorEvent(data: string): boolean {
  if (!data.includes('"error"')) return false
  try {
    const parsed: unknown = JSON.parse(data)
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) && Object.hasOwn(parsed, 'error')
  } catch {
    return false
  }
}

/**
 * Splits an SSE byte stream into `data:` payloads as it passes (LF, CRLF or CR line ends; one
 * space after the colon dropped; several data lines joined with LF; comments and other
 * fields ignored). An event is emitted at its blank line; an unterminated tail is dropped.
 */
export function createEventParser(onData: (data: string) => void): (chunk: Uint8Array | string) => void {
  const decoder = new TextDecoder()
  let pending = ''
  let carriageReturn = false
  return (chunk) => {
    let text = typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true })
    if (carriageReturn) text = `\r${text}`
    // A CR at the end may be the first half of a CRLF split across chunks.
    carriageReturn = text.endsWith('\r')
    if (carriageReturn) text = text.slice(0, -1)
    pending += text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text
    let cut: number
    while ((cut = pending.indexOf('\n\n')) !== -1) {
      const event = pending.slice(0, cut)
      pending = pending.slice(cut + 2)
      const lines: string[] = []
      for (const line of event.split('\n')) {
        if (line === 'data') lines.push('')
        else if (line.startsWith('data:')) lines.push(line.startsWith('data: ') ? line.slice(6) : line.slice(5))
      }
      if (lines.length > 0) onData(lines.join('\n'))
    }
  }
}

/** Replays stored events as an SSE stream, one event per pull. */
export function replayEvents(events: readonly string[]): ReadableStream<Uint8Array> {
  let next = 0
  return new ReadableStream<Uint8Array>(
    {
      pull(controller) {
        if (next < events.length) controller.enqueue(encoder.encode(encodeEvent(events[next++])))
        else controller.close()
      },
    },
    { highWaterMark: 0 },
  )
}

/** What the store holds under a key: a JSON body, or the `data:` payloads of a complete stream. */
export type CacheEntry = { kind: 'json'; body: string } | { kind: 'sse'; events: string[] }

/**
 * Stored as text with a one-line header: a JSON body as it is (no second layer of escaping),
 * a stream as its SSE text, read back with the same parser.
 */
const JSON_HEADER = 'sy1 json\n'
const SSE_HEADER = 'sy1 sse\n'

export function encodeEntry(entry: CacheEntry): string {
  return entry.kind === 'json' ? JSON_HEADER + entry.body : SSE_HEADER + entry.events.map(encodeEvent).join('')
}

/** The entry, or null for anything this version did not write (or a stream without [DONE]). */
export function decodeEntry(stored: string): CacheEntry | null {
  if (stored.startsWith(JSON_HEADER)) return { kind: 'json', body: stored.slice(JSON_HEADER.length) }
  if (!stored.startsWith(SSE_HEADER)) return null
  const events: string[] = []
  createEventParser((data) => events.push(data))(stored.slice(SSE_HEADER.length))
  return events.at(-1) === '[DONE]' ? { kind: 'sse', events } : null
}
