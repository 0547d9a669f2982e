import { Environment, Interpreter, Template } from '@huggingface/jinja'
import { errorMessage } from '../../lib/error-message.ts'

export interface ChatMessage {
  role: string
  content: string | null
  /** An assistant's tool calls; `arguments` as an object, the form chat templates render. */
  tool_calls?: { id?: string; type: 'function'; function: { name: string; arguments: unknown } }[]
  /** A `tool` message's answer to this call. */
  tool_call_id?: string
  name?: string
}

export interface ChatRenderOptions {
  tools?: unknown[]
  /** Ends the prompt with the assistant's turn header (transformers' default here: true). */
  addGenerationPrompt?: boolean
}

/**
 * A chat template refused the messages: its `raise_exception(...)` (the template's own
 * message) or a rendering failure on them. The API answers 400 invalid_request_error.
 */
export class ChatTemplateError extends Error {}

/** The special-token names transformers passes to templates (`special_tokens_map`). */
const SPECIAL_TOKEN_NAMES = [
  'bos_token',
  'eos_token',
  'unk_token',
  'sep_token',
  'pad_token',
  'cls_token',
  'mask_token',
] as const

/** A token as tokenizer_config.json writes it: a string or an AddedToken `{content}`. */
const tokenString = (value: unknown): string | undefined =>
  typeof value === 'string'
    ? value
    : typeof (value as { content?: unknown } | null)?.content === 'string'
      ? (value as { content: string }).content
      : undefined

/**
 * A model's chat template, rendered as transformers' `apply_chat_template` renders it: the
 * template picked by name when tokenizer_config.json has a list ("tool_use" when tools are
 * given and it exists, else "default"), the special tokens of `special_tokens_map` as
 * variables, `tools`/`documents` passed as none when absent, and the globals
 * `raise_exception` and `strftime_now` (Python's C-locale strftime on the local clock).
 */
export class ChatTemplate {
  private readonly templates: Map<string, Template>
  private readonly variables: Record<string, unknown>
  /** The templates' text, joined (features are read from it: the tool-call format). */
  readonly source: string

  private constructor(templates: Map<string, Template>, variables: Record<string, unknown>, source: string) {
    this.templates = templates
    this.variables = variables
    this.source = source
  }

  /** The folder's template, or null when tokenizer_config.json has none. Throws on a template that does not parse. */
  static fromTokenizerConfig(config: Record<string, unknown>): ChatTemplate | null {
    const source = config.chat_template
    const named: [string, unknown][] = Array.isArray(source)
      ? source.map((t: { name?: unknown; template?: unknown }) => [String(t?.name), t?.template])
      : [['default', source]]
    const templates = new Map<string, Template>()
    for (const [name, text] of named) {
      if (typeof text !== 'string') continue
      try {
        templates.set(name, new Template(text))
      } catch (error) {
        throw new Error(`chat template "${name}" in tokenizer_config.json does not parse: ${errorMessage(error)}`)
      }
    }
    if (templates.size === 0) return null
    // transformers needs "default" among several named templates; refused at load, not per request.
    if (templates.size > 1 && !templates.has('default'))
      throw new Error(
        `tokenizer_config.json has chat templates ${[...templates.keys()].join(', ')} but none named "default"`,
      )
    const variables: Record<string, unknown> = {}
    for (const name of SPECIAL_TOKEN_NAMES) {
      const token = tokenString(config[name])
      if (token !== undefined) variables[name] = token
    }
    // transformers also exposes the extra named special tokens (Gemma 3: boi_token, image_token).
    const extra = config.extra_special_tokens
    if (extra && typeof extra === 'object' && !Array.isArray(extra)) {
      for (const [name, value] of Object.entries(extra))
        if (tokenString(value) !== undefined) variables[name] = tokenString(value)
    }
    if (Array.isArray(config.additional_special_tokens))
      variables.additional_special_tokens = config.additional_special_tokens
        .map(tokenString)
        .filter((t) => t !== undefined)
    return new ChatTemplate(
      templates,
      variables,
      named.map(([, text]) => (typeof text === 'string' ? text : '')).join('\n'),
    )
  }

  render(messages: ChatMessage[], options: ChatRenderOptions = {}): string {
    const tools = options.tools && options.tools.length > 0 ? options.tools : null
    const template =
      (tools && this.templates.get('tool_use')) || this.templates.get('default') || [...this.templates.values()][0]
    const variables = {
      ...this.variables,
      messages,
      tools,
      documents: null,
      add_generation_prompt: options.addGenerationPrompt ?? true,
    }
    try {
      return renderTemplate(template, variables)
    } catch (error) {
      if (error instanceof ChatTemplateError) throw error
      throw new ChatTemplateError(`the model's chat template could not render these messages: ${errorMessage(error)}`)
    }
  }
}

/**
 * Template.render with transformers' globals. @huggingface/jinja's own render declares
 * `raise_exception` (a plain Error, indistinguishable from a template bug) and a
 * locale-dependent `strftime_now`, and refuses to redeclare them, so the environment is set up
 * here with its other globals as it sets them.
 */
function renderTemplate(template: Template, variables: Record<string, unknown>): string {
  const env = new Environment()
  const globals: Record<string, unknown> = {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    range,
    raise_exception: (message: unknown) => {
      throw new ChatTemplateError(String(message))
    },
    strftime_now: (format: unknown) => strftime(new Date(), String(format)),
  }
  for (const [name, value] of Object.entries({ ...globals, ...variables })) env.set(name, value)
  return new Interpreter(env).run(template.parsed).value as string
}

/** Python's range(stop) / range(start, stop[, step]). */
function range(start: number, stop?: number, step = 1): number[] {
  if (stop === undefined) [start, stop] = [0, start]
  if (step === 0) throw new Error('range() arg 3 must not be zero')
  const out: number[] = []
  for (let i = start; step > 0 ? i < stop : i > stop; i += step) out.push(i)
  return out
}

const DAYS = ['Sunday', 'Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday']
const MONTHS = [
  'January',
  'February',
  'March',
  'April',
  'May',
  'June',
  'July',
  'August',
  'September',
  'October',
  'November',
  'December',
]
const pad = (n: number, width = 2) => String(n).padStart(width, '0')

/**
 * Python's `datetime.strftime` in the C locale (what transformers' `strftime_now` calls) for
 * the directives templates use; others are left as written. @huggingface/jinja's own
 * strftime_now uses the process locale's month names and knows fewer directives.
 */
export function strftime(date: Date, format: string): string {
  const dayOfYear =
    Math.floor(
      (Date.UTC(date.getFullYear(), date.getMonth(), date.getDate()) - Date.UTC(date.getFullYear(), 0, 1)) / 86_400_000,
    ) + 1
  const hour12 = date.getHours() % 12 || 12
  const fields: Record<string, () => string> = {
    a: () => DAYS[date.getDay()].slice(0, 3),
    A: () => DAYS[date.getDay()],
    b: () => MONTHS[date.getMonth()].slice(0, 3),
    B: () => MONTHS[date.getMonth()],
    d: () => pad(date.getDate()),
    e: () => String(date.getDate()).padStart(2, ' '),
    H: () => pad(date.getHours()),
    I: () => pad(hour12),
    j: () => pad(dayOfYear, 3),
    m: () => pad(date.getMonth() + 1),
    M: () => pad(date.getMinutes()),
    p: () => (date.getHours() < 12 ? 'AM' : 'PM'),
    S: () => pad(date.getSeconds()),
    y: () => pad(date.getFullYear() % 100),
    Y: () => String(date.getFullYear()),
    '%': () => '%',
  }
  return format.replace(/%(.)/gs, (whole, directive: string) => fields[directive]?.() ?? whole)
}
