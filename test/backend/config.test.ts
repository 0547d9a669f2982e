import assert from 'node:assert/strict'
import { test } from 'node:test'
import { loadBackendConfig } from '../../backend/config.ts'

// Captured from backend/config.ts before its descriptions were added: the defaults must not change.
const DEFAULTS = {
  MODEL_VARIANT: 'auto',
  HOST: '127.0.0.1',
  PORT: 8000,
  DEVICE: 'auto',
  CUDA_DEVICE_ID: 0,
  CPU_THREADS: 0,
  GRAPH_OPTIMIZATION: 'all',
  MAX_BATCH_SIZE: 32,
  MAX_TOKENS_IN_FLIGHT: 262144,
  MAX_PREFILL_TOKENS: 2048,
  MAX_QUEUE: 256,
  REQUEST_TIMEOUT_MS: 300000,
  DRAIN_TIMEOUT_MS: 30000,
  ENGINE_STALL_TIMEOUT_MS: 60000,
  MAX_BODY_BYTES: 1048576,
  RETRY_AFTER_SECONDS: 1,
  GRAMMAR_CACHE_SIZE: 64,
  MAX_GRAMMAR_CHARS: 65536,
  ENCODER_BATCH_WINDOW_MS: 0,
  ENCODER_MAX_BATCH_TOKENS: 2048,
  ENCODER_MAX_BATCH_SIZE: 64,
  ENCODER_MAX_QUEUE: 4096,
  LOG_LEVEL: 'info',
  LOG_FORMAT: 'auto',
  GATEWAY_TOKEN_AUDIENCE: 'switchyard-backend',
}

/** The parsed config without the keys of unset optional variables. */
const set = (config: object) => Object.fromEntries(Object.entries(config).filter(([, v]) => v !== undefined))

test('an empty environment gives the documented defaults', () => {
  assert.deepEqual(set(loadBackendConfig({})), DEFAULTS)
})

test('a partial environment keeps the other defaults; empty strings count as unset', () => {
  assert.deepEqual(set(loadBackendConfig({ PORT: '9000', MODEL_DIR: 'models/x', DEVICE: 'cpu', MAX_QUEUE: '' })), {
    ...DEFAULTS,
    PORT: 9000,
    MODEL_DIR: 'models/x',
    DEVICE: 'cpu',
  })
})

test('a bad value names the variable', () => {
  assert.throws(() => loadBackendConfig({ PORT: 'x' }), /PORT/)
})
