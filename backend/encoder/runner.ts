import * as ort from 'onnxruntime-node'
import { type ExecutionOptions, createSession } from '../model/session.ts'
import type { Pooling } from './folder.ts'
import { normalizeL2, poolRow, softmax } from './pooling.ts'

/** What a forward pass gives back per input: a pooled embedding, or class probabilities. */
export type EncoderOutput = 'embedding' | 'probabilities'

export interface EncoderRunnerOptions {
  pooling: Pooling
  normalize: boolean
  padTokenId: number
}

/**
 * One onnxruntime session of an encoder. Runs a batch of token-id rows, right-padded to the
 * longest, and returns one vector per row: pooled (and normalised) token embeddings, an
 * already-pooled `sentence_embedding`, or softmax probabilities of a classifier's `logits`.
 */
export class EncoderRunner {
  readonly output: EncoderOutput
  private readonly outputName: string
  private readonly hasTokenTypes: boolean

  private constructor(
    private readonly session: ort.InferenceSession,
    readonly device: 'cpu' | 'cuda',
    readonly parameters: number,
    private readonly options: EncoderRunnerOptions,
  ) {
    const outputs = session.outputNames
    this.outputName = ['logits', 'sentence_embedding', 'last_hidden_state', 'token_embeddings'].find((n) => outputs.includes(n)) ?? outputs[0]
    this.output = this.outputName === 'logits' ? 'probabilities' : 'embedding'
    this.hasTokenTypes = session.inputNames.includes('token_type_ids')
    for (const name of session.inputNames) {
      if (!['input_ids', 'attention_mask', 'token_type_ids'].includes(name)) throw new Error(`unsupported encoder input "${name}" (expected input_ids, attention_mask, token_type_ids)`)
    }
  }

  static async load(onnxPath: string, execution: ExecutionOptions, options: EncoderRunnerOptions, log: (message: string) => void): Promise<EncoderRunner> {
    const { session, device, parameters } = await createSession(onnxPath, execution, log)
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
    if (result.dims.length === 3) {
      const dim = Number(result.dims[2])
      return rows.map((row, b) => this.finish(poolRow(data, b * seq * dim, row.length, dim, this.options.pooling)))
    }
    const width = Number(result.dims[1])
    return rows.map((_, b) => {
      const row = data.slice(b * width, (b + 1) * width)
      return this.output === 'probabilities' ? softmax(row) : this.finish(row)
    })
  }

  async dispose(): Promise<void> {
    await this.session.release()
  }

  private finish(vector: Float32Array): Float32Array {
    return this.options.normalize ? normalizeL2(vector) : vector
  }
}
