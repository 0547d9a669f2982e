import * as ort from 'onnxruntime-node'
import { createSession, type ExecutionOptions } from '../model/session.ts'
import type { EncoderFolder, Pooling } from './folder.ts'
import { normalizeL2, poolRow, softmax } from './pooling.ts'

/** What a forward pass gives back per input: a pooled embedding, or class probabilities. */
export type EncoderOutput = 'embedding' | 'probabilities'

export interface EncoderRunnerOptions {
  /** What the model is served for: pooled embeddings, or class probabilities (needs a `logits` output). */
  output: EncoderOutput
  pooling: Pooling
  normalize: boolean
  padTokenId: number
}

/** The runner options a model folder calls for. */
export function runnerOptionsOf(
  folder: Pick<EncoderFolder, 'task' | 'pooling' | 'normalize' | 'padTokenId'>,
): EncoderRunnerOptions {
  return {
    output: folder.task === 'text-classification' ? 'probabilities' : 'embedding',
    pooling: folder.pooling,
    normalize: folder.normalize,
    padTokenId: folder.padTokenId,
  }
}

/**
 * One onnxruntime session of an encoder. Runs a batch of token-id rows, right-padded to the
 * longest, and returns one vector per row: pooled (and normalised) token embeddings, an
 * already-pooled `sentence_embedding`, or softmax probabilities of a classifier's `logits`.
 */
export class EncoderRunner {
  private readonly outputName: string
  private readonly hasTokenTypes: boolean

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly device: 'cpu' | 'cuda',
    readonly parameters: number,
    private readonly options: EncoderRunnerOptions,
  ) {
    const wanted =
      options.output === 'probabilities' ? ['logits'] : ['sentence_embedding', 'last_hidden_state', 'token_embeddings']
    const found = wanted.find((n) => session.outputNames.includes(n))
    if (!found)
      throw new Error(`the graph has no ${wanted.join(' or ')} output (it has ${session.outputNames.join(', ')})`)
    this.outputName = found
    this.hasTokenTypes = session.inputNames.includes('token_type_ids')
    for (const name of session.inputNames) {
      if (!['input_ids', 'attention_mask', 'token_type_ids'].includes(name))
        throw new Error(`unsupported encoder input "${name}" (expected input_ids, attention_mask, token_type_ids)`)
    }
  }

  static async load(
    onnxPath: string,
    execution: ExecutionOptions,
    options: EncoderRunnerOptions,
    log: (message: string) => void,
  ): Promise<EncoderRunner> {
    const { session, device, parameters } = await createSession(onnxPath, execution, log, undefined, 'encoder')
    return new EncoderRunner(session, device, parameters, options)
  }

  async run(rows: number[][]): Promise<Float32Array[]> {
    const batch = rows.length
    const seq = Math.max(...rows.map((r) => r.length))
    const ids = new BigInt64Array(batch * seq).fill(BigInt(this.options.padTokenId))
    const mask = new BigInt64Array(batch * seq)
    rows.forEach((row, b) => {
      for (let t = 0; t < row.length; t++) {
        ids[b * seq + t] = BigInt(row[t])
        mask[b * seq + t] = 1n
      }
    })
    const feeds: Record<string, ort.Tensor> = {
      input_ids: new ort.Tensor('int64', ids, [batch, seq]),
      attention_mask: new ort.Tensor('int64', mask, [batch, seq]),
    }
    if (this.hasTokenTypes) feeds.token_type_ids = new ort.Tensor('int64', new BigInt64Array(batch * seq), [batch, seq])
    const result = (await this.session.run(feeds, [this.outputName]))[this.outputName]
    const data = result.data as Float32Array
    if (result.dims.length === 3 && this.options.output === 'embedding') {
      const dim = Number(result.dims[2])
      return rows.map((row, b) => this.finish(poolRow(data, b * seq * dim, row.length, dim, this.options.pooling)))
    }
    const width = Number(result.dims[1])
    return rows.map((_, b) => {
      const row = data.slice(b * width, (b + 1) * width)
      return this.options.output === 'probabilities' ? softmax(row) : this.finish(row)
    })
  }

  async dispose(): Promise<void> {
    await this.session.release()
  }

  private finish(vector: Float32Array): Float32Array {
    return this.options.normalize ? normalizeL2(vector) : vector
  }
}
