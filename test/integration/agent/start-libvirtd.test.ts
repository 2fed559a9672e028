/**
 * Integration: the stack script's libvirt starter (agent/virt/libvirt/start-libvirtd.sh)
 * is idempotent and leaves libvirt answering. Needs root and libvirt-daemon-system.
 */
import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { stat } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { libvirtAnswers } from '../../helpers/libvirt.js'

const run = promisify(execFile)
const script = fileURLToPath(new URL('../../../agent/virt/libvirt/start-libvirtd.sh', import.meta.url))

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root')
} else {
  t.test('runs twice without error and libvirt answers', async (t) => {
    await run('sh', [script], { timeout: 60_000 })
    await run('sh', [script], { timeout: 60_000 })
    t.ok(await libvirtAnswers(), 'virsh -c qemu:///system version answers')
    const { stdout } = await run('pgrep', ['-x', 'libvirtd'])
    t.equal(stdout.trim().split('\n').length, 1, 'exactly one libvirtd')
    const logd = await run('pgrep', ['-x', 'virtlogd'])
    t.equal(logd.stdout.trim().split('\n').length, 1, 'exactly one virtlogd')
    if (existsSync('/dev/kvm')) {
      const kvm = await stat('/dev/kvm')
      t.equal(kvm.mode & 0o777, 0o660, '/dev/kvm mode 0660')
      const group = (await run('getent', ['group', 'kvm'])).stdout.split(':')[2]
      t.equal(String(kvm.gid), group, '/dev/kvm group kvm')
    }
  })
}
