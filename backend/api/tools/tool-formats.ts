import type { GrammarSpec } from '../../grammar/spec.ts'

/** A tool call as the model wrote it: `arguments` is the JSON text of its arguments object. */
export interface ParsedToolCall {
  name: string
  arguments: string
}

export interface FunctionTool {
  name: string
  parameters?: Record<string, unknown> | null
}

/**
 * How one model family writes tool calls. Each format builds the structural tag (xgrammar)
 * that makes a call parse and match its function's schema, and parses calls out of the text.
 */
export interface ToolCallFormat {
  name: 'hermes' | 'llama3_json'
  /** Text that starts a call: what a stream holds back until it knows whether a call follows. */
  trigger: string
  /** Whether the format can carry several calls in one answer. */
  parallel: boolean
  /** Every call in `text`, and the text outside them (null when there is none). */
  parse(text: string): { content: string | null; calls: ParsedToolCall[] }
  /** The xgrammar structural-tag format of one call to `tool`. */
  tag(tool: FunctionTool): { type: 'tag'; begin: string; content: object; end: string }
  separator: string
}

const argumentsSchema = (tool: FunctionTool) => tool.parameters ?? { type: 'object' }

/** Qwen 2.5 / 3, Hermes, and most open models: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`. */
const hermes: ToolCallFormat = {
  name: 'hermes',
  trigger: '<tool_call>',
  parallel: true,
  separator: '\n',
  tag: (tool) => ({
    type: 'tag',
    begin: `<tool_call>\n{"name": ${JSON.stringify(tool.name)}, "arguments": `,
    content: { type: 'json_schema', json_schema: argumentsSchema(tool) },
    end: '}\n</tool_call>',
  }),
  parse(text) {
    const calls: ParsedToolCall[] = []
    const outside: string[] = []
    let rest = text
    while (true) {
      const start = rest.indexOf('<tool_call>')
      const end = start === -1 ? -1 : rest.indexOf('</tool_call>', start)
      const call = end === -1 ? undefined : callOf(rest.slice(start + '<tool_call>'.length, end), 'arguments')
      if (!call) {
        outside.push(rest)
        break
      }
      outside.push(rest.slice(0, start))
      calls.push(call)
      rest = rest.slice(end + '</tool_call>'.length)
    }
    return { content: contentOf(outside.join('')), calls }
  },
}

/** Llama 3.1+ JSON tool calls: the answer is `{"name": ..., "parameters": {...}}` (after an optional <|python_tag|>). */
const llama3Json: ToolCallFormat = {
  name: 'llama3_json',
  trigger: '{"name": ',
  // Llama 3.1's template renders one call per assistant message.
  parallel: false,
  separator: '; ',
  tag: (tool) => ({
    type: 'tag',
    begin: `{"name": ${JSON.stringify(tool.name)}, "parameters": `,
    content: { type: 'json_schema', json_schema: argumentsSchema(tool) },
    end: '}',
  }),
  parse(text) {
    const body = text.replace(/^\s*(<\|python_tag\|>)?/, '')
    const start = body.indexOf('{"name"')
    if (start === -1) return { content: contentOf(text), calls: [] }
    const calls: ParsedToolCall[] = []
    for (const part of body.slice(start).split(/\s*;\s*(?=\{)/)) {
      const call = callOf(part, 'parameters')
      if (!call) return { content: contentOf(text), calls: [] }
      calls.push(call)
    }
    return { content: contentOf(body.slice(0, start)), calls }
  },
}

/**
 * The tool-call format a chat template writes, or undefined when the template does not take
 * `tools` at all. Templates that take tools in another way get the Hermes format, the most
 * widely trained one.
 */
export function toolFormatOf(templateSource: string): ToolCallFormat | undefined {
  if (!/\btools\b/.test(templateSource)) return undefined
  if (templateSource.includes('<tool_call>')) return hermes
  if (templateSource.includes('"parameters"') || templateSource.includes('python_tag')) return llama3Json
  return hermes
}

/**
 * The grammar for `tool_choice`: "required" or a named function force calls (at least one, or
 * exactly one without parallel calls); "auto" lets the model answer in text, and makes any call
 * it starts valid.
 */
export function toolGrammar(
  format: ToolCallFormat,
  tools: FunctionTool[],
  choice: 'auto' | 'required' | { name: string },
  parallel: boolean,
): GrammarSpec {
  const chosen = typeof choice === 'object' ? tools.filter((t) => t.name === choice.name) : tools
  const tags = chosen.map((tool) => format.tag(tool))
  const stopAfterFirst = !(parallel && format.parallel)
  const structure =
    choice === 'auto'
      ? { type: 'triggered_tags', triggers: [format.trigger], tags, stop_after_first: stopAfterFirst }
      : {
          type: 'tags_with_separator',
          tags,
          separator: format.separator,
          at_least_one: true,
          stop_after_first: stopAfterFirst,
        }
  return { type: 'structural_tag', tag: JSON.stringify({ type: 'structural_tag', format: structure }) }
}

function callOf(json: string, argumentsKey: 'arguments' | 'parameters'): ParsedToolCall | undefined {
  try {
    const value = JSON.parse(json)
    const args = value?.[argumentsKey] ?? value?.arguments ?? value?.parameters
    if (typeof value?.name !== 'string' || args === null || typeof args !== 'object' || Array.isArray(args))
      return undefined
    return { name: value.name, arguments: JSON.stringify(args) }
  } catch {
    return undefined
  }
}

const contentOf = (text: string) => (text.trim() === '' ? null : text.trim())
