import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { repoPath, requireTool, run } from './tools.ts'

// yamllint (warnings count too) on every YAML file under infra/ and both compose files.

const CONFIG = repoPath('infra/.yamllint')
const lint = (...paths: string[]) => run('yamllint', ['--strict', '-f', 'parsable', '-c', CONFIG, ...paths])

describe('yamllint', () => {
  test('infra/ and the compose files are clean', () => {
    requireTool('yamllint', "Debian's yamllint package")
    const result = lint(repoPath('infra'), repoPath('docker-compose.yml'), repoPath('docker-compose.cpu.yml'))
    assert.equal(result.status, 0, `yamllint:\n${result.stdout}${result.stderr}`)
  })

  test('the lint really reports problems', () => {
    requireTool('yamllint', "Debian's yamllint package")
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-yamllint-'))
    try {
      writeFileSync(join(dir, 'bad.yml'), 'a: 1\na: 2\nb:   [1,2]\n')
      const result = lint(join(dir, 'bad.yml'))
      assert.notEqual(result.status, 0)
      assert.match(result.stdout, /key-duplicates/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
