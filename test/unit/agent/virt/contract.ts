/**
 * The VirtDriver contract as tests (after nova `tests/unit/virt/test_virt_drivers.py`).
 *
 * `virtDriverContract(tap, harness)` registers one subtest per rule of
 * `agent/virt/driver.ts`. It runs against the fake (`fake-driver.test.ts`) and
 * against LibvirtDriver on a real libvirtd (`test/integration/agent/libvirt-driver.test.ts`).
 * The harness supplies what differs: how to make a bootable guest, how to make
 * a spawn fail half-way, and (optionally) an independent view of the
 * hypervisor (`virsh`) to check that the driver tells the truth.
 */
import type { Test } from 'tap'
import {
  AlreadyExists,
  FailedPrecondition,
  InvalidArgument,
  NotFound,
  StratoError,
} from '../../../../proto/errors.js'
import { type GuestSpec, type VirtDriver } from '../../../../agent/virt/driver.js'
import { PowerState, powerStateName } from '../../../../proto/power-state.js'

export interface ContractGuest {
  spec: GuestSpec
  /** A line the guest prints on its console each time it boots. */
  marker: string
}

export interface ContractHarness {
  /** An initialised driver. The suite never closes it. */
  driver: VirtDriver
  /** A fresh, bootable guest spec with test-unique uuid and name (files it needs exist). */
  newGuest(tag: string): Promise<ContractGuest>
  /**
   * Arranges for `spawn(spec)` to fail *after* the guest was defined (e.g. a
   * disk path that does not exist, or an injected failure at the start step)
   * and returns the spec to spawn.
   */
  breakSpawn(guest: ContractGuest): Promise<GuestSpec>
  /** Independent view of the hypervisor: the guest's power state, or 'absent'. */
  observe?(spec: GuestSpec): Promise<PowerState | 'absent'>
  /** How long a guest may take to print its marker. */
  bootTimeoutMs: number
  /** Graceful-shutdown timeout used by the suite (kept short: test guests may ignore ACPI). */
  shutdownTimeoutMs: number
  /** A fresh 1 GiB volume file (qcow2) the guests may be given, as a volume backend's export is. */
  newVolumeFile(tag: string): Promise<{ path: string; format: 'qcow2' | 'raw' }>
}

type Ctor = abstract new (...args: never[]) => StratoError

async function errorOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  return undefined
}

function countOf(text: string, needle: string): number {
  return text.split(needle).length - 1
}

export function virtDriverContract(tap: Test, h: ContractHarness): void {
  const { driver } = h
  const unknownUuid = '00000000-0000-4000-8000-00000000dead'

  const expectError = async (
    t: Test,
    promise: Promise<unknown>,
    ctor: Ctor,
    message: string,
  ): Promise<unknown> => {
    const error = await errorOf(promise)
    t.ok(error instanceof ctor, `${message}: throws ${ctor.name} (got ${error instanceof Error ? `${error.name}: ${error.message}` : String(error)})`)
    return error
  }

  /** Polls the console until the marker has been printed `count` times. */
  const waitForMarker = async (guest: ContractGuest, count: number): Promise<string> => {
    const deadline = Date.now() + h.bootTimeoutMs
    let output = ''
    while (Date.now() < deadline) {
      output = await driver.getConsoleOutput(guest.spec.uuid)
      if (countOf(output, guest.marker) >= count) return output
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    return output
  }

  const agrees = async (
    t: Test,
    spec: GuestSpec,
    expected: PowerState | 'absent',
  ): Promise<void> => {
    if (h.observe === undefined) return
    const seen = await h.observe(spec)
    t.equal(
      typeof seen === 'number' ? powerStateName(seen) : seen,
      typeof expected === 'number' ? powerStateName(expected) : expected,
      'the hypervisor agrees',
    )
  }

  const listed = async (uuid: string): Promise<boolean> =>
    (await driver.listGuests()).some((guest) => guest.uuid === uuid)

  tap.test('host capabilities describe this host', async (t) => {
    const caps = await driver.getHostCapabilities()
    t.ok(caps.hostname.length > 0, 'hostname')
    t.ok(caps.cpuModel.length > 0, 'cpu model')
    t.ok(caps.arch.length > 0, 'arch')
    t.ok(Number.isInteger(caps.vcpus) && caps.vcpus >= 1, 'vcpus ≥ 1')
    t.ok(Number.isInteger(caps.memoryMiB) && caps.memoryMiB > 0, 'memory MiB > 0')
    t.ok(caps.accelerator === 'kvm' || caps.accelerator === 'tcg', `accelerator ${caps.accelerator}`)
    t.ok(caps.hypervisorType.length > 0, `hypervisor type ${caps.hypervisorType}`)
    t.match(caps.hypervisorVersion, /^\d+\.\d+\.\d+$/, `hypervisor version ${caps.hypervisorVersion}`)
  })

  tap.test('spawn boots a guest; power off, on and reboot; destroy removes it', async (t) => {
    const guest = await h.newGuest('life')
    const { uuid } = guest.spec
    t.teardown(() => driver.destroy(uuid))

    const spawned = await driver.spawn(guest.spec)
    t.equal(spawned.uuid, uuid, 'spawn returns the guest')
    t.equal(spawned.powerState, PowerState.RUNNING, 'spawn returns it RUNNING')
    const info = await driver.getInfo(uuid)
    t.equal(info.powerState, PowerState.RUNNING, 'getInfo: RUNNING')
    t.equal(info.name, guest.spec.name, 'name')
    t.equal(info.vcpus, guest.spec.vcpus, 'vcpus')
    t.equal(info.memoryMiB, guest.spec.memoryMiB, 'memory')
    t.ok(await listed(uuid), 'listGuests includes it')
    await agrees(t, guest.spec, PowerState.RUNNING)
    const firstBoot = await waitForMarker(guest, 1)
    t.equal(countOf(firstBoot, guest.marker), 1, `console shows "${guest.marker}" once`)
    const tail = await driver.getConsoleOutput(uuid, { maxBytes: 8 })
    t.ok(Buffer.byteLength(tail) > 0 && Buffer.byteLength(tail) <= 8, 'getConsoleOutput with maxBytes: at most that many bytes')
    t.ok(firstBoot.endsWith(tail), 'and they are the end of the log')

    await expectError(t, driver.spawn(guest.spec), AlreadyExists, 'spawning the same uuid again')
    t.equal((await driver.getInfo(uuid)).powerState, PowerState.RUNNING, 'the failed duplicate spawn left the guest running')
    const sameName = await h.newGuest('dup')
    await expectError(t, driver.spawn({ ...sameName.spec, name: guest.spec.name }), AlreadyExists, 'spawning the same name again')
    t.notOk(await listed(sameName.spec.uuid), 'no guest was made for the duplicate name')

    await driver.powerOff(uuid, { timeoutMs: h.shutdownTimeoutMs })
    t.equal((await driver.getInfo(uuid)).powerState, PowerState.SHUTDOWN, 'powerOff: SHUTDOWN')
    await agrees(t, guest.spec, PowerState.SHUTDOWN)
    await driver.powerOff(uuid, { timeoutMs: 0 })
    t.pass('powerOff of a shut-down guest is a no-op')
    await expectError(t, driver.reboot(uuid, { type: 'soft', timeoutMs: h.shutdownTimeoutMs }), FailedPrecondition, 'soft reboot of a shut-down guest')
    t.ok(await listed(uuid), 'a shut-down guest is still listed')

    await driver.powerOn(uuid)
    t.equal((await driver.getInfo(uuid)).powerState, PowerState.RUNNING, 'powerOn: RUNNING')
    await agrees(t, guest.spec, PowerState.RUNNING)
    t.equal(countOf(await waitForMarker(guest, 2), guest.marker), 2, 'it booted again (marker twice, console appended)')
    await driver.powerOn(uuid)
    t.pass('powerOn of a running guest is a no-op')

    await driver.reboot(uuid, { type: 'hard' })
    t.equal((await driver.getInfo(uuid)).powerState, PowerState.RUNNING, 'hard reboot: RUNNING')
    await agrees(t, guest.spec, PowerState.RUNNING)
    t.equal(countOf(await waitForMarker(guest, 3), guest.marker), 3, 'hard reboot really rebooted it')

    await driver.reboot(uuid, { type: 'soft', timeoutMs: h.shutdownTimeoutMs })
    t.equal((await driver.getInfo(uuid)).powerState, PowerState.RUNNING, 'soft reboot: RUNNING')
    await agrees(t, guest.spec, PowerState.RUNNING)
    t.equal(countOf(await waitForMarker(guest, 4), guest.marker), 4, 'soft reboot really rebooted it')

    await driver.powerOff(uuid, { timeoutMs: 0 })
    await driver.reboot(uuid, { type: 'hard' })
    t.equal((await driver.getInfo(uuid)).powerState, PowerState.RUNNING, 'hard reboot starts a shut-down guest')

    await driver.destroy(uuid)
    await expectError(t, driver.getInfo(uuid), NotFound, 'getInfo after destroy')
    t.notOk(await listed(uuid), 'listGuests no longer includes it')
    await agrees(t, guest.spec, 'absent')
    await driver.destroy(uuid)
    t.pass('destroying it again succeeds')
  })

  tap.test('pause stops a running guest and unpause lets it run; both are no-ops when already done', async (t) => {
    const guest = await h.newGuest('pause')
    const { uuid } = guest.spec
    t.teardown(() => driver.destroy(uuid))
    await driver.spawn(guest.spec)
    await driver.pause(uuid)
    t.equal((await driver.getInfo(uuid)).powerState, PowerState.PAUSED, 'pause: PAUSED')
    await agrees(t, guest.spec, PowerState.PAUSED)
    await driver.pause(uuid)
    t.pass('pause of a paused guest is a no-op')
    await driver.unpause(uuid)
    t.equal((await driver.getInfo(uuid)).powerState, PowerState.RUNNING, 'unpause: RUNNING')
    await agrees(t, guest.spec, PowerState.RUNNING)
    await driver.unpause(uuid)
    t.pass('unpause of a running guest is a no-op')
    await driver.powerOff(uuid, { timeoutMs: 0 })
    await expectError(t, driver.pause(uuid), FailedPrecondition, 'pause of a shut-down guest')
    await expectError(t, driver.unpause(uuid), FailedPrecondition, 'unpause of a shut-down guest')
    await expectError(t, driver.pause(unknownUuid), NotFound, 'pause of an unknown guest')
  })

  tap.test('destroy of a guest that never existed succeeds', async (t) => {
    await driver.destroy(unknownUuid)
    t.pass('no error')
  })

  tap.test('destroy of a shut-down guest removes it', async (t) => {
    const guest = await h.newGuest('off')
    t.teardown(() => driver.destroy(guest.spec.uuid))
    await driver.spawn(guest.spec)
    await driver.powerOff(guest.spec.uuid, { timeoutMs: 0 })
    await driver.destroy(guest.spec.uuid)
    t.notOk(await listed(guest.spec.uuid), 'gone')
    await agrees(t, guest.spec, 'absent')
  })

  tap.test('operations on an unknown guest throw NotFound', async (t) => {
    await expectError(t, driver.getInfo(unknownUuid), NotFound, 'getInfo')
    await expectError(t, driver.powerOn(unknownUuid), NotFound, 'powerOn')
    await expectError(t, driver.powerOff(unknownUuid, { timeoutMs: 0 }), NotFound, 'powerOff')
    await expectError(t, driver.reboot(unknownUuid, { type: 'hard' }), NotFound, 'reboot')
    await expectError(t, driver.getConsoleOutput(unknownUuid), NotFound, 'getConsoleOutput')
  })

  tap.test('a malformed spec is refused before anything is made', async (t) => {
    const guest = await h.newGuest('bad')
    const cases: [string, GuestSpec][] = [
      ['uuid', { ...guest.spec, uuid: 'not-a-uuid' }],
      ['name', { ...guest.spec, name: 'has space' }],
      ['vcpus', { ...guest.spec, vcpus: 0 }],
      ['memoryMiB', { ...guest.spec, memoryMiB: 1 }],
      ['disks', { ...guest.spec, disks: [] }],
      ['nics[0].mac', { ...guest.spec, nics: [{ mac: '01:00:00:00:00:01', bridge: 'br0', model: 'virtio' }] }],
    ]
    for (const [field, spec] of cases) {
      const error = await expectError(t, driver.spawn(spec), InvalidArgument, `bad ${field}`)
      t.equal((error as InvalidArgument | undefined)?.field, field, `names the field ${field}`)
    }
    t.notOk(await listed(guest.spec.uuid), 'nothing was defined')
    await agrees(t, guest.spec, 'absent')
  })

  tap.test('a spawn that fails half-way leaves no guest behind', async (t) => {
    const guest = await h.newGuest('fail')
    t.teardown(() => driver.destroy(guest.spec.uuid))
    const before = (await driver.listGuests()).length
    const spec = await h.breakSpawn(guest)
    const error = await errorOf(driver.spawn(spec))
    t.ok(error instanceof StratoError, `spawn fails with a Strato error (${error instanceof Error ? `${error.name}: ${error.message}` : String(error)})`)
    t.notOk(await listed(spec.uuid), 'the guest is not listed')
    await expectError(t, driver.getInfo(spec.uuid), NotFound, 'getInfo of the failed guest')
    await agrees(t, spec, 'absent')
    t.equal((await driver.listGuests()).length, before, 'no guest count change')

    // The name and uuid are free again: the same guest spawns once the fault is gone.
    await driver.spawn(guest.spec)
    t.equal((await driver.getInfo(guest.spec.uuid)).powerState, PowerState.RUNNING, 'the same uuid spawns afterwards')
    await driver.destroy(guest.spec.uuid)
  })

  tap.test('volume disks: attached live and into the definition, again a no-op, resized, detached; a stopped guest gets them in its definition', async (t) => {
    const guest = await h.newGuest('vol')
    const { uuid } = guest.spec
    t.teardown(() => driver.destroy(uuid))
    await driver.spawn(guest.spec)
    await waitForMarker(guest, 1)
    const file = await h.newVolumeFile('vol')
    const disk = { ...file, bus: 'virtio' as const, device: 'vdb', serial: 'abcdef01-2345-6789-a' }
    await driver.attachDisk(uuid, disk)
    t.match(await driver.listDisks(uuid), [{ device: 'vda', serial: '' }, { device: 'vdb', path: file.path, format: file.format, serial: disk.serial }], 'the root disk, then the volume with its serial')
    await driver.attachDisk(uuid, disk)
    t.equal((await driver.listDisks(uuid)).length, 2, 'attaching it again changes nothing')
    await expectError(t, driver.attachDisk(uuid, { ...disk, path: `${file.path}.other` }), AlreadyExists, 'another file on a taken device')
    const bad = await expectError(t, driver.attachDisk(uuid, { ...disk, device: 'vda' }), InvalidArgument, 'the root disk\'s device')
    t.equal((bad as InvalidArgument | undefined)?.field, 'device', 'names the field')
    await expectError(t, driver.attachDisk(unknownUuid, disk), NotFound, 'attach to an unknown guest')
    await driver.resizeDisk(uuid, 'vdb', 2 * 1024 ** 3)
    t.pass('a running guest is told a disk grew')
    await expectError(t, driver.resizeDisk(uuid, 'vdc', 2 * 1024 ** 3), NotFound, 'resize of a device it does not have')

    await driver.detachDisk(uuid, 'vdb', { timeoutMs: h.bootTimeoutMs })
    t.same((await driver.listDisks(uuid)).map((d) => d.device), ['vda'], 'detached')
    await driver.detachDisk(uuid, 'vdb')
    t.pass('detaching it again succeeds')
    await expectError(t, driver.detachDisk(uuid, 'vda'), InvalidArgument, 'the root disk is not detached')

    await driver.powerOff(uuid, { timeoutMs: 0 })
    await driver.attachDisk(uuid, disk)
    t.equal((await driver.getInfo(uuid)).powerState, PowerState.SHUTDOWN, 'a stopped guest stays stopped')
    t.same((await driver.listDisks(uuid)).map((d) => d.device), ['vda', 'vdb'], 'and has the disk in its definition')
    await driver.powerOn(uuid)
    t.same((await driver.listDisks(uuid)).map((d) => d.device), ['vda', 'vdb'], 'started with it')
    await driver.detachDisk(uuid, 'vdb', { timeoutMs: h.bootTimeoutMs })
    t.same((await driver.listDisks(uuid)).map((d) => d.device), ['vda'], 'detached from the running guest')
    await driver.destroy(uuid)
  })

  tap.test('different guests can be spawned and destroyed concurrently', async (t) => {
    const guests = await Promise.all([h.newGuest('con1'), h.newGuest('con2'), h.newGuest('con3')])
    t.teardown(() => Promise.all(guests.map((g) => driver.destroy(g.spec.uuid))))
    const spawned = await Promise.all(guests.map((g) => driver.spawn(g.spec)))
    t.same(spawned.map((info) => info.powerState), [PowerState.RUNNING, PowerState.RUNNING, PowerState.RUNNING], 'all RUNNING')
    const uuids = new Set((await driver.listGuests()).map((g) => g.uuid))
    t.ok(guests.every((g) => uuids.has(g.spec.uuid)), 'all listed')
    await Promise.all(guests.map((g) => driver.destroy(g.spec.uuid)))
    const after = new Set((await driver.listGuests()).map((g) => g.uuid))
    t.ok(guests.every((g) => !after.has(g.spec.uuid)), 'all gone')
    for (const g of guests) await agrees(t, g.spec, 'absent')
  })
}
