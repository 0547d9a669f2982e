// Flag parsing shared by the builder CLIs (cli.ts for decoders, encoder-cli.ts for encoders).

export function parseInteger(flag: string, text: string): number {
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < 0)
    throw new Error(`--${flag} must be a non-negative integer, got "${text}"`)
  return value
}

/** The size overrides given on the command line: `flags` maps each flag to its size field. */
export function sizeFromFlags<Size>(flags: Record<string, keyof Size>, values: Record<string, unknown>): Partial<Size> {
  const size: Partial<Size> = {}
  for (const [flag, key] of Object.entries(flags)) {
    const text = values[flag]
    if (typeof text === 'string') size[key] = parseInteger(flag, text) as Size[keyof Size]
  }
  return size
}
