import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { describe, test } from 'node:test'
import { validate } from 'dockerfile-utils'
import { readJson, readText, repoPath } from './tools.ts'

// dockerfile-utils (the linter behind `npx dockerfile-utils lint`) on both Dockerfiles, then
// what the images must do: non-root, health checks, the right entry points and ports.

const GATEWAY = 'infra/docker/gateway.Dockerfile'
const BACKEND = 'infra/docker/backend.Dockerfile'
const pkg = readJson('package.json') as { scripts: Record<string, string> }

/** The instructions of the final stage (after the last FROM), continuation lines joined. */
function finalStage(text: string): string[] {
  const instructions = text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((l) => l.trim() && !l.trimStart().startsWith('#'))
  const last = instructions.map((l) => /^FROM\s/i.test(l)).lastIndexOf(true)
  return instructions.slice(last)
}
const instruction = (stage: string[], name: string) => stage.filter((l) => l.toUpperCase().startsWith(`${name} `))

describe('Dockerfiles', () => {
  for (const file of [GATEWAY, BACKEND]) {
    test(`${file}: no lint problems`, () => {
      const problems = validate(readText(file))
      assert.deepEqual(
        problems.map((p) => `${p.range.start.line + 1}: ${p.message}`),
        [],
      )
    })
  }

  test('the linter really reports problems', () => {
    assert.ok(
      validate('FROM node:20-bookworm-slim\nEXPOSE eighty\nHEALTHCHECK --interval=1parsec CMD true\n').length >= 2,
    )
  })

  test('gateway image: slim Node 20, npm ci, bundle, production deps, non-root, /health', () => {
    const text = readText(GATEWAY)
    assert.match(text, /^ARG NODE_IMAGE=node:20-bookworm-slim$/m)
    assert.match(text, /RUN npm ci /)
    assert.match(text, /RUN npm run build$/m)
    assert.match(text, /npm ci --omit=dev/)
    assert.match(pkg.scripts.build, /--outfile=dist\/gateway\.mjs/, 'the image runs what `npm run build` writes')
    const stage = finalStage(text)
    assert.deepEqual(instruction(stage, 'USER'), ['USER 10001:10001'])
    assert.match(instruction(stage, 'HEALTHCHECK')[0], /\/health/)
    assert.deepEqual(instruction(stage, 'CMD'), ['CMD ["node", "dist/gateway.mjs"]'])
    assert.deepEqual(instruction(stage, 'EXPOSE'), ['EXPOSE 8080 9091'])
  })

  test('backend image: CUDA 12 base, CUDA onnxruntime, tsx entry of `npm run backend`, non-root, /live', () => {
    const text = readText(BACKEND)
    assert.match(text, /^ARG RUNTIME_IMAGE=nvidia\/cuda:12\.[\d.]+-cudnn-runtime-ubuntu\d+\.\d+$/m)
    assert.match(text, /^ARG ONNXRUNTIME_NODE_INSTALL=cuda12$/m)
    // onnxruntime-node's install script reads ONNXRUNTIME_NODE_INSTALL before npm's config (.npmrc says skip).
    assert.match(
      readText('node_modules/onnxruntime-node/script/install-utils.js'),
      /process\.env\.ONNXRUNTIME_NODE_INSTALL \|\| process\.env\.npm_config_onnxruntime_node_install/,
    )
    assert.match(text, /ONNXRUNTIME_NODE_INSTALL="\$\{ONNXRUNTIME_NODE_INSTALL\}" npm ci --omit=dev/)
    const stage = finalStage(text)
    assert.deepEqual(instruction(stage, 'USER'), ['USER 10001:10001'])
    assert.match(instruction(stage, 'HEALTHCHECK')[0], /\/live'/)
    assert.equal(
      `CMD ${JSON.stringify(pkg.scripts.backend.split(' '))}`.replaceAll(',', ', '),
      instruction(stage, 'CMD')[0],
    )
    assert.deepEqual(instruction(stage, 'EXPOSE'), ['EXPOSE 8000'])
    assert.ok(stage.some((l) => /^ENV .*MODEL_DIR=\/models/.test(l)))
  })

  test('.dockerignore sends only what the images copy, and no secrets', () => {
    const rules = readText('.dockerignore')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
    assert.equal(rules[0], '*', 'an allow-list')
    const allowed = new Set(rules.slice(1).map((r) => r.replace(/^!/, '').replace(/\/$/, '')))
    for (const file of [GATEWAY, BACKEND]) {
      for (const line of readText(file)
        .split('\n')
        .filter((l) => /^COPY /.test(l) && !l.includes('--from='))) {
        const sources = line.split(/\s+/).slice(1, -1)
        for (const source of sources) {
          assert.ok(allowed.has(source.replace(/\/$/, '')), `${file} copies ${source}, which .dockerignore leaves out`)
          assert.ok(existsSync(repoPath(source)), `${source} exists`)
        }
      }
    }
    for (const secret of ['.env', 'secrets', 'models', 'node_modules', '.git'])
      assert.ok(!allowed.has(secret), `${secret} must not reach the builder`)
  })
})
