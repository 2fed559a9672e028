/**
 * Integration: LibvirtDriver against a real libvirtd + QEMU (KVM, or TCG when
 * /dev/kvm is absent). Needs: root, Debian libvirt-daemon-system,
 * qemu-system-x86, qemu-utils. Starts libvirtd/virtlogd itself if needed.
 * Every domain is named `strato-it-<pid>-…` and every file lives in one temp
 * directory; both are removed at the end.
 */
import t from 'tap'
import { pino } from 'pino'
import { randomUUID } from 'node:crypto'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, readFile, rm } from 'node:fs/promises'
import { arch, cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { LibvirtDriver } from '../../../agent/virt/libvirt/driver.js'
import { parseDomainXml } from '../../../agent/virt/libvirt/domain-xml.js'
import type { GuestSpec } from '../../../agent/virt/driver.js'
import { PowerState } from '../../../proto/power-state.js'
import { Unavailable } from '../../../proto/errors.js'
import { bootDiskImage, bootMarker } from '../../fixtures/boot-sector.js'
import { ensureLibvirtd, virsh, virshDomainNames, virshPowerState } from '../../helpers/libvirt.js'
import { bridgePorts, deleteBridge, ensureBridge } from '../../../agent/net/bridge.js'
import { virtDriverContract, type ContractGuest } from '../../unit/agent/virt/contract.js'

const run = promisify(execFile)
const prefix = `strato-it-${process.pid}`
const guestlessUuid = '00000000-0000-4000-8000-0000000000aa'

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system')
} else {
  await ensureLibvirtd()
  const logLines: { msg?: string; instance?: string }[] = []
  const logger = pino({ level: 'info' }, { write: (line: string) => logLines.push(JSON.parse(line) as { msg?: string }) })
  const driver = new LibvirtDriver({ logger })
  await driver.init()
  t.comment(`accelerator: ${driver.guestAccelerator}`)

  const workdir = await mkdtemp(join(tmpdir(), 'strato-virt-'))
  // QEMU runs as libvirt-qemu: it must be able to reach the disks and the log.
  await chmod(workdir, 0o755)
  const made: string[] = []

  t.teardown(async () => {
    for (const uuid of made) await driver.destroy(uuid).catch(() => undefined)
    await driver.close()
    await rm(workdir, { recursive: true, force: true })
  })

  const newGuest = async (tag: string, acpiPowerOff = true): Promise<ContractGuest> => {
    const uuid = randomUUID()
    made.push(uuid)
    const marker = bootMarker(uuid)
    const disk = await bootDiskImage({ line: marker, path: join(workdir, `${uuid}.qcow2`), acpiPowerOff })
    const spec: GuestSpec = {
      uuid,
      name: `${prefix}-${tag}-${uuid.slice(0, 8)}`,
      vcpus: 1,
      memoryMiB: 64,
      disks: [{ path: disk, format: 'qcow2', bus: 'virtio', device: 'vda' }],
      nics: [],
      consoleLogPath: join(workdir, `${uuid}.console.log`),
    }
    return { spec, marker }
  }

  t.test('LibvirtDriver satisfies the VirtDriver contract', async (t) => {
    virtDriverContract(t, {
      driver,
      newGuest,
      breakSpawn: async (guest) => ({
        ...guest.spec,
        disks: [{ path: join(workdir, 'no-such-disk.qcow2'), format: 'qcow2', bus: 'virtio', device: 'vda' }],
      }),
      observe: (spec) => virshPowerState(spec.name),
      bootTimeoutMs: driver.guestAccelerator === 'kvm' ? 20_000 : 60_000,
      // The test guest powers off on the ACPI button, so graceful paths complete.
      shutdownTimeoutMs: 20_000,
      newVolumeFile: async (tag) => {
        const file = join(workdir, `${tag}-${randomUUID()}.qcow2`)
        await run('qemu-img', ['create', '-f', 'qcow2', file, '1G'])
        return { path: file, format: 'qcow2' }
      },
    })
  })

  // One guest for three checks (each QEMU start is CPU the suite shares): the domain XML, booting
  // from a qcow2 overlay (the agent's root disk layout), and a stop behind the driver's back.
  t.test('the defined domain is what domain-xml built, on the detected accelerator; it boots from a qcow2 overlay whose backing file is the image (the agent\'s root disk layout); stopped behind the driver\'s back, it is reported (the hypervisor is the authority)', async (t) => {
    const guest = await newGuest('xml')
    const base = guest.spec.disks[0]!.path
    const overlay = join(workdir, `${guest.spec.uuid}.overlay.qcow2`)
    await run('qemu-img', ['create', '-f', 'qcow2', '-F', 'qcow2', '-b', base, overlay, '64M'])
    const spec: GuestSpec = { ...guest.spec, disks: [{ path: overlay, format: 'qcow2', bus: 'virtio', device: 'vda' }] }
    await driver.spawn(spec)
    const live = parseDomainXml(await virsh('dumpxml', spec.name))
    t.equal(live.type, driver.guestAccelerator === 'kvm' ? 'kvm' : 'qemu', `domain type ${live.type}`)
    t.equal(live.uuid, spec.uuid, 'uuid')
    t.equal(live.memoryMiB, 64, 'memory')
    t.same(live.disks, spec.disks, 'disks')
    t.equal(live.serialLogPath, spec.consoleLogPath, 'serial console to the log file')
    const output = await waitFor(() => driver.getConsoleOutput(spec.uuid), (o) => o.includes(guest.marker), 20_000)
    t.ok(output.includes(guest.marker), `guest booted under ${driver.guestAccelerator.toUpperCase()}: console shows "${guest.marker}"`)
    t.ok(output.includes(guest.marker), 'the guest booted from the overlay')
    await virsh('destroy', spec.name)
    t.equal((await driver.getInfo(spec.uuid)).powerState, PowerState.SHUTDOWN, 'stopped behind the driver\'s back: SHUTDOWN')
    await driver.destroy(spec.uuid)
    t.equal(await virshPowerState(spec.name), 'absent', 'virsh: gone after destroy')
    const logged = logLines.filter((line) => line.instance === spec.uuid).map((line) => line.msg)
    t.same(logged, ['spawn started', 'spawn finished', 'destroyed'], 'operations are logged with the instance')
  })

  t.test('a guest that honours ACPI is shut down and rebooted cleanly', async (t) => {
    const guest = await newGuest('acpi')
    const { uuid } = guest.spec
    await driver.spawn(guest.spec)
    await waitFor(() => driver.getConsoleOutput(uuid), (o) => o.includes(guest.marker), 20_000)
    await driver.reboot(uuid, { type: 'soft', timeoutMs: 20_000 })
    const rebooted = await waitFor(() => driver.getConsoleOutput(uuid), (o) => o.split(guest.marker).length - 1 >= 2, 20_000)
    t.equal(rebooted.split(guest.marker).length - 1, 2, 'booted twice')
    await driver.powerOff(uuid, { timeoutMs: 20_000 })
    t.equal(await virshPowerState(guest.spec.name), PowerState.SHUTDOWN, 'virsh: shut off')
    const logged = logLines.filter((line) => line.instance === uuid).map((line) => line.msg)
    t.ok(logged.includes('soft reboot done'), 'soft reboot went the clean way')
    t.ok(logged.includes('powered off cleanly'), 'power off went the clean way')
    t.notOk(logged.some((msg) => msg?.includes('hard')), 'nothing was done hard')
    await driver.destroy(uuid)
  })

  t.test('a guest that ignores ACPI is powered off hard after the timeout', async (t) => {
    const guest = await newGuest('noacpi', false)
    const { uuid } = guest.spec
    await driver.spawn(guest.spec)
    await waitFor(() => driver.getConsoleOutput(uuid), (o) => o.includes(guest.marker), 20_000)
    let started = Date.now()
    await driver.reboot(uuid, { type: 'soft', timeoutMs: 1_000 })
    t.ok(Date.now() - started >= 1_000, 'soft reboot waited for the timeout')
    const rebooted = await waitFor(() => driver.getConsoleOutput(uuid), (o) => o.split(guest.marker).length - 1 >= 2, 20_000)
    t.equal(rebooted.split(guest.marker).length - 1, 2, 'then rebooted hard: booted twice')
    started = Date.now()
    await driver.powerOff(uuid, { timeoutMs: 1_000 })
    t.ok(Date.now() - started >= 1_000, 'power off waited for the timeout')
    t.equal(await virshPowerState(guest.spec.name), PowerState.SHUTDOWN, 'then pulled the plug: virsh says shut off')
    const logged = logLines.filter((line) => line.instance === uuid).map((line) => line.msg)
    t.ok(logged.includes('guest ignored the soft reboot, rebooting hard'), 'logged the soft reboot fall-back')
    t.ok(logged.includes('powered off hard'), 'logged the hard power off')
    await driver.destroy(uuid)
  })

  t.test('host capabilities match this machine', async (t) => {
    const caps = await driver.getHostCapabilities()
    const memTotalKiB = Number(/^MemTotal:\s+(\d+) kB/m.exec(await readFile('/proc/meminfo', 'utf8'))?.[1])
    t.equal(caps.memoryMiB, Math.floor(memTotalKiB / 1024), `memory ${caps.memoryMiB} MiB = MemTotal`)
    t.equal(caps.vcpus, cpus().length, `vcpus ${caps.vcpus}`)
    t.equal(caps.arch, arch() === 'x64' ? 'x86_64' : arch(), 'arch')
    t.equal(caps.accelerator, existsSync('/dev/kvm') ? 'kvm' : 'tcg', `accelerator ${caps.accelerator} (/dev/kvm ${existsSync('/dev/kvm') ? 'present' : 'absent'})`)
  })

  t.test('a NIC is plugged into its bridge with its MAC, and unplugged on destroy', async (t) => {
    const bridge = `stit-${process.pid % 100000}`
    t.same(await ensureBridge(bridge), { created: true }, `test bridge ${bridge} created`)
    t.teardown(() => deleteBridge(bridge))
    const guest = await newGuest('nic')
    const mac = 'fa:16:3e:5e:00:01'
    const device = `tapst${process.pid % 100000}`
    await driver.spawn({ ...guest.spec, nics: [{ mac, bridge, model: 'virtio', device }] })
    const live = parseDomainXml(await virsh('dumpxml', guest.spec.name))
    t.same(live.interfaces, [{ mac, bridge, model: 'virtio', device }], 'virsh dumpxml: bridge interface with the MAC, its tap named as asked')
    t.same(await bridgePorts(bridge), [device], `the guest's tap ${device} is a port of ${bridge}`)
    await driver.destroy(guest.spec.uuid)
    t.same(await bridgePorts(bridge), [], 'unplugged after destroy')
    // Without a name, libvirt picks one (vnetN) and says so.
    const other = await newGuest('nic2')
    await driver.spawn({ ...other.spec, nics: [{ mac, bridge, model: 'virtio' }] })
    t.match(parseDomainXml(await virsh('dumpxml', other.spec.name)).interfaces, [{ mac, bridge, device: /^vnet\d+$/ }], 'an unnamed tap: vnetN')
    await driver.destroy(other.spec.uuid)
  })

  t.test('TCG (no KVM) boots the same image', async (t) => {
    const tcg = new LibvirtDriver({ accelerator: 'tcg' })
    await tcg.init()
    t.teardown(() => tcg.close())
    const guest = await newGuest('tcg')
    await tcg.spawn(guest.spec)
    t.equal(parseDomainXml(await virsh('dumpxml', guest.spec.name)).type, 'qemu', "domain type 'qemu' (TCG)")
    const output = await waitFor(() => tcg.getConsoleOutput(guest.spec.uuid), (o) => o.includes(guest.marker), 60_000)
    t.ok(output.includes(guest.marker), `guest booted under TCG: console shows "${guest.marker}"`)
    await tcg.destroy(guest.spec.uuid)
  })

  t.test('an unreachable libvirtd is Unavailable', async (t) => {
    const broken = new LibvirtDriver({ uri: 'qemu:///system?socket=/nonexistent/libvirt-sock' })
    const error = await broken.init().catch((e: unknown) => e)
    t.ok(error instanceof Unavailable, `init throws Unavailable (${(error as Error).message})`)
    const after = await broken.getInfo(guestlessUuid).catch((e: unknown) => e)
    t.ok(after instanceof Unavailable, 'and so does every call after it')
  })

  t.test('no test domain is left behind', async (t) => {
    for (const uuid of made) await driver.destroy(uuid)
    const leftovers = (await virshDomainNames()).filter((name) => name.startsWith(prefix))
    t.same(leftovers, [], 'virsh list --all shows none of ours')
  })
}

async function waitFor<T>(probe: () => Promise<T>, done: (value: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (done(value) || Date.now() > deadline) return value
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
}
