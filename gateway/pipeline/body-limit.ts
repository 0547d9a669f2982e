import type { MiddlewareHandler } from 'hono'
import { bodyLimit as streamingBodyLimit } from 'hono/body-limit'
import { errorResponse } from './errors.ts'

/**
 * 413 for bodies over `maxBytes`. A declared Content-Length is checked without touching the
 * body (touching `c.req.raw.body` makes @hono/node-server build a Web stream for every
 * request); chunked bodies are counted as they stream in, by Hono's own middleware.
 */
export function bodyLimit(options: { maxBytes: number }): MiddlewareHandler {
  // The unread rest of an oversized body would poison a kept-alive connection: close it.
  const tooLarge = () =>
    errorResponse(413, `The request body is larger than ${options.maxBytes} bytes`, 'request_too_large', {
      connection: 'close',
    })
  const streaming = streamingBodyLimit({ maxSize: options.maxBytes, onError: tooLarge })
  return async (c, next) => {
    const length = c.req.header('content-length')
    if (length === undefined || c.req.header('transfer-encoding') !== undefined) {
      let reading = true
      try {
        return await streaming(c, () => {
          reading = false
          return next()
        })
      } catch (error) {
        // A chunked body that breaks off or is malformed fails while it is read: the client's doing, not a 5xx.
        if (reading)
          return errorResponse(400, 'The request body could not be read', 'invalid_body', { connection: 'close' })
        throw error
      }
    }
    if (!/^\d+$/.test(length))
      return errorResponse(400, 'Content-Length is not a number', 'invalid_content_length', { connection: 'close' })
    if (Number(length) > options.maxBytes) return tooLarge()
    await next()
  }
}
