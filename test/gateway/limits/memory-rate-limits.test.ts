import { describe } from 'node:test'
import { createMemoryRateLimits } from '../../../gateway/limits/rate-limit-store.ts'
import { rateLimitContract } from './contract.ts'

describe('createMemoryRateLimits', () => {
  const store = createMemoryRateLimits()
  rateLimitContract(() => [store])
})
