import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import { IncrementalDecoder } from '../../../backend/model/incremental-decoder.ts'
import { TextTokenizer } from '../../../backend/model/tokenizer.ts'
import { StopMatcher } from '../../../backend/sampling/stop-matcher.ts'
import { STORIES_DIR } from '../../helpers/paths.ts'
import { loadRealTokenizer, TOKENIZER_FAMILIES } from '../../helpers/real-tokenizers.ts'

// Each tokenizer is loaded once for the whole file.
const tokenizerOf = loadRealTokenizer

/** Emoji (ZWJ sequences, flags, skin tones), rare and astral CJK, Hangul, combining marks. */
const HARD_TEXT = [
  'Family 👩‍👩‍👧‍👦, party 🎉, flag 🇯🇵, thumbs 👍🏽.',
  '日本語のテキスト。你好，世界！龘靐齉 𠜎𠜱𡃁 한국어 텍스트',
  'e\u0301 a\u0308 क्ष Z\u0351\u036B\u0343 n\u0303o\u0302',
].join(' ')

interface Streamed {
  deltas: string[]
  text: string
}

function stream(tokenizer: TextTokenizer, promptIds: number[], ids: number[]): Streamed {
  const decoder = new IncrementalDecoder(tokenizer, promptIds)
  const deltas = ids.map((id) => decoder.push(id))
  deltas.push(decoder.flush())
  return { deltas, text: deltas.join('') }
}

/** Tokens whose own bytes are not whole characters: decoded alone they read as U+FFFD. */
const splitTokens = (tokenizer: TextTokenizer, ids: number[]) =>
  ids.filter((id) => tokenizer.decode([id]).includes('\uFFFD')).length

describe('incremental detokenization with real tokenizers', () => {
  for (const family of TOKENIZER_FAMILIES) {
    test(`${family}: characters split across tokens never stream as U+FFFD; deltas add up to the full decode`, () => {
      const tokenizer = tokenizerOf(family)
      const ids = tokenizer.encode(HARD_TEXT, false)
      assert.ok(
        splitTokens(tokenizer, ids) >= 3,
        `${family} must split some characters across tokens for this test to mean anything`,
      )
      const full = tokenizer.decode(ids)
      assert.ok(!full.includes('\uFFFD'))
      for (const promptIds of [
        [],
        tokenizer.encode('Say it:', true),
        tokenizer.encodeChat([{ role: 'user', content: 'Say it' }]),
      ]) {
        const { deltas, text } = stream(tokenizer, promptIds, ids)
        assert.equal(text, full)
        assert.ok(
          deltas.every((d) => !d.includes('\uFFFD')),
          JSON.stringify(deltas.filter((d) => d.includes('\uFFFD'))),
        )
      }
    })

    test(`${family}: random text and random token ids stream exactly`, () => {
      const tokenizer = tokenizerOf(family)
      fc.assert(
        fc.property(
          fc.string({
            unit: fc.oneof(
              fc.constantFrom(...'👩‍👧🎉🇯🇵🏽龘𠜎한é\u0301\u0308 a.'),
              fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }),
            ),
            maxLength: 24,
          }),
          (text) => {
            const ids = tokenizer.encode(text, false)
            const streamed = stream(tokenizer, [], ids)
            assert.equal(streamed.text, tokenizer.decode(ids))
            // Valid text never needs U+FFFD, whatever the split.
            if (!text.includes('\uFFFD')) assert.ok(!streamed.text.includes('\uFFFD'))
          },
        ),
        { numRuns: 60, seed: 14 },
      )
      // What a random-weight model does: any ids, invalid byte sequences included. Only the
      // final flush may release an unfinished character.
      const vocab = family === 'gemma3' ? 262145 : family === 'qwen3' ? 151669 : 128256
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: vocab - 1 }), { maxLength: 12 }), (ids) => {
          const streamed = stream(tokenizer, [], ids)
          assert.equal(streamed.text, tokenizer.decode(ids))
          assert.ok(streamed.deltas.slice(0, -1).every((d) => !d.endsWith('\uFFFD')))
        }),
        { numRuns: 60, seed: 14 },
      )
    })

    test(`${family}: stop strings are found across split characters and never emitted in part`, () => {
      const tokenizer = tokenizerOf(family)
      for (const written of ['👍🏽', '𠜎𠜱', '齉', 'o\u0302']) {
        const ids = tokenizer.encode(`Before ${written} after`, false)
        // Qwen's normalizer writes combining sequences in NFC: the stop is looked for as decoded.
        const stop = tokenizer.decode(ids).includes(written) ? written : written.normalize('NFC')
        const decoder = new IncrementalDecoder(tokenizer, [])
        const matcher = new StopMatcher([stop])
        let out = ''
        let stopped = false
        for (const id of ids) {
          const piece = matcher.push(decoder.push(id))
          out += piece.text
          if ((stopped = piece.stopped)) break
        }
        assert.ok(stopped, `${family}: ${stop} found`)
        assert.equal(out, tokenizer.decode(ids).split(stop)[0], `${family}: text before ${stop}`)
        assert.ok(!out.includes('\uFFFD'))
      }
    })
  }

  test('stories260K (Llama 2 SentencePiece: byte fallback, leading space stripped): same guarantees', () => {
    const files = (name: string) => JSON.parse(readFileSync(join(STORIES_DIR, name), 'utf8'))
    const tokenizer = new TextTokenizer(files('tokenizer.json'), files('tokenizer_config.json'))
    const ids = tokenizer.encode(HARD_TEXT, false)
    assert.ok(splitTokens(tokenizer, ids) > 50, 'a 512-token vocabulary spells every non-ASCII character in bytes')
    for (const promptIds of [[], tokenizer.encode('Once upon a time', true)]) {
      const { deltas, text } = stream(tokenizer, promptIds, ids)
      // After a prompt the first token's leading space is real text: the continuation reads
      // as it does in place (the decoder strips one space only at the start of a whole text).
      assert.equal(text, tokenizer.decode([...promptIds, ...ids]).slice(tokenizer.decode(promptIds).length))
      if (promptIds.length > 0) assert.ok(text.startsWith(' Family'))
      assert.ok(!text.includes('\uFFFD') && deltas.every((d) => !d.includes('\uFFFD')))
    }
  })

  test('ids past the tokenizer (a padded embedding) and empty prompts decode as nothing', () => {
    const qwen = tokenizerOf('qwen3')
    assert.equal(qwen.decode([151_700, 151_935]), '')
    const hello = qwen.encode('Hello', false)
    assert.equal(qwen.decode([...hello, 151_900]), 'Hello')
    assert.equal(stream(qwen, [], [151_900, ...hello]).text, 'Hello')
    // Special tokens are skipped, as in a full decode.
    assert.equal(stream(qwen, [], [151_644, ...hello, 151_645]).text, 'Hello')
  })

  test('clean_up_tokenization_spaces is not applied, so streamed text equals the decode (Llama 3 turns it on)', () => {
    const llama = tokenizerOf('llama3')
    const ids = llama.encode("I do n't know , really .", false)
    assert.equal(llama.decode(ids), "I do n't know , really .")
    assert.equal(stream(llama, [], ids).text, llama.decode(ids))
  })
})
