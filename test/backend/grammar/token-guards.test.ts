import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { controlTokenMask } from '../../../backend/grammar/control-tokens.ts'
import { Utf8ByteGuard } from '../../../backend/grammar/utf8-guard.ts'
import { SequenceSampler } from '../../../backend/sampling/sampler.ts'
import { maskLogits } from '../../../backend/sampling/token-mask.ts'

const maskOf = (size: number, allowed: number[]) => {
  const mask = new Int32Array(Math.ceil(size / 32))
  for (const id of allowed) mask[id >> 5] |= 1 << (id & 31)
  return mask
}
const allowedIn = (mask: Int32Array, size: number) =>
  Array.from({ length: size }, (_, id) => id).filter((id) => ((mask[id >> 5] >>> (id & 31)) & 1) === 1)

describe('token masks', () => {
  test('maskLogits keeps exactly the allowed ids, across word boundaries and past the mask', () => {
    const logits = new Float32Array(70).fill(1)
    const allowed = [0, 31, 32, 63, 64]
    assert.equal(maskLogits(logits, maskOf(64, allowed.slice(0, 4))), 4)
    assert.deepEqual(
      [...logits.keys()].filter((i) => logits[i] === 1),
      [0, 31, 32, 63],
    )
  })

  test('the sampler applies the mask before penalties and filters: greedy takes the best allowed token', () => {
    const sampler = new SequenceSampler(
      {
        temperature: 0,
        topK: 1,
        topP: 1,
        minP: 0,
        repetitionPenalty: 1,
        presencePenalty: 0,
        frequencyPenalty: 0,
        seed: 1,
        logprobs: -1,
      },
      [],
    )
    const logits = Float32Array.from([5, 4, 3, 2])
    assert.equal(sampler.sample(logits.slice(), maskOf(4, [2, 3])).token, 2)
    const hot = new SequenceSampler(
      {
        temperature: 1.5,
        topK: 1,
        topP: 0.5,
        minP: 0,
        repetitionPenalty: 1,
        presencePenalty: 0,
        frequencyPenalty: 0,
        seed: 1,
        logprobs: -1,
      },
      [],
    )
    for (let i = 0; i < 20; i++) assert.equal(hot.sample(logits.slice(), maskOf(4, [3])).token, 3)
    assert.throws(() => sampler.sample(logits.slice(), maskOf(4, [])), /allows no next token/)
  })
})

describe('xgrammar gap guards', () => {
  // Byte tokens <0x00>..<0xFF> at ids 3..258, as in SentencePiece byte-fallback vocabularies.
  const tokens = [
    '<unk>',
    '<s>',
    '</s>',
    ...Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`),
    'a',
    '\u2581b',
    'x\u0002',
  ]
  const id = (byte: number) => 3 + byte
  const everything = () =>
    maskOf(
      tokens.length,
      tokens.map((_, i) => i),
    )

  test('UTF-8: no lone continuation or invalid lead byte; inside a character only its allowed continuation bytes', () => {
    const guard = Utf8ByteGuard.of(tokens)!
    const state = Utf8ByteGuard.start()
    let mask = everything()
    guard.restrict(mask, state)
    let allowed = allowedIn(mask, tokens.length)
    assert.ok(!allowed.includes(id(0x80)) && !allowed.includes(id(0xc0)) && !allowed.includes(id(0xff)))
    assert.ok(allowed.includes(id(0x41)) && allowed.includes(id(0xe2)) && allowed.includes(259))
    guard.advance(id(0xf0), state)
    mask = everything()
    guard.restrict(mask, state)
    allowed = allowedIn(mask, tokens.length)
    // After F0 the next byte is 90..BF (no overlong form), and nothing else.
    assert.deepEqual(
      allowed,
      Array.from({ length: 0x30 }, (_, i) => id(0x90 + i)),
    )
    guard.advance(id(0x90), state)
    guard.advance(id(0x80), state)
    guard.advance(id(0x80), state)
    mask = everything()
    guard.restrict(mask, state)
    assert.ok(allowedIn(mask, tokens.length).includes(259), 'the character is complete')
  })

  test('control characters: byte tokens and tokens containing them, not \\n or \\r', () => {
    const mask = controlTokenMask({
      tokens,
      vocabType: 'byte_fallback',
      prependSpace: true,
      vocabSize: tokens.length,
      stopTokenIds: [2],
    })
    const control = allowedIn(mask, tokens.length)
    assert.ok(
      control.includes(id(0x00)) && control.includes(id(0x1f)) && control.includes(id(0x09)) && control.includes(261),
    )
    assert.ok(
      !control.includes(id(0x0a)) &&
        !control.includes(id(0x0d)) &&
        !control.includes(id(0x20)) &&
        !control.includes(259),
    )
    const byteLevel = controlTokenMask({
      tokens: ['a', '\u0102', '\u010a', 'Ġb'],
      vocabType: 'byte_level',
      prependSpace: false,
      vocabSize: 4,
      stopTokenIds: [],
    })
    assert.deepEqual(allowedIn(byteLevel, 4), [1])
  })
})
