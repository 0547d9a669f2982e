import { execFileSync } from 'node:child_process'
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { REPO_ROOT } from '../helpers/paths.ts'

/** One fenced code block of the README or of a page in docs/. */
export interface Block {
  lang: string
  text: string
  /** The file it is in, relative to the repository (`README.md`, `docs/api.md`), for messages. */
  file: string
  /** 1-based line of the opening fence, for messages. */
  line: number
}

/** README.md, then every docs/*.md page (sorted): the documentation whose code blocks are run. */
export function docFiles(root = REPO_ROOT): string[] {
  const pages = readdirSync(resolve(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
  return ['README.md', ...pages.map((f) => `docs/${f}`)]
}

/** The fenced code blocks of one file (relative to the repository), in order. */
export function fileBlocks(file: string, root = REPO_ROOT): Block[] {
  const lines = readFileSync(resolve(root, file), 'utf8').split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i])
    if (!open) continue
    const start = i
    const body: string[] = []
    for (i++; i < lines.length && lines[i] !== '```'; i++) body.push(lines[i])
    blocks.push({ lang: open[1], text: body.join('\n'), file, line: start + 1 })
  }
  return blocks
}

/**
 * The fenced code blocks of the README and of docs/*.md, in that order. The README's examples
 * moved into docs/ when it was split; they are run wherever they now are.
 */
export function readmeBlocks(files = docFiles()): Block[] {
  return files.flatMap((file) => fileBlocks(file))
}

/**
 * The state of a fresh clone: the repository's tracked files as they are in the working tree
 * (so uncommitted changes are tested too), in a new folder beside a `shared` link (the tests'
 * `../shared`). `node_modules` is linked from this checkout rather than installed: `npm ci` needs
 * the registry, and its result is the same lock file's packages.
 */
export function freshClone(): { root: string; dir: string } {
  const root = mkdtempSync(join(tmpdir(), 'switchyard-readme-'))
  const dir = join(root, 'switchyard')
  const files = execFileSync('git', ['ls-files', '-z'], { cwd: REPO_ROOT, encoding: 'utf8' })
    .split('\0')
    .filter(Boolean)
  for (const file of files) {
    const target = join(dir, file)
    mkdirSync(dirname(target), { recursive: true })
    try {
      copyFileSync(join(REPO_ROOT, file), target)
    } catch (error) {
      // A tracked file deleted in the working tree is not part of its state.
      if ((error as { code?: string }).code !== 'ENOENT') throw error
    }
  }
  symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'))
  symlinkSync(realpathSync(resolve(REPO_ROOT, '../shared')), join(root, 'shared'))
  return { root, dir }
}

/** Lines of a shell block without comments (`# …` to the end of a line) and with continuations joined. */
export function shellCommands(text: string): string[] {
  return text
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((line) => line.replace(/\s+#.*$/, '').trim())
    .filter(Boolean)
}

/** The start of the structured-outputs example block, in docs/api.md (run by structured-readme.test.ts). */
export const STRUCTURED_BLOCK = 'curl -s localhost:8000/v1/chat/completions'

/** The model examples run by models-readme.test.ts: encoders, /predict and /models (docs/api.md), builder styles (docs/models.md). */
export const ENCODER_BLOCK = 'npx tsx backend/model/builder/encoder-cli.ts'
export const PREDICT_BLOCK = 'curl -s localhost:8000/predict'
export const STYLES_BLOCK = '# Optimum layout: --weights'
