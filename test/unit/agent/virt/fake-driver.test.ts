import t from 'tap'
import { randomUUID } from 'node:crypto'
import { FakeDriver } from '../../../../agent/virt/fake.js'
import { type GuestSpec } from '../../../../agent/virt/driver.js'
import { PowerState } from '../../../../proto/power-state.js'
import { AlreadyExists, InvalidArgument, NotFound, ResourceExhausted, Unavailable } from '../../../../proto/errors.js'
import { virtDriverContract } from './contract.js'

function specFor(tag: string, memoryMiB = 64): GuestSpec {
  const uuid = randomUUID()
  return {
    uuid,
    name: `fake-${tag}-${uuid.slice(0, 8)}`,
    vcpus: 1,
    memoryMiB,
    disks: [{ path: `/var/lib/strato/instances/${uuid}/disk`, format: 'qcow2', bus: 'virtio', device: 'vda' }],
    nics: [{ mac: 'fa:16:3e:00:00:01', bridge: 'brq-test', model: 'virtio' }],
    consoleLogPath: `/var/lib/strato/instances/${uuid}/console.log`,
  }
}

t.test('contract', async (t) => {
  const driver = new FakeDriver({ consoleBanner: (spec) => `STRATO-BOOT-OK ${spec.uuid}` })
  await driver.init()
  virtDriverContract(t, {
    driver,
    newGuest: async (tag) => {
      const spec = specFor(tag)
      return { spec, marker: `STRATO-BOOT-OK ${spec.uuid}` }
    },
    breakSpawn: async (guest) => {
      driver.injectFailure({ operation: 'spawn', step: 'start', uuid: guest.spec.uuid })
      return guest.spec
    },
    observe: async (spec) => {
      const found = (await driver.listGuests()).find((g) => g.uuid === spec.uuid)
      return found === undefined ? 'absent' : found.powerState
    },
    bootTimeoutMs: 1000,
    shutdownTimeoutMs: 50,
    // The fake reads no file: any absolute path is a volume.
    newVolumeFile: async (tag) => ({ path: `/fake-volumes/${tag}-${Math.random().toString(36).slice(2)}.qcow2`, format: 'qcow2' }),
  })
})

t.test('capacity: RAM of running guests is accounted, shut-down guests free it', async (t) => {
  const driver = new FakeDriver({ memoryMiB: 1024, vcpus: 4 })
  await driver.init()
  const a = specFor('a', 512)
  const b = specFor('b', 512)
  const c = specFor('c', 256)
  await driver.spawn(a)
  await driver.spawn(b)
  t.same(driver.usage(), { guests: 2, running: 2, vcpusUsed: 2, memoryMiBUsed: 1024 }, 'two guests hold 1024 MiB')
  const error = await driver.spawn(c).catch((e: unknown) => e)
  t.ok(error instanceof ResourceExhausted, 'a third guest does not fit')
  t.equal(driver.usage().guests, 2, 'and was not left defined')
  await driver.powerOff(a.uuid, { timeoutMs: 0 })
  t.equal(driver.usage().memoryMiBUsed, 512, 'powered-off guest released its RAM')
  await driver.spawn(c)
  t.equal(driver.usage().memoryMiBUsed, 768, 'now it fits')
  const again = await driver.powerOn(a.uuid).catch((e: unknown) => e)
  t.ok(again instanceof ResourceExhausted, 'restarting the first guest no longer fits')
  t.equal((await driver.getInfo(a.uuid)).powerState, PowerState.SHUTDOWN, 'and it stays SHUTDOWN')
  await driver.destroy(b.uuid)
  await driver.destroy(c.uuid)
  await driver.destroy(a.uuid)
  t.same(driver.usage(), { guests: 0, running: 0, vcpusUsed: 0, memoryMiBUsed: 0 }, 'all released')
})

t.test('hypervisor-side events are what getInfo reports', async (t) => {
  const driver = new FakeDriver()
  await driver.init()
  const spec = specFor('ev')
  await driver.spawn(spec)
  driver.crashGuest(spec.uuid)
  t.equal((await driver.getInfo(spec.uuid)).powerState, PowerState.CRASHED, 'CRASHED')
  t.equal(driver.usage().memoryMiBUsed, 0, 'a crashed guest holds no RAM')
  await driver.powerOn(spec.uuid)
  t.equal((await driver.getInfo(spec.uuid)).powerState, PowerState.RUNNING, 'restarted from CRASHED')
  driver.guestPoweredOff(spec.uuid)
  t.equal((await driver.getInfo(spec.uuid)).powerState, PowerState.SHUTDOWN, 'guest OS powered off')
})

t.test('failure injection: any operation, any guest, a number of times', async (t) => {
  const driver = new FakeDriver()
  await driver.init()
  const spec = specFor('inj')
  driver.injectFailure({ operation: 'spawn', step: 'define', error: new Unavailable('libvirtd went away') })
  const error = await driver.spawn(spec).catch((e: unknown) => e)
  t.ok(error instanceof Unavailable, 'the injected error is thrown')
  t.equal(driver.usage().guests, 0, 'failure before define: nothing defined')
  await driver.spawn(spec)
  driver.injectFailure({ operation: 'getInfo', times: 2 })
  t.ok((await driver.getInfo(spec.uuid).catch((e: unknown) => e)) instanceof Error, 'first call fails')
  t.ok((await driver.getInfo(spec.uuid).catch((e: unknown) => e)) instanceof Error, 'second call fails')
  t.equal((await driver.getInfo(spec.uuid)).powerState, PowerState.RUNNING, 'third call succeeds')
  driver.injectFailure({ operation: 'destroy' })
  t.ok((await driver.destroy(spec.uuid).catch((e: unknown) => e)) instanceof Error, 'destroy can fail')
  t.equal((await driver.getInfo(spec.uuid)).powerState, PowerState.RUNNING, 'and then the guest is untouched')
  await driver.destroy(spec.uuid)
  t.ok((await driver.getInfo(spec.uuid).catch((e: unknown) => e)) instanceof NotFound, 'destroyed')
})

t.test('a guest that ignores ACPI is powered off hard after the timeout', async (t) => {
  const driver = new FakeDriver({ acpi: false })
  await driver.init()
  const spec = specFor('acpi')
  await driver.spawn(spec)
  const started = Date.now()
  await driver.powerOff(spec.uuid, { timeoutMs: 100 })
  t.ok(Date.now() - started >= 90, 'waited for the timeout')
  t.equal((await driver.getInfo(spec.uuid)).powerState, PowerState.SHUTDOWN, 'then SHUTDOWN')
})

t.test('concurrent spawns of one uuid: exactly one wins, nothing leaks', async (t) => {
  const driver = new FakeDriver({ latencyMs: 5 })
  await driver.init()
  const spec = specFor('race')
  const results = await Promise.allSettled([driver.spawn(spec), driver.spawn(spec), driver.spawn(spec)])
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one spawn succeeded')
  t.ok(
    results.every((r) => r.status === 'fulfilled' || r.reason instanceof AlreadyExists),
    'the others got AlreadyExists',
  )
  t.same(driver.usage(), { guests: 1, running: 1, vcpusUsed: 1, memoryMiBUsed: 64 }, 'one guest, accounted once')
})

t.test('cheap enough for 1,000 agents', async (t) => {
  const drivers = Array.from({ length: 1000 }, (_, i) => new FakeDriver({ hostname: `host-${i}` }))
  const started = process.hrtime.bigint()
  await Promise.all(drivers.map((d) => d.init()))
  await Promise.all(drivers.map(async (d) => {
    for (let i = 0; i < 5; i++) await d.spawn(specFor(`s${i}`))
  }))
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  t.equal(drivers.reduce((sum, d) => sum + d.usage().running, 0), 5000, '5,000 guests running')
  // A guard against a pathological cost (a scan per spawn), not a speed figure: bench:compute has those.
  t.ok(ms < 30_000, `5,000 spawns on 1,000 fake hosts took ${ms.toFixed(0)} ms`)
})

t.test('pullDisk: a running guest pulls a file disk\'s chain; a stopped one does nothing; a missing disk or guest is NotFound', async (t) => {
  const driver = new FakeDriver()
  await driver.init()
  const spec = specFor('pull')
  await driver.spawn(spec)
  t.equal(await driver.pullDisk(spec.uuid, 'vda'), true, 'running: pulled')
  t.same(driver.diskPullsOf(spec.uuid), ['vda'])
  t.ok((await driver.pullDisk(spec.uuid, 'vdz').catch((e: unknown) => e)) instanceof NotFound, 'no disk on the device: NotFound')
  t.ok((await driver.pullDisk(randomUUID(), 'vda').catch((e: unknown) => e)) instanceof NotFound, 'no such guest: NotFound')
  driver.injectFailure({ operation: 'pullDisk', error: new Unavailable('the block job did not finish: injected') })
  t.ok((await driver.pullDisk(spec.uuid, 'vda').catch((e: unknown) => e)) instanceof Unavailable, 'a failure can be injected')
  await driver.powerOff(spec.uuid)
  t.equal(await driver.pullDisk(spec.uuid, 'vda'), false, 'stopped: nothing has the file open, nothing done')
  t.same(driver.diskPullsOf(spec.uuid), ['vda'], 'no more pulls counted')
  await driver.settleDiskPull(spec.uuid, 'vda')
  await driver.destroy(spec.uuid)
})

t.test('snapshotDisk: a running guest moves its disk onto an overlay with a path of its own (never the disk\'s); diskSource says which file the disk has', async (t) => {
  const driver = new FakeDriver()
  await driver.init()
  const spec = specFor('move')
  const disk = spec.disks[0]!.path
  await driver.spawn(spec)
  t.equal(await driver.diskSource(spec.uuid, 'vda'), disk)
  t.ok((await driver.snapshotDisk(spec.uuid, 'vda', disk).catch((e: unknown) => e)) instanceof InvalidArgument, 'the disk\'s own path: InvalidArgument')
  t.ok((await driver.snapshotDisk(spec.uuid, 'vdz', `${disk}.1`).catch((e: unknown) => e)) instanceof NotFound, 'no disk on the device: NotFound')
  driver.injectFailure({ operation: 'snapshotDisk', error: new Unavailable('injected') })
  t.ok((await driver.snapshotDisk(spec.uuid, 'vda', `${disk}.1`).catch((e: unknown) => e)) instanceof Unavailable, 'a failure can be injected')
  t.equal(await driver.diskSource(spec.uuid, 'vda'), disk, 'and moves nothing')
  t.equal(await driver.snapshotDisk(spec.uuid, 'vda', `${disk}.1`), true, 'running: moved')
  t.equal(await driver.diskSource(spec.uuid, 'vda'), `${disk}.1`)
  await driver.powerOff(spec.uuid)
  t.equal(await driver.snapshotDisk(spec.uuid, 'vda', `${disk}.2`), false, 'stopped: nothing done')
  t.equal(await driver.diskSource(spec.uuid, 'vda'), `${disk}.1`, 'the definition keeps the file it moved to')
  await driver.destroy(spec.uuid)
  t.equal(await driver.diskSource(spec.uuid, 'vda'), undefined, 'no guest: undefined')
})

