// The compute manager's build cleanup (agent/compute-manager.ts) on the fake driver with its
// failure injection: whichever step of a build fails, nothing of the server is left on the
// host (no guest, so no NIC plugged; no instance directory, so no disk, console log or config
// drive), the build can simply be tried again, and an undo step that fails is logged with
// the server's context, never dropped.
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { ComputeManager, type Conductor } from '../../../agent/compute-manager.js'
import type { ImageSource } from '../../../agent/disk/image-cache.js'
import type { UndoLog } from '../../../proto/revert.js'
import { FakeDriver } from '../../../agent/virt/fake.js'
import { createImage } from '../../../native/index.js'
import type { BuildSpec } from '../../../proto/build-spec.js'
import { FailedPrecondition, Internal, Unavailable } from '../../../proto/errors.js'
import { PowerState } from '../../../proto/power-state.js'

const tmp = mkdtempSync(path.join(tmpdir(), 'strato-cm-'))
t.teardown(() => rmSync(tmp, { recursive: true, force: true }))

const uuid = '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11'
const imageId = '0b5e7c1a-3d2f-4e6a-8b9c-1d2e3f4a5b6c'
const GiB = 1024 ** 3

// The image: an empty qcow2 of 2 GiB (a few hundred KiB on the wire).
const imageFile = path.join(tmp, 'image.qcow2')
await createImage(imageFile, 'qcow2', { size: 2 * GiB })
const imageBytes = readFileSync(imageFile)
const checksum = createHash('md5').update(imageBytes).digest('hex')

const spec = (over: Partial<BuildSpec> = {}): BuildSpec => ({
  instanceUuid: uuid, name: `instance-${uuid}`, displayName: 'web', vcpus: 1, memoryMb: 64, diskGb: 0, projectId: 'p1',
  imageId, imageChecksum: checksum, imageReadToken: 'tok', imageDiskFormat: 'qcow2', keyName: '', publicKey: '', userData: '', metadata: {},
  availabilityZone: 'nova', hostname: 'web', configDrive: true, volumes: [],
  nics: [{
    portId: '0123456789abcdef', macAddress: 'fa:16:3e:00:00:01', networkId: 'net-1', networkType: 'flat', physicalNetwork: 'provider', segmentationId: 0,
    fixedIps: ['10.0.0.5'], ips: [{ address: '10.0.0.5', subnetId: 's1', ipVersion: 4, cidr: '10.0.0.0/24', gatewayIp: '10.0.0.1', dnsNameservers: [], hostRoutes: [] }],
  }],
  ...over,
})

/** What one step's failure needs: the spec, a broken image source or firewall, an injection. */
interface Setup {
  spec?: BuildSpec
  conductorFails?: Error
  download?: ImageSource['download']
  refreshFirewall?: (dir: string) => Promise<void>
  inject?: (driver: FakeDriver) => void
}

async function host(s: Setup = {}) {
  const instancesDir = path.join(mkdtempSync(path.join(tmp, 'host-')), 'instances')
  const driver = new FakeDriver()
  await driver.init()
  const logged: Array<{ fields: Record<string, unknown>; message: string }> = []
  const log: UndoLog = { warn: (fields, message) => logged.push({ fields, message }) }
  let buildSpec = s.spec ?? spec()
  const conductor: Conductor = {
    buildSpec: async () => {
      if (s.conductorFails) throw s.conductorFails
      return buildSpec
    },
    hostInstances: async () => [],
  }
  const images: ImageSource = {
    download: (id) => (s.download ? s.download(id) : Promise.resolve({ image: { checksum, diskFormat: 'qcow2', status: 'active' }, data: (async function* () { yield imageBytes })() })),
  }
  const manager = new ComputeManager(driver, conductor, {
    host: 'node1', instancesDir, bridgeMappings: { provider: 'br-provider' }, manageBridges: false, shutdownTimeoutMs: 0,
    images: () => images,
    refreshFirewall: () => s.refreshFirewall?.(path.join(instancesDir, uuid)) ?? Promise.resolve(),
    log,
  })
  return {
    driver, manager, instancesDir, logged,
    /** Builds what a later, healthy build would build. */
    heal() {
      s = {}
      buildSpec = spec()
      driver.clearFailures()
    },
  }
}

type Host = Awaited<ReturnType<typeof host>>

/** Nothing of the server on the host: no guest (so nothing plugged, nothing holding RAM), no directory, no partial download. */
async function nothingLeft(t: Test, h: Host, what: string) {
  t.same(await h.driver.listGuests(), [], `${what}: no guest`)
  t.equal(h.driver.specOf(uuid), undefined, `${what}: no guest spec, so no NIC plugged into a bridge`)
  t.same(h.driver.usage(), { guests: 0, running: 0, vcpusUsed: 0, memoryMiBUsed: 0 }, `${what}: the host's resources are all free`)
  t.notOk(existsSync(path.join(h.instancesDir, uuid)), `${what}: no instance directory (disk, console log, config drive)`)
  const left = readdirSync(h.instancesDir).filter((n) => n !== '_base')
  t.same(left, [], `${what}: nothing else in the instances directory`)
  const base = existsSync(path.join(h.instancesDir, '_base')) ? readdirSync(path.join(h.instancesDir, '_base')) : []
  t.same(base.filter((n) => !n.endsWith('.qcow2')), [], `${what}: no partial image download`)
}

t.test('a healthy build makes the guest, its disk and its config drive', async (t) => {
  const h = await host()
  t.equal(await h.manager.build(uuid), PowerState.RUNNING)
  t.ok(existsSync(path.join(h.instancesDir, uuid, 'disk')), 'root disk')
  t.ok(existsSync(path.join(h.instancesDir, uuid, 'disk.config')), 'config drive')
  t.match(h.driver.specOf(uuid)?.nics, [{ mac: 'fa:16:3e:00:00:01', bridge: 'br-provider', device: 'tap0123456789a' }], 'the NIC on the mapped bridge')
  t.same(h.logged, [])
  await h.manager.delete(uuid)
  await nothingLeft(t, h, 'after delete')
})

const steps: Array<[string, Setup, new (...a: never[]) => Error, RegExp]> = [
  ['the build spec', { conductorFails: new Unavailable('conductor request failed: timeout') }, Unavailable, /timeout/],
  ['the image download', { download: async () => { throw new Unavailable('image service gone') } }, Unavailable, /image service gone/],
  ['the image checksum', { spec: spec({ imageChecksum: '0'.repeat(32) }), download: async () => ({ image: { checksum: '0'.repeat(32), diskFormat: 'qcow2', status: 'active' }, data: (async function* () { yield imageBytes })() }) }, FailedPrecondition, /arrived with MD5/],
  ['the root disk', { spec: spec({ diskGb: 1 }) }, FailedPrecondition, /flavor's disk \(1 GiB\) is smaller than the image/],
  ['the NIC (no bridge for its network)', { spec: spec({ nics: [{ ...spec().nics[0]!, physicalNetwork: 'elsewhere' }] }) }, FailedPrecondition, /no bridge for physical network 'elsewhere'/],
  ['the firewall', { refreshFirewall: async () => { throw new Unavailable('conductor request failed') } }, Unavailable, /conductor request failed/],
  // The firewall refresh runs just before the drive is written: a directory in its place makes genisoimage fail.
  ['the config drive', { refreshFirewall: async (dir) => void mkdirSync(path.join(dir, 'disk.config')) }, Internal, /genisoimage could not make the config drive/],
  ['the hypervisor define', { inject: (d) => d.injectFailure({ operation: 'spawn', step: 'define' }) }, Internal, /injected failure in spawn at step define/],
  ['the hypervisor start', { inject: (d) => d.injectFailure({ operation: 'spawn', step: 'start' }) }, Internal, /injected failure in spawn at step start/],
]

for (const [step, setup, ErrorClass, message] of steps) {
  t.test(`a build failing at ${step} leaves nothing behind, and can be tried again`, async (t) => {
    const h = await host(setup)
    setup.inject?.(h.driver)
    const err = await h.manager.build(uuid).then(() => undefined, (e: unknown) => e)
    t.type(err, ErrorClass, 'the step\'s own error')
    t.match((err as Error | undefined)?.message, message)
    await nothingLeft(t, h, `after ${step} failed`)
    t.same(h.logged, [], 'every undo step succeeded')
    h.heal()
    t.equal(await h.manager.build(uuid), PowerState.RUNNING, 'a second build succeeds')
    t.same((await h.driver.listGuests()).map((g) => g.uuid), [uuid])
  })
}

t.test('a failed undo step is logged with the server\'s context; the others still run', async (t) => {
  const h = await host()
  h.driver.injectFailure({ operation: 'spawn', step: 'start' })
  h.driver.injectFailure({ operation: 'destroy', error: new Unavailable('hypervisor not answering') })
  const err = await h.manager.build(uuid).then(() => undefined, (e: unknown) => e)
  t.match((err as Error | undefined)?.message, /injected failure in spawn at step start/, "the build's own error, not the undo's")
  t.equal(h.logged.length, 1, 'one line for the failed undo step')
  t.match(h.logged[0], {
    message: `undo step failed: destroy guest ${uuid}`,
    fields: { instance: uuid, host: 'node1', action: 'build', undo: `destroy guest ${uuid}`, cause: /injected failure in spawn/ },
  })
  t.match((h.logged[0]?.fields.err as Error).message, 'hypervisor not answering')
  t.notOk(existsSync(path.join(h.instancesDir, uuid)), 'the other undo step ran: the instance directory is gone')
  t.same(await h.driver.listGuests(), [], 'and the spawn cleaned up its own guest')
})

t.test('a server held for volume work (a snapshot deciding whether its guest runs) does not start until released', async (t) => {
  const h = await host()
  t.equal(await h.manager.build(uuid), PowerState.RUNNING)
  t.equal(await h.manager.stop(uuid), PowerState.SHUTDOWN)
  let started: Promise<PowerState> | undefined
  await h.manager.holdingGuests([uuid, uuid], async () => {
    started = h.manager.start(uuid)
    // Ample time for the fake driver's start, were it not waiting for the lock.
    await new Promise((r) => setTimeout(r, 300))
    t.equal((await h.driver.getInfo(uuid)).powerState, PowerState.SHUTDOWN, 'still stopped while held')
  })
  t.equal(await started, PowerState.RUNNING, 'started once released')
  t.equal(await h.manager.holdingGuests([], async () => 'ran'), 'ran', 'no servers: the work simply runs')
  await h.manager.delete(uuid)
})
