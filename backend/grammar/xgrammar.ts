import { readFileSync } from 'node:fs'
import Module, { createRequire } from 'node:module'
import type * as XGrammar from '@mlc-ai/web-xgrammar'
import { errorMessage } from '../../lib/error-message.ts'

export type XGrammarModule = typeof XGrammar

let loaded: XGrammarModule | undefined

/** The thread's shared xgrammar instance (tokenizer info, compiled grammars, matchers). */
export function loadXGrammar(): XGrammarModule {
  loaded ??= freshXGrammar()
  return loaded
}

/**
 * A new, separate instance of `@mlc-ai/web-xgrammar` (its own WebAssembly memory). Its
 * `lib/index.js` is a UMD bundle inside a `"type": "module"` package, so `import` fails
 * ("require is not defined in ES module scope"); the file is compiled here as the CommonJS
 * module it is. Works in worker threads too (no loader needed).
 */
export function freshXGrammar(): XGrammarModule {
  const require = createRequire(import.meta.url)
  const path = require.resolve('@mlc-ai/web-xgrammar')
  const NodeModule = Module as unknown as { new (id: string): CommonJsModule; _nodeModulePaths(path: string): string[] }
  const module = new NodeModule(path)
  module.filename = path
  module.paths = NodeModule._nodeModulePaths(path)
  module._compile(readFileSync(path, 'utf8'), path)
  return module.exports as XGrammarModule
}

interface CommonJsModule {
  filename: string
  paths: string[]
  exports: unknown
  _compile(source: string, filename: string): void
}

/** The stderr lines of the xgrammar calls in progress (several may overlap across awaits). */
const captures = new Set<string[]>()
let originalWrite: typeof process.stderr.write | undefined

/**
 * Runs an xgrammar call and returns what it wrote to stderr with it. A grammar xgrammar
 * refuses makes its WebAssembly abort with only "Aborted()"; the reason (for example
 * `Unsupported type "foo"`) is a `[FATAL] file:line: reason` line it prints just before. stderr
 * is wrapped while any call is in progress; other output passes through.
 */
export async function withXGrammarErrors<T>(call: () => Promise<T>): Promise<T> {
  const stderr = process.stderr
  if (captures.size === 0) {
    const original = (originalWrite = stderr.write)
    stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8')
      if (!/\[FATAL\]|Aborted\(\)/.test(text))
        return (original as (...args: unknown[]) => boolean).call(stderr, chunk, ...rest)
      for (const lines of captures) lines.push(text)
      return true
    }) as typeof stderr.write
  }
  const captured: string[] = []
  captures.add(captured)
  try {
    return await call()
  } catch (error) {
    const fatal = captured.join('').match(/\[FATAL\][^:]*:\d+:\s*([^\n]+)/)
    throw new Error(fatal ? fatal[1].trim() : errorMessage(error))
  } finally {
    captures.delete(captured)
    if (captures.size === 0 && originalWrite) stderr.write = originalWrite
  }
}
