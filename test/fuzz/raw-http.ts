import { connect } from 'node:net'

/** What came back on a raw TCP connection: every response's status, the raw text, whether the server closed. */
export interface RawExchange {
  statuses: number[]
  text: string
  /** The server closed (or reset) the connection. */
  closed: boolean
  /** Neither an answer nor a close within the wait: the server is holding the connection. */
  timedOut: boolean
  ms: number
}

/**
 * Writes `request` in one piece (bytes as given, so headers can hold anything) and collects the
 * answer until the server closes the connection, a short grace after the last bytes of an
 * answer (a kept-alive connection stays open), or `waitMs` without any answer.
 */
export function rawExchange(
  port: number,
  request: string | Uint8Array | (string | Uint8Array)[],
  options: { waitMs?: number; host?: string; localAddress?: string } = {},
): Promise<RawExchange> {
  const parts = Array.isArray(request) ? request : [request]
  return new Promise((resolve) => {
    const started = performance.now()
    const socket = connect({ port, host: options.host ?? '127.0.0.1', localAddress: options.localAddress })
    const chunks: Buffer[] = []
    let settled = false
    const finish = (closed: boolean, timedOut: boolean) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      socket.destroy()
      const text = Buffer.concat(chunks).toString('latin1')
      const statuses = [...text.matchAll(/(?:^|\r\n)HTTP\/1\.[01] (\d{3}) /g)].map((m) => Number(m[1]))
      resolve({ statuses, text, closed, timedOut, ms: Math.round(performance.now() - started) })
    }
    let timer = setTimeout(() => finish(false, true), options.waitMs ?? 5000)
    socket.on('data', (d) => {
      chunks.push(d)
      // A server that closes after answering does so at once; 300 ms of quiet means it keeps the connection.
      clearTimeout(timer)
      timer = setTimeout(() => finish(false, false), 300)
    })
    socket.on('close', () => finish(true, false))
    socket.on('error', () => {})
    // One write: a server that refuses the start of a request closes at once, and bytes written
    // after that would make it reset the connection, which can discard its answer.
    socket.on('connect', () =>
      socket.write(Buffer.concat(parts.map((part) => (typeof part === 'string' ? Buffer.from(part, 'latin1') : part)))),
    )
  })
}

/** `name: value` header lines from raw bytes. */
export function headerBlock(headers: [string | Uint8Array, string | Uint8Array][]): Uint8Array {
  const out: number[] = []
  const push = (v: string | Uint8Array) => out.push(...(typeof v === 'string' ? Buffer.from(v, 'latin1') : v))
  for (const [name, value] of headers) {
    push(name)
    push(': ')
    push(value)
    push('\r\n')
  }
  return Uint8Array.from(out)
}
