/**
 * The client's address. X-Forwarded-For is believed only when the connecting peer is a
 * trusted proxy; then the right-most address that is not itself a trusted proxy is the
 * client (entries further left could have been written by the client).
 */
export function clientIp(
  peer: string | undefined,
  forwardedFor: string | undefined,
  trustedProxies: ReadonlySet<string>,
): string {
  const direct = normalize(peer ?? '') || 'unknown'
  if (!forwardedFor || !trustedProxies.has(direct)) return direct
  const hops = forwardedFor
    .split(',')
    .map((h) => normalize(h.trim()))
    .filter(Boolean)
  for (let i = hops.length - 1; i >= 0; i--) if (!trustedProxies.has(hops[i])) return hops[i]
  return hops[0] ?? direct
}

function normalize(address: string): string {
  const a = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address
  // Reject anything that is not plausibly an IP (a client must not inject arbitrary limiter keys).
  return /^[0-9a-fA-F:.]{2,45}$/.test(a) ? a : ''
}
