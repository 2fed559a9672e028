// Snapshots of servers booted from volumes (Nova's snapshot_volume_backed) through the real gRPC API,
// a real nats-server and an agent on the fake hypervisor and fake volume backend: CreateServerImage
// of such a server snapshots its volumes (forced: they are in use) and makes an image with no data
// whose block_device_mapping (bdm_v2) names the snapshots, with root_device_name and the snapshot
// properties; a server created from that image boots from a new volume made from the root volume's
// snapshot, with the data the first one had. A snapshot the quota refuses changes nothing.
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, client, failure, status, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import type { CreateServerImageResponse, CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { Image, ListImagesResponse } from '../../../proto/gen/strato/image/v1/image.js'
import { SnapshotsClient, VolumesClient, type ListSnapshotsResponse, type Snapshot, type Volume } from '../../../proto/gen/strato/volume/v1/volume.js'

let cloud: TestCloud
let demo: Tenant
let volumes: VolumesClient
let snapshots: SnapshotsClient

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'] })
  demo = await tenant(cloud.s, 'demo')
  volumes = client(VolumesClient, cloud.s.address)
  snapshots = client(SnapshotsClient, cloud.s.address)
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 10_000, 'a volume backend')
})
t.teardown(async () => {
  volumes.close()
  snapshots.close()
  await cloud.close()
})

const backend = () => cloud.agents[0]!.volumes
const marker = Buffer.from('written by the first server\n')

async function bootFromVolume(name: string, more: unknown[] = []): Promise<{ server: Decoded<Server>; volumeId: string }> {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', {
    name, flavorRef: 'm1.nano', networks: [{ uuid: cloud.network.id }],
    blockDeviceMappings: [{ sourceType: 'image', destinationType: 'volume', uuid: cloud.image.id, bootIndex: 0, volumeSize: 1, deleteOnTermination: true }, ...more],
  }, demo.token)
  const server = await cloud.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE', demo.token, 20_000, `${name} ACTIVE`)
  return { server, volumeId: server.volumesAttached[0]! }
}

/** Stops the server (its volumes' files closed: their snapshots are safe). */
async function stop(id: string): Promise<void> {
  await call(cloud.c.servers, 'stopServer', { id }, demo.token)
  await cloud.waitFor(id, (s) => s.status === 'SHUTOFF' && !s.taskState, demo.token, 20_000, 'the server SHUTOFF')
}

t.test('a volume-backed server\'s snapshot: volume snapshots and an image that names them; booting it boots from a copy', async (t) => {
  const { server, volumeId } = await bootFromVolume('bfv-source')
  backend().write(volumeId, 4096, marker)
  await stop(server.id)
  const r = await call<CreateServerImageResponse>(cloud.c.servers, 'createServerImage', { id: server.id, name: 'bfv-snap', metadata: { purpose: 'test' } }, demo.token)
  const image = await call<Image>(cloud.c.images, 'getImage', { id: r.imageId }, demo.token)
  t.match(image, { status: 'active', size: 0, owner: demo.projectId, visibility: 'private', diskFormat: 'qcow2', containerFormat: 'bare' }, 'active at once, with no data')
  t.match(image.properties, { bdm_v2: 'True', root_device_name: '/dev/vda', image_type: 'snapshot', instance_uuid: server.id, purpose: 'test' })
  const mapping = JSON.parse(image.properties.block_device_mapping!) as Array<Record<string, unknown>>
  t.equal(mapping.length, 1, 'one mapping per volume of the server')
  t.match(mapping[0], { source_type: 'snapshot', destination_type: 'volume', boot_index: 0, device_name: '/dev/vda', volume_size: 1, delete_on_termination: true })
  const snapId = mapping[0]!.snapshot_id as string
  const snap = await eventually(async () => {
    const s = await call<Snapshot>(snapshots, 'getSnapshot', { id: snapId }, demo.token)
    return s.status === 'available' ? s : undefined
  }, 20_000, 'the root volume\'s snapshot available')
  t.match(snap, { volumeId, name: 'snapshot for bfv-snap', size: 1 })
  t.same(backend().snapshots.get(snapId)?.volumeId, volumeId, 'the backend has the snapshot of the root volume')
  t.equal((await call<Server>(cloud.c.servers, 'getServer', { id: server.id }, demo.token)).status, 'SHUTOFF', 'the server is as it was')

  const c = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'bfv-copy', flavorRef: 'm1.nano', imageRef: r.imageId, networks: [{ uuid: cloud.network.id }] }, demo.token)
  const copy = await cloud.waitFor(c.servers[0]!.id, (s) => s.status === 'ACTIVE', demo.token, 20_000, 'the server from the snapshot ACTIVE')
  t.equal(copy.imageId, '', 'it boots from a volume (no image root disk)')
  t.equal(copy.volumesAttached.length, 1)
  const root = await call<Volume>(volumes, 'getVolume', { id: copy.volumesAttached[0]! }, demo.token)
  t.not(root.id, volumeId, 'a new volume')
  t.match(root, { snapshotId: snapId, status: 'in-use', size: 1, bootable: true }, 'made from the snapshot, in use')
  t.match(root.attachments, [{ serverId: copy.id, device: '/dev/vda' }])
  t.same(backend().read(root.id, 4096, marker.length), marker, 'with the data the first server wrote')

  // Deleted while the copy runs on the volume made from it: its host's guests pull it into the files
  // they have open (the copy's root volume; the first server's volume, whose newest snapshot it is).
  const deleting = await call<Snapshot>(snapshots, 'deleteSnapshot', { id: snapId }, demo.token)
  t.equal(deleting.status, 'deleting', 'deleting, while the server on the volume made from it runs')
  await eventually(() => call(snapshots, 'getSnapshot', { id: snapId }, demo.token).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 20_000, 'the snapshot gone from the API')
  t.notOk(backend().snapshots.has(snapId), 'and from the backend')
  t.same(backend().deletedWith.get(snapId)?.map((a) => [a.instanceUuid, a.volumeId]).sort(), [[copy.id, root.id], [server.id, volumeId]].sort(),
    'the delete named the servers of the volume\'s host attached to what rests on it, with their volumes (the agent pulls where one runs)')
  t.same(backend().read(root.id, 4096, marker.length), marker, 'and the volume made from it keeps its data')
  t.equal((await call<Server>(cloud.c.servers, 'getServer', { id: copy.id }, demo.token)).status, 'ACTIVE', 'the copy ran on')
})

t.test('a volume-backed snapshot the snapshot quota refuses half-way leaves nothing behind', async (t) => {
  // Two volumes: the quota admits the first one's snapshot and refuses the second's; the first is undone.
  const { server } = await bootFromVolume('bfv-quota', [{ sourceType: 'blank', destinationType: 'volume', volumeSize: 1, deleteOnTermination: true }])
  await stop(server.id)
  const images = async () => (await call<ListImagesResponse>(cloud.c.images, 'listImages', {}, demo.token)).images.length
  const snaps = async () => (await call<ListSnapshotsResponse>(snapshots, 'listSnapshots', {}, demo.token)).snapshots.length
  const [i0, s0] = [await images(), await snaps()]
  await call(cloud.c.quotas, 'updateQuota', { projectId: demo.projectId, limits: { snapshots: s0 + 1 } }, cloud.s.adminToken)
  const e = await failure(call(cloud.c.servers, 'createServerImage', { id: server.id, name: 'over' }, demo.token))
  t.equal(e.code, status.RESOURCE_EXHAUSTED, e.details)
  t.match(e.details, /snapshots/)
  t.equal(await images(), i0, 'no image made')
  await eventually(async () => (await snaps()) === s0, 20_000, 'the snapshot made before the refusal deleted')
  t.pass('no snapshot is left')
})
