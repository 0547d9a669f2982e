import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { after, before, test } from 'node:test'
import { promisify } from 'node:util'
import { type BackendProcess, startBackend } from '../helpers/backend-process.ts'
import { readmeBlocks, STRUCTURED_BLOCK } from './readme-blocks.ts'

/** Runs the structured-outputs example of docs/api.md (two curl commands) against a real backend on stories260K. */
const run = promisify(execFile)
let backend: BackendProcess
before(async () => {
  backend = await startBackend()
})
after(() => backend?.stop())

test('the structured-outputs curl examples answer a schema-valid object and one of the choices', async () => {
  const block =
    readmeBlocks().find((b) => b.text.startsWith(STRUCTURED_BLOCK)) ??
    assert.fail('no structured-outputs block in the README or docs/')
  const commands = block.text
    .split(/\n(?=curl )/)
    .map((command) => command.replaceAll('localhost:8000', backend.url.replace('http://', '')))
  assert.equal(commands.length, 2)
  const [chat, choice] = await Promise.all(
    commands.map(async (command) => JSON.parse((await run('bash', ['-c', command], { timeout: 30_000 })).stdout)),
  )
  const hero = JSON.parse(chat.choices[0].message.content)
  assert.equal(typeof hero.name, 'string')
  assert.ok(Number.isInteger(hero.age) && hero.age >= 1 && hero.age <= 99)
  assert.ok(['yes', 'no'].includes(choice.choices[0].text))
})
