// The whole tree (sources and tests) type-checks under the strict settings of tsconfig.json.
// Tests run through tsx, which strips types without checking them, so this is where type errors surface.
// Incremental, as the build is (tsconfig.build.json): tsc keeps what it learnt in dist/ and checks again
// only what changed and what depends on it, so a second `npm test` does not redo the whole tree (~30 s of CPU).
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import t from 'tap'

const root = path.resolve(import.meta.dirname, '../..')

// tsx is the only TypeScript loader of a test file: package.json's tap config leaves @tapjs/typescript
// out, and cli/stack/setup.sh builds tap for that set before npm test starts it. (A fresh install's tap
// gives every file of its first run the loaders of its default set: ts-node beside tsx, +1 to +10 CPU-s
// a file, ~1,000 CPU-s a run.)
t.test('test files run with tsx alone, without @tapjs/typescript (ts-node)', async (t) => {
  t.same(
    process.execArgv.filter((a) => a.includes('@tapjs/typescript')),
    [],
    "tap was built with package.json's plugins (npm run setup builds it; or node_modules/.bin/tap build)",
  )
})

t.test('tsc --noEmit passes', async (t) => {
  const args = ['--noEmit', '-p', 'tsconfig.json', '--incremental', '--tsBuildInfoFile', path.join(root, 'dist/.tsbuildinfo-typecheck')]
  const r = spawnSync(path.join(root, 'node_modules/.bin/tsc'), args, { cwd: root, encoding: 'utf8', timeout: 240_000 })
  t.equal(r.status, 0, r.stdout + r.stderr)
})
