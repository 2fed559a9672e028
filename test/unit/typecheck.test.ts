// The whole tree (sources and tests) type-checks under the strict settings of tsconfig.json.
// Tests run through tsx, which strips types without checking them, so this is where type errors surface.
import { spawnSync } from 'node:child_process'
import path from 'node:path'
import t from 'tap'

const root = path.resolve(import.meta.dirname, '../..')

t.test('tsc --noEmit passes', async (t) => {
  const r = spawnSync(path.join(root, 'node_modules/.bin/tsc'), ['--noEmit', '-p', 'tsconfig.json'], { cwd: root, encoding: 'utf8', timeout: 240_000 })
  t.equal(r.status, 0, r.stdout + r.stderr)
})
