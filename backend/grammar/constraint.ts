import type { GrammarMatcher } from '@mlc-ai/web-xgrammar'
import type { TokenConstraint } from '../scheduler/types.ts'

/** An xgrammar matcher as the scheduler's per-sequence token constraint. */
export class MatcherConstraint implements TokenConstraint {
  private readonly matcher: GrammarMatcher
  private disposed = false

  constructor(matcher: GrammarMatcher) {
    this.matcher = matcher
  }

  nextTokenMask(): Promise<Int32Array> {
    return this.matcher.getNextTokenBitmask()
  }

  accept(token: number): boolean {
    return this.matcher.acceptToken(token)
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
