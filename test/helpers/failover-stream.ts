/**
 * Reads a gateway stream and kills the node serving it (named by `x-switchyard-backend`) right
 * after the first chunk, so the rest must come from a continuation elsewhere. Returns the
 * serving node and the events' `data:` payloads.
 */
export async function readStreamKillingItsNode(
  response: Response,
  kill: (node: string) => void,
): Promise<{ serving: string; events: string[] }> {
  const serving = response.headers.get('x-switchyard-backend')!
  const reader = response.body!.getReader()
  const decoder = new TextDecoder()
  let raw = decoder.decode((await reader.read()).value, { stream: true })
  kill(serving)
  for (let r = await reader.read(); !r.done; r = await reader.read()) raw += decoder.decode(r.value, { stream: true })
  return {
    serving,
    events: raw
      .split('\n\n')
      .filter(Boolean)
      .map((e) => e.slice(6)),
  }
}
