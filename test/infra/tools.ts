import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parse, parseAllDocuments } from 'yaml'
import { REPO_ROOT } from '../helpers/paths.ts'

// Shared by the infra tests: external tools (which must exist: CI installs them), files.

export interface Run {
  status: number | null
  stdout: string
  stderr: string
}

/** Runs a command in the repository root; never throws on a non-zero exit. */
export function run(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {},
): Run {
  const result = spawnSync(command, args, {
    cwd: options.cwd ?? REPO_ROOT,
    env: options.env ?? process.env,
    input: options.input,
    encoding: 'utf8',
    timeout: 60_000,
    maxBuffer: 64 << 20,
  })
  if (result.error) throw result.error
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** Fails (never skips) when a tool is missing, naming where it comes from. */
export function requireTool(command: string, source: string): void {
  const probe = spawnSync(command, ['--help'], { encoding: 'utf8', timeout: 30_000 })
  const missing = (probe.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
  assert.ok(!missing, `${command} is not installed: it comes from ${source} (.ci/run installs the Debian packages)`)
}

/** Asserts a zero exit, showing the tool's output otherwise. */
export function assertOk(result: Run, what: string): void {
  assert.equal(result.status, 0, `${what} failed (exit ${result.status}):\n${result.stdout}\n${result.stderr}`)
}

export const repoPath = (...parts: string[]): string => resolve(REPO_ROOT, ...parts)
export const readText = (...parts: string[]): string => readFileSync(repoPath(...parts), 'utf8')
export const readYaml = (...parts: string[]): unknown => parse(readText(...parts))
export const readJson = (...parts: string[]): unknown => JSON.parse(readText(...parts))

/** Every document of a multi-document YAML stream, as plain objects. */
export function yamlDocuments(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      assert.equal(doc.errors.length, 0, String(doc.errors[0]))
      return doc.toJS() as K8sObject
    })
    .filter(Boolean)
}

/** A Kubernetes object, loosely typed: tests look into it field by field. */
export type K8sObject = {
  apiVersion: string
  kind: string
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  spec?: any
  data?: Record<string, string>
  stringData?: Record<string, string>
}

/** Seconds from a compose or Prometheus duration such as 45s, 2m, 1m30s. */
export function durationSeconds(text: string): number {
  const parts = [...String(text).matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)]
  assert.ok(parts.length > 0, `not a duration: ${text}`)
  const unit: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600 }
  return parts.reduce((sum, [, n, u]) => sum + Number(n) * unit[u], 0)
}
