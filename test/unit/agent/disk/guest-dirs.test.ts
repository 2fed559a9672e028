// The directories on the way to guests' files: 0710 root:<QEMU's group> with the libvirt
// driver (search only, for QEMU), 0700 without QEMU; old 0755 trees are fixed; a directory
// above the state dir QEMU cannot pass is refused at start, by name.
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { GuestDirs, groupId, qemuCanSearch } from '../../../../agent/disk/guest-dirs.js'

const root = process.getuid?.() === 0
const modeOf = (p: string) => statSync(p).mode & 0o777

t.test('groupId resolves names through NSS and takes numbers as they are', async (t) => {
  t.equal(groupId('root'), 0)
  t.equal(groupId('+4242'), 4242)
  t.throws(() => groupId('no-such-group-strato'), { name: 'FailedPrecondition', message: /group 'no-such-group-strato' does not exist.*STRATO_AGENT_QEMU_GROUP/ })
})

t.test('without QEMU: the state dir and the instances dir under it are 0700, old 0755 ones fixed', async (t) => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'strato-gd-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  const state = path.join(tmp, 'agent')
  mkdirSync(state, { mode: 0o755 })
  chmodSync(state, 0o755)
  // What an older agent left: a 0755 instance dir with a 0644 disk.
  const old = path.join(state, 'instances', 'a2b3c4d5-0000-4000-8000-000000000001')
  mkdirSync(old, { recursive: true, mode: 0o755 })
  chmodSync(old, 0o755)
  writeFileSync(path.join(old, 'disk'), 'data', { mode: 0o644 })
  chmodSync(path.join(old, 'disk'), 0o644)
  new GuestDirs(undefined).ensureTree(state, path.join(state, 'instances'))
  t.equal(modeOf(state), 0o700)
  t.equal(modeOf(path.join(state, 'instances')), 0o700)
  t.equal(modeOf(old), 0o700, "an older agent's instance dir is made private")
  t.equal(modeOf(path.join(old, 'disk')), 0o600, '… and its disk')
})

t.test('with QEMU: 0710 and its group on every level, nothing for others', { skip: !root && 'chown needs root' }, async (t) => {
  const tmp = mkdtempSync(path.join(tmpdir(), 'strato-gd-'))
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }))
  chmodSync(tmp, 0o711) // the test's own parent: passable by others, as /tmp's children usually are
  const gid = 4242
  const state = path.join(tmp, 'agent')
  const instances = path.join(state, 'vm', 'instances')
  const dirs = new GuestDirs(gid)
  dirs.ensureTree(state, instances)
  for (const d of [state, path.join(state, 'vm'), instances]) {
    t.equal(modeOf(d), 0o710, `${path.relative(tmp, d)} is 0710`)
    t.equal(statSync(d).gid, gid, `${path.relative(tmp, d)} is QEMU's group`)
  }
  dirs.ensure(path.join(instances, 'one'))
  t.equal(modeOf(path.join(instances, 'one')), 0o710)
  t.ok(qemuCanSearch(instances, gid))
  t.notOk(qemuCanSearch(instances, gid + 1), 'another group cannot pass')

  // The parent closed to QEMU: refused at start, naming it.
  chmodSync(tmp, 0o700)
  t.throws(() => dirs.ensureTree(state, instances), { name: 'FailedPrecondition', message: new RegExp(`cannot reach ${instances}: ${tmp} has mode 0700`) })
  // Passable by QEMU's group alone is enough (how npm start makes STRATO_HOME).
  dirs.ensure(tmp)
  t.doesNotThrow(() => dirs.ensureTree(state, instances), 'a 0710 parent of QEMU\'s group')
})
