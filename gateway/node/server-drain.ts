import type { IncomingMessage, ServerResponse } from 'node:http'
import type { Http2Session } from 'node:http2'
import { Server as NetServer, type Socket } from 'node:net'
import type { ServerType } from '@hono/node-server'

/**
 * A keep-alive connection idle at least this long is closed once draining. A client in a loop
 * sends its next request on the connection right after the previous answer (well inside this),
 * so that request is received and answered (with `Connection: close`) instead of racing a
 * close: closing the instant a connection goes idle is what made reusing clients see resets.
 */
const IDLE_GRACE_MS = 500
const SWEEP_INTERVAL_MS = 50

interface ConnectionState {
  /** Requests received on it and not yet answered. */
  active: number
  idleSince: number
}

export interface ServerDrain {
  /**
   * Stops accepting connections and drains the open ones: requests in flight and those still
   * arriving on open connections are answered with `Connection: close` (HTTP/2 sessions get a
   * GOAWAY), idle connections are closed. Resolves once every connection is gone, or after
   * `timeoutMs` (then the ones left are destroyed) with how many were cut.
   */
  drain(timeoutMs: number): Promise<{ cutConnections: number }>
}

/**
 * Follows a Node HTTP(S) server's connections and requests so it can be shut down without
 * failing a client that reuses a keep-alive connection. Node's own `server.close()` closes
 * idle connections at once (a reused one may already carry a request the client has sent) and
 * keeps answering on the others with `Connection: keep-alive`.
 */
export function trackServerConnections(server: ServerType): ServerDrain {
  const connections = new Map<Socket, ConnectionState>()
  const sessions = new Set<Http2Session>()
  const pending = new Set<ServerResponse>()
  let draining = false

  const follow = (socket: Socket) => {
    // HTTP/2 connections are drained through their session.
    if ((socket as Socket & { alpnProtocol?: string | false }).alpnProtocol === 'h2') return
    connections.set(socket, { active: 0, idleSince: Date.now() })
    socket.once('close', () => connections.delete(socket))
  }
  const tls = 'setSecureContext' in server
  server.on(tls ? 'secureConnection' : 'connection', follow)
  server.on('session', (session: Http2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
    if (draining) session.close()
  })
  // Runs before the app's listener, so the header is set before the app writes its answer.
  server.prependListener('request', (request: IncomingMessage, response: ServerResponse) => {
    if (request.httpVersionMajor !== 1) return
    const state = connections.get(request.socket)
    if (state) state.active++
    pending.add(response)
    if (draining) response.setHeader('connection', 'close')
    response.once('close', () => {
      pending.delete(response)
      if (!state) return
      state.active--
      state.idleSince = Date.now()
    })
  })

  const closeIdle = (now: number) => {
    for (const [socket, state] of connections) {
      if (state.active === 0 && now - state.idleSince >= IDLE_GRACE_MS) socket.destroy()
    }
  }

  return {
    async drain(timeoutMs) {
      draining = true
      for (const response of pending) if (!response.headersSent) response.setHeader('connection', 'close')
      for (const session of sessions) session.close()
      // net.Server's close stops listening and waits for the connections; http.Server's would
      // also close the idle ones at once.
      const closed = new Promise<void>((resolve) => NetServer.prototype.close.call(server, () => resolve()))
      const sweep = setInterval(() => closeIdle(Date.now()), SWEEP_INTERVAL_MS)
      let timer: NodeJS.Timeout | undefined
      const timedOut = new Promise<true>((resolve) => (timer = setTimeout(() => resolve(true), timeoutMs)))
      const late = await Promise.race([closed.then(() => false), timedOut])
      clearInterval(sweep)
      clearTimeout(timer)
      const cutConnections = late ? connections.size + sessions.size : 0
      if (late) {
        for (const socket of connections.keys()) socket.destroy()
        for (const session of sessions) session.destroy()
      }
      return { cutConnections }
    },
  }
}
