// Attaching volumes to servers through the real gRPC API (Servers/AttachVolume, DetachVolume,
// ListServerVolumes and the Attachments service), a real nats-server, and agents whose
// hypervisor and volume backend are the fakes: the attach is cast to the server's host, which
// hot-plugs the backend's file; its result makes the volume in-use (or, failed, available again
// with the attachment in error and the server's fault); detach gives it back; every refusal
// names what is wrong and changes nothing; deleting a server frees its volumes, also when its
// host is down; an in-use volume extended is seen larger by the guest.
import t from 'tap'
import { startCloud, stopHostForGood, type TestCloud } from '../../helpers/cloud.js'
import { call, client, failure, status, type Decoded } from '../../helpers/grpc.js'
import { eventually, startAgent, type TestAgent } from '../../helpers/agents.js'
import { member, tenant, type Tenant } from '../network/fixtures.js'
import type { CreateServerResponse, ListServerVolumesResponse, Server, ServerVolume } from '../../../proto/gen/strato/compute/v1/servers.js'
import {
  AttachmentsClient, SnapshotsClient, VolumesClient, VolumeTypesClient,
  type Attachment, type ListAttachmentsResponse, type Snapshot, type Volume,
} from '../../../proto/gen/strato/volume/v1/volume.js'
import { FailedPrecondition, Internal } from '../../../proto/errors.js'

let cloud: TestCloud
let demo: Tenant
let other: Tenant
let volumes: VolumesClient
let attachments: AttachmentsClient
let types: VolumeTypesClient
let snapshots: SnapshotsClient
const extraAgents: TestAgent[] = []

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'], agent: { fakeVolumes: { totalGb: 200 } } })
  demo = await tenant(cloud.s, 'demo')
  other = await tenant(cloud.s, 'other')
  volumes = client(VolumesClient, cloud.s.address)
  attachments = client(AttachmentsClient, cloud.s.address)
  types = client(VolumeTypesClient, cloud.s.address)
  snapshots = client(SnapshotsClient, cloud.s.address)
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 5_000, 'the volume backend')
})
t.teardown(async () => {
  for (const c of [volumes, attachments, types, snapshots]) c.close()
  for (const a of extraAgents) await a.stop().catch(() => {})
  await cloud.close()
})

const node1 = () => cloud.agents[0]!
const getVolume = (id: string, token = demo.token) => call<Volume>(volumes, 'getVolume', { id }, token)
async function waitVolume(id: string, want: string, token = demo.token): Promise<Decoded<Volume>> {
  let last: Decoded<Volume> | undefined
  return eventually(async () => {
    last = await getVolume(id, token)
    return last.status === want ? last : undefined
  }, 10_000, `volume ${id} ${want}`).catch((err: Error) => {
    throw new Error(`${err.message}; last: ${last?.status} ${last?.statusReason}`)
  })
}
/** Volumes a test made: deleted after it (the project's quota is 10). */
const made = new Set<string>()
async function newVolume(name: string, extra: object = {}, token = demo.token): Promise<Decoded<Volume>> {
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name, ...extra }, token)
  made.add(v.id)
  return waitVolume(v.id, 'available', token)
}
t.afterEach(async () => {
  for (const id of made) {
    await call(volumes, 'deleteVolume', { id }, cloud.s.adminToken).catch(() => {})
    await eventually(() => getVolume(id, cloud.s.adminToken).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 5_000, `volume ${id} deleted`).catch(() => {})
  }
  made.clear()
})
async function newServer(name: string, token = demo.token): Promise<Decoded<Server>> {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] }, token)
  return cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE', token)
}
const attach = (serverId: string, volumeId: string, device = '', token = demo.token) => call<ServerVolume>(cloud.c.servers, 'attachVolume', { serverId, volumeId, device }, token)
const detach = (serverId: string, volumeId: string, token = demo.token) => call(cloud.c.servers, 'detachVolume', { serverId, volumeId }, token)
const serverVolumes = async (serverId: string, token = demo.token) => (await call<ListServerVolumesResponse>(cloud.c.servers, 'listServerVolumes', { serverId }, token)).volumeAttachments
const disks = (serverId: string, agent = node1()) => agent.driver.listDisks(serverId)
const rows = () => cloud.s.controller.db.selectFrom('volume_attachments').selectAll().execute()

t.test('a volume hot-plugged into a running server: attaching, then in-use, on the volume, the server and in the guest; detached, available again', async (t) => {
  const server = await newServer('vm1')
  const v = await newVolume('data1')
  const sv = await attach(server.id, v.id)
  t.match(sv, { id: v.id, serverId: server.id, volumeId: v.id, device: '/dev/vdb', status: 'attaching' }, 'the next free device after the root disk, attaching')
  t.ok(sv.attachmentId, 'the attachment behind it')
  const inUse = await waitVolume(v.id, 'in-use')
  t.equal(inUse.attachments.length, 1)
  t.match(inUse.attachments[0], { id: v.id, attachmentId: sv.attachmentId, volumeId: v.id, serverId: server.id, device: '/dev/vdb', hostName: '' })
  t.ok(inUse.attachments[0]!.attachedAt, 'attached_at is set once the host attached it')
  t.equal((await getVolume(v.id, cloud.s.adminToken)).attachments[0]!.hostName, 'node1', 'admins see the host')
  const inGuest = (await disks(server.id)).find((d) => d.device === 'vdb')
  t.match(inGuest, { path: `/fake-volumes/${v.id}`, serial: v.id.slice(0, 20), bus: 'virtio' }, 'the guest has the backend\'s file on vdb, serial = volume id (20 characters)')
  t.same(await node1().volumes.exports(), [], 'the server\'s own host attaches the file: no network export')
  const listed = await serverVolumes(server.id)
  t.match(listed, [{ id: v.id, device: '/dev/vdb', serverId: server.id, volumeId: v.id, status: 'attached' }])
  t.same((await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, demo.token)).volumesAttached, [v.id], 'the server shows it (volumes_attached)')
  const att = await call<Attachment>(attachments, 'getAttachment', { id: sv.attachmentId }, demo.token)
  t.match(att, { status: 'attached', volumeId: v.id, serverId: server.id, device: '/dev/vdb', attachMode: 'rw' })

  await detach(server.id, v.id)
  const back = await waitVolume(v.id, 'available')
  t.same(back.attachments, [], 'no attachment left on the volume')
  t.same(await serverVolumes(server.id), [], 'nor on the server')
  t.same((await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, demo.token)).volumesAttached, [])
  t.notOk((await disks(server.id)).some((d) => d.device === 'vdb'), 'the guest no longer has it')
  t.same(await node1().volumes.exports(), [], 'no export is left')
  t.equal((await rows()).filter((r) => r.volume_id === v.id).length, 0, 'the attachment record is gone')
})

t.test('a stopped server gets the volume in its definition; devices follow in order or as asked; a taken device and the same volume twice are refused', async (t) => {
  const server = await newServer('vm-stopped')
  await call(cloud.c.servers, 'stopServer', { id: server.id }, demo.token)
  await cloud.waitFor(server.id, (s) => s.status === 'SHUTOFF', demo.token)
  const a = await newVolume('a')
  const b = await newVolume('b')
  const c = await newVolume('c')
  t.equal((await attach(server.id, a.id)).device, '/dev/vdb')
  t.equal((await attach(server.id, b.id, 'vdd')).device, '/dev/vdd', 'a device as asked (with or without /dev/)')
  for (const id of [a.id, b.id]) await waitVolume(id, 'in-use')
  t.same((await disks(server.id)).map((d) => d.device).sort(), ['vda', 'vdb', 'vdd'], 'in the stopped guest\'s definition')

  const taken = await failure(attach(server.id, c.id, '/dev/vdd'))
  t.equal(taken.code, status.ALREADY_EXISTS)
  t.match(taken.details, /device \/dev\/vdd of server .* is taken/)
  const twice = await failure(attach(server.id, a.id))
  t.equal(twice.code, status.ALREADY_EXISTS, 'the same volume twice')
  t.match(twice.details, /volume .* is already attached to server .* as \/dev\/vdb/)
  const elsewhere = await newServer('vm-elsewhere')
  const single = await failure(attach(elsewhere.id, a.id))
  t.equal(single.code, status.FAILED_PRECONDITION, 'an in-use volume that is not multiattach, to another server')
  t.match(single.details, /cannot attach volume .* while its status is in-use \(attached to server .*\); its type does not allow multiattach, so it must be available/)
  await call(cloud.c.servers, 'deleteServer', { id: elsewhere.id }, demo.token)
  const root = await failure(attach(server.id, c.id, '/dev/vda'))
  t.equal(root.code, status.INVALID_ARGUMENT)
  t.match(root.details, /root disk/)
  const bad = await failure(attach(server.id, c.id, '/dev/sdb'))
  t.equal(bad.code, status.INVALID_ARGUMENT)
  t.match(bad.details, /device must be \/dev\/vdb to \/dev\/vdz/)
  t.equal((await getVolume(c.id)).status, 'available', 'the refused volume is untouched')
  t.equal((await attach(server.id, c.id)).device, '/dev/vdc', 'the first free device')
  await waitVolume(c.id, 'in-use')

  await call(cloud.c.servers, 'startServer', { id: server.id }, demo.token)
  await cloud.waitFor(server.id, (s) => s.status === 'ACTIVE', demo.token)
  t.same((await disks(server.id)).map((d) => d.device).sort(), ['vda', 'vdb', 'vdc', 'vdd'], 'started with its volumes')
  for (const v of [a, b, c]) await detach(server.id, v.id)
  for (const v of [a, b, c]) await waitVolume(v.id, 'available')
  const notAttached = await failure(detach(server.id, a.id))
  t.equal(notAttached.code, status.NOT_FOUND)
  t.match(notAttached.details, /volume .* is not attached to server/)
})

t.test('refusals name the reason and change nothing: another project, a server in ERROR, a volume in error', async (t) => {
  const mine = await newServer('vm-mine')
  const theirs = await newServer('vm-theirs', other.token)
  const v = await newVolume('guarded')
  const foreign = await failure(attach(theirs.id, v.id))
  t.equal(foreign.code, status.NOT_FOUND, 'members do not see other projects\' servers')
  const theirVolume = await failure(attach(mine.id, v.id, '', other.token))
  t.equal(theirVolume.code, status.NOT_FOUND)
  const admin = await failure(attach(theirs.id, v.id, '', cloud.s.adminToken))
  t.equal(admin.code, status.FAILED_PRECONDITION)
  t.match(admin.details, /volume .* belongs to project .* and server .* to project .*; a volume attaches only to servers of its own project/)

  node1().driver.injectFailure({ operation: 'spawn' })
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'vm-broken', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] }, demo.token)
  const broken = await cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ERROR', demo.token)
  const err = await failure(attach(broken.id, v.id))
  t.equal(err.code, status.FAILED_PRECONDITION)
  t.match(err.details, /cannot attach a volume to server .* while it is ERROR \(vm_state error\); it must be ACTIVE or SHUTOFF/)

  // Readers of the project see the server's volumes but do not attach (the policy table).
  const reader = await member(cloud.s, 'demo-reader', demo.projectId, 'demo', 'reader')
  const denied = await failure(attach(mine.id, v.id, '', reader.token))
  t.equal(denied.code, status.PERMISSION_DENIED, 'readers do not attach')
  t.same(await serverVolumes(mine.id, reader.token), [], 'readers list the server\'s volumes')
  t.equal((await failure(call(attachments, 'createAttachment', { volumeId: v.id, serverId: mine.id }, reader.token))).code, status.PERMISSION_DENIED, 'nor reserve')

  await call(volumes, 'resetVolumeState', { id: v.id, status: 'error' }, cloud.s.adminToken)
  const notAvailable = await failure(attach(mine.id, v.id))
  t.equal(notAvailable.code, status.FAILED_PRECONDITION)
  t.match(notAvailable.details, /cannot attach volume .* while its status is error; attach needs status available/)
  await call(volumes, 'resetVolumeState', { id: v.id, status: 'available' }, cloud.s.adminToken)
  const after = await getVolume(v.id)
  t.equal(after.status, 'available')
  t.same(after.attachments, [])
  t.equal((await rows()).filter((x) => x.volume_id === v.id).length, 0, 'no attachment was recorded')
  for (const s of [mine.id, broken.id]) await call(cloud.c.servers, 'deleteServer', { id: s }, demo.token)
  await call(cloud.c.servers, 'deleteServer', { id: theirs.id }, other.token)
})

t.test('a host that fails to attach: the attachment in error with the reason, the volume available, the server\'s fault; it can be attached again', async (t) => {
  const server = await newServer('vm-fail')
  const v = await newVolume('unlucky')
  node1().driver.injectFailure({ operation: 'attachDisk', uuid: server.id, error: new Internal('the hypervisor choked') })
  const sv = await attach(server.id, v.id)
  const back = await waitVolume(v.id, 'available')
  t.same(back.attachments, [], 'a failed attachment is not one of the volume\'s')
  const att = await call<Attachment>(attachments, 'getAttachment', { id: sv.attachmentId }, demo.token)
  t.equal(att.status, 'error')
  t.match(att.statusReason, /INTERNAL: .*the hypervisor choked/)
  const s = await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, demo.token)
  t.equal(s.status, 'ACTIVE', 'the server stays as it was')
  t.match(s.fault?.message, /attaching volume .* failed: .*the hypervisor choked/)
  t.same(await serverVolumes(server.id), [], 'nothing on the server')

  const again = await attach(server.id, v.id)
  t.equal(again.device, '/dev/vdb', 'the failed attachment holds no device')
  await waitVolume(v.id, 'in-use')
  const listed = await call<ListAttachmentsResponse>(attachments, 'listAttachments', { volumeId: v.id }, demo.token)
  t.same(listed.attachments.map((a) => a.status).sort(), ['attached', 'error'])
  const gone = await call<Attachment>(attachments, 'deleteAttachment', { id: sv.attachmentId }, demo.token)
  t.equal(gone.status, 'error', 'a failed attachment is deleted at once')
  t.equal((await failure(call(attachments, 'getAttachment', { id: sv.attachmentId }, demo.token))).code, status.NOT_FOUND)

  // A detach the guest does not finish leaves the volume attached (Cinder's roll_detaching).
  node1().driver.injectFailure({ operation: 'detachDisk', uuid: server.id })
  await detach(server.id, v.id)
  await eventually(async () => (await rows()).find((r) => r.volume_id === v.id && r.status === 'attached' && r.status_reason), 10_000, 'the detach failed')
  t.equal((await getVolume(v.id)).status, 'in-use', 'still in use')
  t.ok((await disks(server.id)).some((d) => d.device === 'vdb'), 'still in the guest')
  await detach(server.id, v.id)
  await waitVolume(v.id, 'available')
  await call(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
})

t.test('the Attachments service: a reservation holds the volume until deleted; deleting an attached one detaches it first', async (t) => {
  const server = await newServer('vm-cinder')
  const v = await newVolume('reserved')
  const r = await call<Attachment>(attachments, 'createAttachment', { volumeId: v.id, serverId: server.id }, demo.token)
  t.match(r, { status: 'reserved', device: '/dev/vdb', volumeId: v.id, serverId: server.id })
  t.equal((await getVolume(v.id)).status, 'reserved')
  t.notOk((await disks(server.id)).some((d) => d.device === 'vdb'), 'nothing reached the hypervisor')
  const busy = await failure(call(volumes, 'deleteVolume', { id: v.id }, demo.token))
  t.match(busy.details, /while its status is reserved/)
  await call(attachments, 'deleteAttachment', { id: r.id }, demo.token)
  t.equal((await getVolume(v.id)).status, 'available', 'the reservation ended')

  const sv = await attach(server.id, v.id)
  await waitVolume(v.id, 'in-use')
  const del = await call<Attachment>(attachments, 'deleteAttachment', { id: sv.attachmentId }, demo.token)
  t.equal(del.status, 'detaching', 'an attached attachment is detached, not only forgotten')
  await waitVolume(v.id, 'available')
  t.notOk((await disks(server.id)).some((d) => d.device === 'vdb'), 'gone from the guest too')
  const forbidden = await failure(call(attachments, 'listAttachments', { allProjects: true }, demo.token))
  t.equal(forbidden.code, status.PERMISSION_DENIED)
  await call(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
})

t.test('multiattach volumes attach to several servers and stay in-use until the last detach', async (t) => {
  await call(types, 'createVolumeType', { name: 'shared', extraSpecs: { multiattach: '<is> True' } }, cloud.s.adminToken)
  const s1 = await newServer('vm-m1')
  const s2 = await newServer('vm-m2')
  const v = await newVolume('shared', { volumeType: 'shared' })
  await attach(s1.id, v.id)
  await waitVolume(v.id, 'in-use')
  await attach(s2.id, v.id)
  await eventually(async () => (await getVolume(v.id)).attachments.filter((a) => a.attachedAt).length === 2 && (await getVolume(v.id)).status === 'in-use', 10_000, 'attached twice')
  // On the volume's own host too, each guest is a client of the one network export (QEMU lets one process alone write a qcow2 file).
  for (const s of [s1, s2]) {
    const d = (await disks(s.id)).find((x) => x.device === 'vdb')
    t.match(d, { network: { protocol: 'nbd', name: `volume-${v.id}` }, format: 'raw', shareable: true }, `server ${s.name}: the volume's NBD export, shareable`)
  }
  t.same(await node1().volumes.exports(), [{ volumeId: v.id, host: 'node1' }], 'one export, for this host')
  await detach(s1.id, v.id)
  const left = await eventually(async () => {
    const now = await getVolume(v.id)
    return now.status !== 'detaching' ? now : undefined
  }, 10_000, 'the detach done')
  t.equal(left.status, 'in-use', 'still in use by the other server')
  t.same(left.attachments.map((a) => a.serverId), [s2.id])
  t.notOk((await disks(s1.id)).some((x) => x.device === 'vdb'), 'the first server has the disk no more')
  t.same(await node1().volumes.exports(), [{ volumeId: v.id, host: 'node1' }], 'the export serves the other server on')
  await detach(s2.id, v.id)
  await waitVolume(v.id, 'available')
  t.same(await node1().volumes.exports(), [], 'the last detach ended the export')
  // A volume that is not multiattach is still its file here.
  const single = await newVolume('single')
  await attach(s1.id, single.id)
  await waitVolume(single.id, 'in-use')
  t.match((await disks(s1.id)).find((x) => x.device === 'vdb'), { path: `/fake-volumes/${single.id}` }, 'another volume is attached as its file')
  t.notOk((await disks(s1.id)).find((x) => x.device === 'vdb')?.shareable, 'not shareable')
  await detach(s1.id, single.id)
  await waitVolume(single.id, 'available')
  for (const s of [s1, s2]) await call(cloud.c.servers, 'deleteServer', { id: s.id }, demo.token)
})

t.test('an in-use volume extended: the backend grows it and the running guest is told the new size', async (t) => {
  const server = await newServer('vm-grow')
  const v = await newVolume('grows')
  await attach(server.id, v.id)
  await waitVolume(v.id, 'in-use')
  const ext = await call<Volume>(volumes, 'extendVolume', { id: v.id, newSize: 3 }, demo.token)
  t.equal(ext.status, 'extending')
  const grown = await waitVolume(v.id, 'in-use')
  t.equal(grown.size, 3)
  t.equal(node1().volumes.volumes.get(v.id)!.sizeGb, 3, 'the backend grew it')
  t.equal(node1().driver.diskSizeSeen(server.id, 'vdb'), 3 * 1024 ** 3, 'the guest was told (virDomainBlockResize)')
  await detach(server.id, v.id)
  await waitVolume(v.id, 'available')
  await call(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
})

t.test('deleting a server frees its volumes', async (t) => {
  const server = await newServer('vm-del')
  const a = await newVolume('del-a')
  const b = await newVolume('del-b')
  await attach(server.id, a.id)
  await attach(server.id, b.id)
  for (const v of [a, b]) await waitVolume(v.id, 'in-use')
  await call(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
  for (const v of [a, b]) {
    const back = await waitVolume(v.id, 'available')
    t.same(back.attachments, [])
  }
  t.equal((await rows()).filter((r) => r.server_id === server.id).length, 0, 'no attachment record is left')
  await call(volumes, 'deleteVolume', { id: a.id }, demo.token)
  await eventually(() => getVolume(a.id).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 5_000, 'deleted')
})

t.test('a volume on another host is attached over the network: its host exports it, detach ends the export, the start-up sync ends stray ones', async (t) => {
  const server = await newServer('vm-near')
  let far = await startAgent(cloud.nats.url, 'node2', { powerSyncIntervalMs: 200, fakeVolumes: { backendName: 'far' } })
  extraAgents.push(far)
  await cloud.s.controller.hosts.discover()
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 2, 5_000, 'the second backend')
  await call(types, 'createVolumeType', { name: 'far', extraSpecs: { volume_backend_name: 'far' } }, cloud.s.adminToken)
  const v = await newVolume('far-away', { volumeType: 'far' })
  const nearHost = (await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, cloud.s.adminToken)).host
  const near = [...cloud.agents, ...extraAgents].find((a) => a.agent.config.host === nearHost)!
  t.not(nearHost, 'node2', 'the server is on another host than the volume')
  const snap = await call<Snapshot>(snapshots, 'createSnapshot', { volumeId: v.id, name: 'before-attach' }, demo.token)
  await eventually(async () => (await call<Snapshot>(snapshots, 'getSnapshot', { id: snap.id }, demo.token)).status === 'available', 10_000, 'the snapshot available')
  await attach(server.id, v.id, '/dev/vdc')
  await waitVolume(v.id, 'in-use')
  const disk = (await near.driver.listDisks(server.id)).find((d) => d.device === 'vdc')
  t.match(disk?.network, { protocol: 'nbd', tls: true, name: `volume-${v.id}` }, 'the guest has a network disk: the NBD export of the volume')
  t.same(await far.volumes.exports(), [{ volumeId: v.id, host: nearHost }], 'the volume host exports it to the server\'s host')
  t.same(await near.volumes.exports(), [], 'the server\'s host exports nothing')
  // Its newest snapshot rests under the file the export's daemon has open: deleted all the same (the
  // volume's host has that daemon merge it into the file live), while the server on the other host runs.
  await call(snapshots, 'deleteSnapshot', { id: snap.id }, demo.token)
  await eventually(() => call(snapshots, 'getSnapshot', { id: snap.id }, demo.token).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 10_000, 'the snapshot under an exported volume gone from the API')
  t.notOk(far.volumes.snapshots.has(snap.id), 'and from its backend')
  t.same(far.volumes.deletedWith.get(snap.id), [], 'no server of the volume\'s host was named: the export is the volume host\'s own to merge into')
  t.same(await far.volumes.exports(), [{ volumeId: v.id, host: nearHost }], 'the export still serves the server')

  // Extended in use: the volume host grows it, and the server's host is told (an extend_volume cast, Nova's volume-extended event).
  await call<Volume>(volumes, 'extendVolume', { id: v.id, newSize: 2 }, demo.token)
  t.equal((await waitVolume(v.id, 'in-use')).size, 2, 'extended: in-use at 2 GiB')
  t.equal(far.volumes.volumes.get(v.id)!.sizeGb, 2, 'the volume host\'s backend grew it')
  await eventually(async () => near.driver.diskSizeSeen(server.id, 'vdc') === 2 * 1024 ** 3, 10_000, 'the guest on the server\'s host to be told 2 GiB')
  t.pass('the guest on the server\'s host was told the new size (virDomainBlockResize there)')
  // Its hypervisor failing: the volume is extended all the same (as Cinder), the server's fault says why.
  near.driver.injectFailure({ operation: 'resizeDisk', uuid: server.id, error: new FailedPrecondition('QEMU refused the resize: injected') })
  await call<Volume>(volumes, 'extendVolume', { id: v.id, newSize: 3 }, demo.token)
  t.equal((await waitVolume(v.id, 'in-use')).size, 3, 'extended again: in-use at 3 GiB')
  const fault = await eventually(async () => (await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, cloud.s.adminToken)).fault?.message || undefined, 10_000, 'the server\'s fault')
  t.match(fault, new RegExp(`did not learn the new size of volume ${v.id}: QEMU refused the resize: injected`), 'the server\'s fault names the volume and the reason')
  t.equal(near.driver.diskSizeSeen(server.id, 'vdc'), 2 * 1024 ** 3, 'and the guest still has 2 GiB')
  t.same((await getVolume(v.id)).attachments.map((a) => a.serverId), [server.id], 'still attached')
  await detach(server.id, v.id)
  await waitVolume(v.id, 'available')
  t.notOk((await near.driver.listDisks(server.id)).some((d) => d.device === 'vdc'), 'detached from the guest')
  t.same(await far.volumes.exports(), [], 'and the export ended')

  // A server booted from a volume of the other host's backend: its root disk is that host's NBD export
  // (the guest spec once took only files for its disks and refused it: "disks[0].path must be absolute").
  const root = await newVolume('far-root', { volumeType: 'far', imageId: cloud.image.id })
  await cloud.s.controller.hosts.update('node2', { enabled: false })
  const booted = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'vm-far-root', flavorRef: 'm1.nano', imageRef: '', networks: [{ uuid: cloud.network.id }], blockDeviceMappings: [{ sourceType: 'volume', destinationType: 'volume', uuid: root.id, bootIndex: 0 }] }, demo.token)
    .finally(() => cloud.s.controller.hosts.update('node2', { enabled: true }))
  const bfv = await cloud.waitFor(booted.servers[0]!.id, (s) => s.status === 'ACTIVE' || s.status === 'ERROR', demo.token)
  t.equal(bfv.status, 'ACTIVE', `ACTIVE (${bfv.fault?.message ?? 'no fault'})`)
  t.equal((await call<Server>(cloud.c.servers, 'getServer', { id: bfv.id }, cloud.s.adminToken)).host, nearHost, 'on the other host than its root volume')
  t.match((await near.driver.listDisks(bfv.id)).find((d) => d.device === 'vda'), { network: { protocol: 'nbd', tls: true, name: `volume-${root.id}` } }, 'its root disk is the volume host\'s NBD export')
  t.same(await far.volumes.exports(), [{ volumeId: root.id, host: nearHost }], 'exported to the server\'s host')
  await call(cloud.c.servers, 'deleteServer', { id: bfv.id }, demo.token)
  await waitVolume(root.id, 'available')
  await eventually(async () => (await far.volumes.exports()).length === 0, 10_000, 'the root volume\'s export ended with its server')
  t.pass('deleting the server ends the export')

  // An export no attachment needs (its end was lost) is ended by the volume host's start-up sync.
  await far.volumes.export(v.id, 'node9')
  await far.stop()
  const stopped = extraAgents.indexOf(far)
  far = await startAgent(cloud.nats.url, 'node2', { powerSyncIntervalMs: 200, volumeDriver: far.volumes, uuid: far.agent.uuid, stateDir: far.agent.config.stateDir })
  extraAgents[stopped] = far
  await eventually(async () => (await far.volumes.exports()).length === 0, 10_000, 'the stray export ended')
  t.pass('the stray export is ended at start-up')
  await call(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
})

t.test('a server whose host is gone is deleted here and still frees its volumes', async (t) => {
  const server = await newServer('vm-orphan')
  const v = await newVolume('orphaned')
  await attach(server.id, v.id)
  await waitVolume(v.id, 'in-use')
  const host = (await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, cloud.s.adminToken)).host
  await stopHostForGood(cloud, [...cloud.agents, ...extraAgents].find((a) => a.agent.config.host === host)!)
  const deleted = await call<Server>(cloud.c.servers, 'deleteServer', { id: server.id }, demo.token)
  t.equal(deleted.status, 'DELETED', 'deleted locally: its host is down')
  const back = await waitVolume(v.id, 'available')
  t.same(back.attachments, [])
})
