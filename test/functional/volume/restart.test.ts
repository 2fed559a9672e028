// Volume work is durable: a create cast to a host whose agent is down waits in JetStream and is done
// when the agent comes back (the volume then becomes available, never stuck in creating); so do
// attach and detach casts to a server's host (in-use, then available, never stuck between); a
// backend whose agent restarts in the middle of a delete finishes it (the redelivered cast is
// idempotent); an agent with the volume role off refuses volume work with a reason, so the volume
// goes to error rather than hanging. At start-up the agent syncs its guests' volume disks with the
// attachments (libvirt is the truth): a disk gone from its guest ends its attachment, a disk no
// attachment asks for is detached, and pending attaches are resumed at once. A volume or snapshot
// cast delivered again after its row moved on (the agent stopped between storing the cast's result
// and acking it: JetStream redelivers it, and the restarted agent has no memory of it) is skipped,
// as the controller no longer waits for it: a create of a volume deleted since makes no file.
import { rmSync } from 'node:fs'
import { randomUUID } from 'node:crypto'
import { jetstream, jetstreamManager } from '@nats-io/jetstream'
import t from 'tap'
import type { TestContext } from '../../helpers/tap.js'
import { castsDone, startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, client, status } from '../../helpers/grpc.js'
import { eventually, startAgent } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { VolumesClient, type Volume } from '../../../proto/gen/strato/volume/v1/volume.js'
import type { CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import { volumeSerial } from '../../../proto/volume-attach.js'
import { SnapshotsClient, type Snapshot } from '../../../proto/gen/strato/volume/v1/volume.js'
import { CAST_STREAM, castSubject } from '../../../proto/subjects.js'
import { Cast } from '../../../proto/gen/strato/agent/v1/agent.js'

let cloud: TestCloud
let demo: Tenant
let volumes: VolumesClient
let snapshots: SnapshotsClient

t.before(async () => {
  // Hosts stay "up" for a long while without heartbeats: the test decides when agents run.
  cloud = await startCloud({ hosts: ['node1'], controller: { hosts: { heartbeatIntervalMs: 200, missedHeartbeats: 1000 } } })
  demo = await tenant(cloud.s, 'demo')
  volumes = client(VolumesClient, cloud.s.address)
  snapshots = client(SnapshotsClient, cloud.s.address)
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 5_000, 'a volume backend')
})
t.teardown(async () => {
  volumes.close()
  snapshots.close()
  const stateDir = cloud.agents[0]?.agent.config.stateDir
  await cloud.close()
  if (stateDir) rmSync(stateDir, { recursive: true, force: true })
})

const get = (id: string) => call<Volume>(volumes, 'getVolume', { id }, demo.token)
const statusOf = async (id: string) => (await get(id)).status
const notFound = (e: { code?: number }) => e.code === status.NOT_FOUND
/** The cast queued for node1 last, as JetStream holds it (node1's agent is down: nothing took it yet). */
const lastCast = async () => (await (await jetstreamManager(cloud.s.controller.nats!)).streams.getMessage(CAST_STREAM, { last_by_subj: castSubject('node1') }))!.data
/**
 * `cast` delivered to node1 again, as JetStream does when the agent stopped between storing the
 * cast's result and acking it (under another message id: the first is still in the duplicate
 * window); then until node1's agent has acked it.
 */
const deliverAgain = async (t: TestContext, cast: Uint8Array) => {
  const ack = await jetstream(cloud.s.controller.nats!).publish(castSubject('node1'), cast, { msgID: `again-${randomUUID()}` })
  t.notOk(ack.duplicate, 'the cast is queued again')
  await castsDone(cloud, 'node1')
}
/** node1's agent again: the same compute node uuid, state dir and volume backend (a host's disks outlive its agent). */
const restart = (extra: { volume?: 'on' | 'off' } = {}) => {
  const prev = cloud.agents[0]!
  return startAgent(cloud.nats.url, 'node1', { volumeDriver: prev.volumes, virtDriver: prev.driver, uuid: prev.agent.uuid, stateDir: prev.agent.config.stateDir, ...extra })
}

t.test('a create cast waits for the agent; the agent back finishes it', async (t) => {
  const first = cloud.agents[0]!
  const backend = first.volumes
  await first.agent.stop()
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'patient' }, demo.token)
  const create = await lastCast()
  await new Promise((r) => setTimeout(r, 500))
  t.equal(await statusOf(v.id), 'creating', 'nothing happens while the agent is down')
  t.notOk(backend.volumes.has(v.id))
  const again = await restart()
  cloud.agents[0] = again
  await eventually(async () => (await statusOf(v.id)) === 'available', 10_000, 'the volume available')
  t.ok(backend.volumes.has(v.id), 'the backend made it')
  const createId = Cast.decode(create).id ?? ''
  t.same(await again.agent.manager.volumeCastState(createId), { current: false, reason: `volume ${v.id} waits for no cast (this one's result was applied, or the controller gave up on it)` }, 'the create done, the controller waits for it no more')

  await again.agent.stop()
  await call(volumes, 'deleteVolume', { id: v.id }, demo.token)
  t.equal(await statusOf(v.id), 'deleting')
  cloud.agents[0] = await restart()
  await eventually(() => get(v.id).then(() => false, notFound), 10_000, 'the volume gone')
  t.notOk(backend.volumes.has(v.id), 'the backend deleted it')

  // The create comes again after the delete (its ack was lost): the volume is gone, so it is not made again.
  await deliverAgain(t, create)
  t.notOk(backend.volumes.has(v.id), 'the create delivered again left no volume on the backend')
  t.ok(await get(v.id).then(() => false, notFound), 'and the API has none')
  t.same(await cloud.agents[0]!.agent.manager.volumeCastState(createId), { current: false, reason: `volume ${v.id} no longer exists` }, 'the reason the agent was told')
})

t.test('a snapshot create delivered again after the snapshot was deleted makes nothing', async (t) => {
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'snapped' }, demo.token)
  await eventually(async () => (await statusOf(v.id)) === 'available', 10_000, 'the volume available')
  await cloud.agents[0]!.agent.stop()
  const s = await call<Snapshot>(snapshots, 'createSnapshot', { volumeId: v.id, name: 'once' }, demo.token)
  const create = await lastCast()
  cloud.agents[0] = await restart()
  const backend = cloud.agents[0].volumes
  const snapStatus = () => call<Snapshot>(snapshots, 'getSnapshot', { id: s.id }, demo.token).then((x) => x.status, (e: { code?: number }) => (notFound(e) ? 'gone' : Promise.reject(e)))
  await eventually(async () => (await snapStatus()) === 'available', 10_000, 'the snapshot available')
  t.ok(backend.snapshots.has(s.id), 'the backend made it')
  // Deleted while the agent is down, so that the agent back has no memory of the create (as after a crash).
  await cloud.agents[0].agent.stop()
  await call(snapshots, 'deleteSnapshot', { id: s.id }, demo.token)
  cloud.agents[0] = await restart()
  await eventually(async () => (await snapStatus()) === 'gone', 10_000, 'the snapshot gone')
  t.notOk(backend.snapshots.has(s.id), 'the backend deleted it')

  await deliverAgain(t, create)
  t.notOk(backend.snapshots.has(s.id), 'the snapshot create delivered again left no snapshot on the backend')
  t.equal(await snapStatus(), 'gone', 'and the API has none')
  t.same(await cloud.agents[0].agent.manager.volumeCastState(Cast.decode(create).id ?? ''), { current: false, reason: `snapshot ${s.id} no longer exists` }, 'the reason the agent was told')
  await call(volumes, 'deleteVolume', { id: v.id }, demo.token)
  await eventually(() => get(v.id).then(() => false, notFound), 10_000, 'the volume gone')
})

t.test('an agent without the volume role refuses volume work with a reason: the volume is in error, not stuck', async (t) => {
  await cloud.agents[0]!.agent.stop()
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'roleless' }, demo.token)
  cloud.agents[0] = await restart({ volume: 'off' })
  const err = await eventually(async () => {
    const x = await get(v.id)
    return x.status === 'error' ? x : undefined
  }, 10_000, 'the volume in error')
  t.match(err.statusReason, /FAILED_PRECONDITION: host 'node1' runs no volume role/)
  // The host reported no volume role: it is no longer a backend.
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 0, 5_000, 'the backend record gone')
  const refused = await call(volumes, 'createVolume', { size: 1 }, demo.token).catch((e: { code: number; details: string }) => e)
  t.match(refused, { code: status.FAILED_PRECONDITION, details: /no valid backend was found: no volume backend is up \(no host runs the volume role\)/ })
})

t.test('attach and detach casts wait for the server\'s agent; back, it does them', async (t) => {
  // The volume role on again (the test before turned it off).
  await cloud.agents[0]!.agent.stop()
  cloud.agents[0] = await restart({ volume: 'on' })
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 5_000, 'the volume backend back')
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'patient-vm', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] }, demo.token)
  const server = await cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE', demo.token)
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'attach-later' }, demo.token)
  await eventually(async () => (await statusOf(v.id)) === 'available', 10_000, 'available')
  const hypervisor = cloud.agents[0]!.driver
  const hasDisk = async () => (await hypervisor.listDisks(server.id)).some((d) => d.device === 'vdb')

  await cloud.agents[0]!.agent.stop()
  await call(cloud.c.servers, 'attachVolume', { serverId: server.id, volumeId: v.id }, demo.token)
  await new Promise((res) => setTimeout(res, 500))
  t.equal(await statusOf(v.id), 'attaching', 'attaching while the agent is down')
  await hypervisor.init()
  t.notOk(await hasDisk(), 'nothing reached the hypervisor')
  cloud.agents[0] = await restart()
  await eventually(async () => (await statusOf(v.id)) === 'in-use', 10_000, 'in-use')
  t.ok(await hasDisk(), 'the agent back attached it')

  await cloud.agents[0]!.agent.stop()
  await call(cloud.c.servers, 'detachVolume', { serverId: server.id, volumeId: v.id }, demo.token)
  t.equal(await statusOf(v.id), 'detaching')
  cloud.agents[0] = await restart()
  await eventually(async () => (await statusOf(v.id)) === 'available', 10_000, 'available')
  t.notOk(await hasDisk(), 'the agent back detached it')
  await call(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
  await call(volumes, 'deleteVolume', { id: v.id }, demo.token)
})

t.test("the agent's start-up sync: libvirt is the truth for what is attached", async (t) => {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'sync-vm', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] }, demo.token)
  const server = await cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE', demo.token)
  const lost = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'lost' }, demo.token)
  const stray = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'stray' }, demo.token)
  const pending = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'pending' }, demo.token)
  for (const v of [lost, stray, pending]) await eventually(async () => (await statusOf(v.id)) === 'available', 10_000, `${v.name} available`)
  await call(cloud.c.servers, 'attachVolume', { serverId: server.id, volumeId: lost.id, device: '/dev/vdb' }, demo.token)
  await eventually(async () => (await statusOf(lost.id)) === 'in-use', 10_000, 'in-use')
  const hypervisor = cloud.agents[0]!.driver
  const disks = async () => (await hypervisor.listDisks(server.id)).filter((d) => d.device !== 'vda').map((d) => `${d.device}=${d.serial}`).sort()

  // While the agent is down, the host and the records part ways: the disk of `lost` leaves the guest,
  // one of `stray` (a volume no attachment asks for) appears, and an attach of `pending` is cast.
  await cloud.agents[0]!.agent.stop()
  await hypervisor.init()
  await hypervisor.detachDisk(server.id, 'vdb')
  const where = await cloud.agents[0]!.volumes.export(stray.id, 'node1')
  if (where.kind !== 'file') throw new Error(`a volume of the server's own host exports as ${where.kind}, not file`)
  await hypervisor.attachDisk(server.id, { path: where.path, format: where.format, bus: 'virtio', device: 'vdd', serial: volumeSerial(stray.id) })
  await call(cloud.c.servers, 'attachVolume', { serverId: server.id, volumeId: pending.id, device: '/dev/vdc' }, demo.token)
  t.equal(await statusOf(pending.id), 'attaching')

  cloud.agents[0] = await restart()
  // The sync ran before the agent said it runs: what it fixed is fixed now.
  t.equal(await statusOf(lost.id), 'available', 'the volume whose disk left the guest is available')
  t.same((await get(lost.id)).attachments, [], 'and attached to nothing')
  const s = await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, demo.token)
  t.match(s.fault?.message, new RegExp(`volume ${lost.id} was not attached to the guest on host 'node1' when its agent started`))
  await eventually(async () => (await statusOf(pending.id)) === 'in-use', 10_000, 'the pending attach resumed')
  t.same(await disks(), [`vdc=${volumeSerial(pending.id)}`], 'the stray disk was detached; the pending one attached')
  t.equal(await statusOf(stray.id), 'available', 'the stray volume stays available')

  await call(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
  for (const v of [lost, stray, pending]) await eventually(async () => (await statusOf(v.id)) === 'available', 10_000, `${v.name} available`)
  for (const v of [lost, stray, pending]) await call(volumes, 'deleteVolume', { id: v.id }, demo.token)
})
