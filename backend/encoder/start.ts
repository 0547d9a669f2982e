import { errorMessage } from '../../lib/error-message.ts'
import type { BackendConfig } from '../config.ts'
import { EncoderEngine, type EncoderEvents } from './encoder-engine.ts'
import { loadEncoderFolder } from './folder.ts'
import { runnerOptionsOf } from './runner.ts'
import { EncoderTokenizer, type ServedEncoder } from './served.ts'

/** Loads an encoder folder and starts its worker (session, warm-up, dynamic batcher). */
export async function startEncoder(
  dir: string,
  id: string | undefined,
  config: BackendConfig,
  eventsFor: (id: string) => EncoderEvents,
): Promise<ServedEncoder> {
  const folder = loadEncoderFolder(dir, { id, variant: config.MODEL_VARIANT })
  const tokenizer = new EncoderTokenizer(folder)
  const engine = await EncoderEngine.start(
    {
      onnxPath: folder.onnxPath,
      execution: {
        device: config.DEVICE,
        cudaDeviceId: config.CUDA_DEVICE_ID,
        cpuThreads: config.CPU_THREADS,
        graphOptimization: config.GRAPH_OPTIMIZATION,
      },
      runner: runnerOptionsOf(folder),
      batching: {
        windowMs: config.ENCODER_BATCH_WINDOW_MS,
        maxBatchTokens: config.ENCODER_MAX_BATCH_TOKENS,
        maxBatchSize: config.ENCODER_MAX_BATCH_SIZE,
      },
      stallTimeoutMs: config.ENGINE_STALL_TIMEOUT_MS,
    },
    eventsFor(folder.id),
  ).catch((error) => {
    throw new Error(`model ${folder.id} (${folder.onnxPath}): ${errorMessage(error)}`)
  })
  return { id: folder.id, folder, tokenizer, engine, created: Math.floor(Date.now() / 1000) }
}
