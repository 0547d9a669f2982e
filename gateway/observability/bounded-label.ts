/**
 * A label whose values come from callers (key ids, JWT subjects) and so could grow without
 * bound: the first `max` distinct values keep their own series, every later one is reported as
 * `overflow`. First come rather than top-N by traffic: that needs no per-value counting, and a
 * value never moves between series (a counter's history stays in one place). Absent `max` =
 * every value passes.
 */
export function boundedLabel(max: number | undefined, overflow: string): (value: string) => string {
  if (max === undefined) return (value) => value
  const seen = new Set<string>()
  return (value) => {
    if (seen.has(value)) return value
    if (seen.size >= max) return overflow
    seen.add(value)
    return value
  }
}
