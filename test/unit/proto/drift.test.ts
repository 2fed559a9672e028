// proto/gen/ is generated and committed: it must match what `npm run gen` makes from proto/.
import { spawnSync } from 'node:child_process'
import { appendFileSync, cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'

const root = path.resolve(import.meta.dirname, '../../..')
const check = (dir: string) => spawnSync('bash', [path.join(dir, 'cli/stack/gen-proto.sh'), '--check'], { encoding: 'utf8' })

t.test('committed stubs match the .proto files', async (t) => {
  const r = check(root)
  t.equal(r.status, 0, r.stderr)
})

t.test('the check fails when a .proto changes without regenerating', async (t) => {
  const copy = mkdtempSync(path.join(tmpdir(), 'strato-drift-'))
  t.teardown(() => rmSync(copy, { recursive: true, force: true }))
  cpSync(path.join(root, 'proto'), path.join(copy, 'proto'), { recursive: true })
  cpSync(path.join(root, 'cli/stack/gen-proto.sh'), path.join(copy, 'cli/stack/gen-proto.sh'))
  // The script finds buf and the ts-proto plugin through ../node_modules.
  symlinkSync(path.join(root, 'node_modules'), path.join(copy, 'node_modules'))
  appendFileSync(path.join(copy, 'proto/strato/identity/v1/identity.proto'), '\nmessage DriftProbe { string x = 1; }\n')
  const r = check(copy)
  t.equal(r.status, 1)
  t.match(r.stderr, /out of date.*npm run gen/)
})
