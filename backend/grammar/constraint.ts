import type { GrammarMatcher } from '@mlc-ai/web-xgrammar'
import type { TokenConstraint } from '../scheduler/types.ts'
import { Utf8ByteGuard } from './utf8-guard.ts'

/** An xgrammar matcher as the scheduler's per-sequence token constraint. */
export class MatcherConstraint implements TokenConstraint {
  private readonly matcher: GrammarMatcher
  private readonly utf8: Utf8ByteGuard | undefined
  private readonly utf8State = Utf8ByteGuard.start()
  /** Tokens never allowed whatever the grammar says (see control-tokens.ts). */
  private readonly forbidden: Int32Array | undefined
  private disposed = false

  constructor(matcher: GrammarMatcher, guards: { utf8?: Utf8ByteGuard; forbidden?: Int32Array } = {}) {
    this.matcher = matcher
    this.utf8 = guards.utf8
    this.forbidden = guards.forbidden
  }

  async nextTokenMask(): Promise<Int32Array> {
    const mask = await this.matcher.getNextTokenBitmask()
    this.utf8?.restrict(mask, this.utf8State)
    const forbidden = this.forbidden
    if (forbidden) for (let w = Math.min(mask.length, forbidden.length) - 1; w >= 0; w--) mask[w] &= ~forbidden[w]
    return mask
  }

  accept(token: number): boolean {
    if (!this.matcher.acceptToken(token)) return false
    this.utf8?.advance(token, this.utf8State)
    return true
  }

  isTerminated(): boolean {
    return this.matcher.isTerminated()
  }

  dispose(): void {
    if (this.disposed) return
    this.disposed = true
    this.matcher.dispose()
  }
}
