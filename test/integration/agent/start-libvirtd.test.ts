/**
 * Integration: the stack script's libvirt starter (agent/virt/libvirt/start-libvirtd.sh)
 * is idempotent and leaves libvirt answering, also when two start it at once on a machine
 * where it is not running (a fresh CI machine: npm test's parallel files, two stacks). Needs
 * root and libvirt-daemon-system. Runs alone (package.json's tap `serial`): it stops libvirtd.
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

/** How many processes named `name` run once the count has held for two seconds (at most 15 s). */
async function settledCount(name: string): Promise<number> {
  const count = async () => (await run('pgrep', ['-x', name]).then((r) => r.stdout, () => '')).trim().split('\n').filter(Boolean).length
  let last = await count()
  for (let i = 0, same = 0; i < 150 && same < 20; i++) {
    await new Promise((r) => setTimeout(r, 100))
    const n = await count()
    same = n === last ? same + 1 : 0
    last = n
  }
  return last
}

/** Stops libvirtd and virtlogd and waits until both are gone (running guests stay: QEMU outlives them). */
async function stopDaemons(): Promise<void> {
  for (const d of ['libvirtd', 'virtlogd']) {
    await run('pkill', ['-x', d]).catch(() => undefined)
    for (let i = 0; i < 300 && (await run('pgrep', ['-x', d]).then(() => true, () => false)); i++) await new Promise((r) => setTimeout(r, 100))
  }
}

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

  t.test('two starters at once where libvirtd is not running: both succeed, one daemon', async (t) => {
    await stopDaemons()
    const both = await Promise.allSettled([run('sh', [script], { timeout: 60_000 }), run('sh', [script], { timeout: 60_000 })])
    t.same(both.map((r) => (r.status === 'fulfilled' ? 'ok' : String((r.reason as { stderr?: string }).stderr ?? r.reason).trim())), ['ok', 'ok'], 'neither starter fails because the other one won')
    t.ok(await libvirtAnswers(), 'libvirt answers')
    // The loser's `-d` child may take a moment to exit after failing on the pid file.
    for (const d of ['libvirtd', 'virtlogd']) t.equal(await settledCount(d), 1, `exactly one ${d}`)
  })
}
