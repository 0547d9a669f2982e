import { Engine } from '../../backend/engine/engine.ts'
import type { ServedModel } from '../../backend/engine/text-generation.ts'
import { grammarVocabulary } from '../../backend/grammar/vocabulary.ts'
import { loadModelFolder } from '../../backend/model/folder.ts'
import { TextTokenizer } from '../../backend/model/tokenizer.ts'

/** A model folder served in-process by a real engine worker (grammars enabled), as backend/node.ts does. */
export async function startServedModel(
  dir: string,
  options: { maxBatchSize?: number; grammarCacheSize?: number } = {},
): Promise<ServedModel> {
  const folder = loadModelFolder(dir)
  const tokenizer = new TextTokenizer(folder.tokenizerJson, folder.tokenizerConfig)
  const engine = await Engine.start({
    onnxPath: folder.onnxPath,
    execution: { device: 'cpu', cudaDeviceId: 0, cpuThreads: 1, graphOptimization: 'all' },
    scheduler: {
      maxBatchSize: options.maxBatchSize ?? 64,
      maxTokensInFlight: 1 << 22,
      maxPrefillTokens: 1 << 16,
      contextLength: folder.contextLength,
    },
    grammar: {
      vocabulary: grammarVocabulary(folder.tokenizerJson, 0, folder.eosTokenIds),
      cacheSize: options.grammarCacheSize ?? 64,
    },
    stallTimeoutMs: 60_000,
  })
  return { id: folder.id, folder, tokenizer, engine, created: 0 }
}
