import assert from 'node:assert/strict'
import { test } from 'node:test'
import { limitKey } from '../../../gateway/limits/middleware.ts'
import type { Principal } from '../../../gateway/types.ts'

test('limit counters are named per caller: equal ids from different sources never share them', () => {
  const named = (id: string, via: Principal['via'], source?: Principal['source']) =>
    limitKey({ id, tenant: 't', limits: {}, via, source })
  const keys = [
    named('lim2', 'api_key', 'config'),
    named('lim2', 'api_key', 'store'),
    named('lim2', 'jwt'),
    named('anonymous', 'api_key'),
    named('anonymous', 'api_key', 'config'),
    named('config:lim2', 'api_key', 'store'),
  ]
  assert.equal(new Set(keys).size, keys.length, JSON.stringify(keys))
  assert.equal(named('refund', 'api_key', 'config'), 'api_key:config:refund')
})
