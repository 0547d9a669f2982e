/**
 * A server that could not start listening, said in one line: which port, and which variable
 * chooses it. The Node entries print `message` and exit with code 2 (a configuration problem).
 */
export class ListenError extends Error {
  constructor(
    message: string,
    readonly port: number,
    readonly variable: string,
  ) {
    super(message)
  }
}

export function listenError(error: unknown, port: number, variable: string): Error {
  const code = (error as { code?: string })?.code
  if (code === 'EADDRINUSE')
    return new ListenError(
      `port ${port} is already in use; stop what holds it or set ${variable} to another port`,
      port,
      variable,
    )
  if (code === 'EACCES')
    return new ListenError(
      `no permission to listen on port ${port}; set ${variable} to a port above 1023`,
      port,
      variable,
    )
  if (code === 'EADDRNOTAVAIL')
    return new ListenError(`cannot listen on port ${port}: the HOST address is not on this machine`, port, variable)
  return error instanceof Error ? error : new Error(String(error))
}
