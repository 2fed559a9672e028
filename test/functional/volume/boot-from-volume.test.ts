// Boot from volume through the real gRPC API (CreateServer with block device mappings), a real
// nats-server and two agents whose hypervisor and volume backend are the fakes: a server boots
// from an existing volume (reserved → attaching → in-use) or from a volume it makes from the
// image (created on its host, the build waiting for it), its root disk is the volume's file on
// vda and other volumes follow on vdb…; deleting it detaches its volumes and deletes exactly those
// marked delete_on_termination; every bad mapping gets its own message and changes nothing, and
// so does a create over the volumes quota.
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, client, failure, fieldOf, status, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { QuotasClient } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import { SnapshotsClient, VolumesClient, type ListVolumesResponse, type Snapshot, type Volume } from '../../../proto/gen/strato/volume/v1/volume.js'

let cloud: TestCloud
let demo: Tenant
let volumes: VolumesClient
let quotas: QuotasClient

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'], agent: { fakeVolumes: { totalGb: 100 } } })
  demo = await tenant(cloud.s, 'demo')
  volumes = client(VolumesClient, cloud.s.address)
  quotas = client(QuotasClient, cloud.s.address)
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 10_000, 'the volume backend')
})
t.teardown(async () => {
  volumes.close()
  quotas.close()
  await cloud.close()
})

const node1 = () => cloud.agents[0]!
const getVolume = (id: string, token = demo.token) => call<Volume>(volumes, 'getVolume', { id }, token)
const listVolumes = async (token = demo.token) => (await call<ListVolumesResponse>(volumes, 'listVolumes', {}, token)).volumes
const gone = (id: string) => eventually(() => getVolume(id, cloud.s.adminToken).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 15_000, `volume ${id} deleted`)
async function waitVolume(id: string, want: string): Promise<Decoded<Volume>> {
  let last: Decoded<Volume> | undefined
  return eventually(async () => {
    last = await getVolume(id)
    return last.status === want ? last : undefined
  }, 15_000, `volume ${id} ${want}`).catch((err: Error) => {
    throw new Error(`${err.message}; last: ${last?.status} ${last?.statusReason}`)
  })
}
async function newVolume(name: string, extra: object = {}): Promise<Decoded<Volume>> {
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name, ...extra }, demo.token)
  return waitVolume(v.id, 'available')
}
const create = (name: string, body: object, token = demo.token) =>
  call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: 'm1.nano', networks: [{ uuid: cloud.network.id }], ...body }, token)
const active = (id: string) => cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token)
const deleted = async (id: string) => {
  await call(cloud.c.servers, 'deleteServer', { id }, demo.token)
  await eventually(() => call<Server>(cloud.c.servers, 'getServer', { id }, demo.token).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 15_000, `server ${id} deleted`)
}
const attachmentRows = () => cloud.s.controller.db.selectFrom('volume_attachments').selectAll().execute()

t.test('boot from an existing bootable volume (--volume): in-use on vda, the image N/A; deleted with the server it stays (delete_on_termination false)', async (t) => {
  const root = await newVolume('root1', { imageId: cloud.image.id })
  t.equal(root.bootable, true, 'made from an image, it is bootable')
  const r = await create('bfv1', { imageRef: '', blockDeviceMappings: [{ sourceType: 'volume', destinationType: 'volume', uuid: root.id, bootIndex: 0 }] })
  const server = r.servers[0]!
  t.equal(server.imageId, '', 'no image: it boots from the volume')
  t.match((await getVolume(root.id)).status, /^(reserved|attaching|in-use)$/, 'promised to the server at its create')
  const up = await active(server.id)
  t.same(up.volumesAttached, [root.id], 'volumes_attached')
  const v = await waitVolume(root.id, 'in-use')
  t.match(v.attachments, [{ serverId: server.id, device: '/dev/vda' }], 'attached as vda')
  const disks = await node1().driver.listDisks(server.id)
  t.match(disks, [{ device: 'vda', path: `/fake-volumes/${root.id}`, serial: root.id.slice(0, 20) }], 'the guest\'s root disk is the volume\'s file')
  const bfvDetach = await failure(call(cloud.c.servers, 'detachVolume', { serverId: server.id, volumeId: root.id }, demo.token))
  t.equal(bfvDetach.code, status.FAILED_PRECONDITION)
  t.match(bfvDetach.details, /root/)

  await deleted(server.id)
  const after = await waitVolume(root.id, 'available')
  t.same(after.attachments, [], 'detached')
  t.equal((await attachmentRows()).filter((a) => a.volume_id === root.id).length, 0, 'no attachment record left')
  await call(volumes, 'deleteVolume', { id: root.id }, demo.token)
  await gone(root.id)
})

t.test('boot from a new volume made from the image (--boot-from-volume) with a blank data volume: the build waits for them; deleted with the server (delete_on_termination true), except one marked false', async (t) => {
  const before = (await listVolumes()).length
  const r = await create('bfv2', {
    imageRef: '',
    blockDeviceMappings: [
      { sourceType: 'image', destinationType: 'volume', uuid: cloud.image.id, bootIndex: 0, volumeSize: 1 },
      { sourceType: 'blank', destinationType: 'volume', volumeSize: 2 },
      { sourceType: 'blank', destinationType: 'volume', volumeSize: 1, deleteOnTermination: false, deviceName: '/dev/vdd' },
    ],
  })
  const server = r.servers[0]!
  t.equal((await listVolumes()).length, before + 3, 'three volumes were recorded with the server')
  const up = await active(server.id)
  t.equal(up.volumesAttached.length, 3)
  const rows = (await attachmentRows()).filter((a) => a.server_id === server.id).sort((a, b) => a.device.localeCompare(b.device))
  t.same(rows.map((a) => [a.device, a.boot_index, a.delete_on_termination, a.status]), [['vda', 0, 1, 'attached'], ['vdb', -1, 1, 'attached'], ['vdd', -1, 0, 'attached']])
  const [rootId, dataId, keptId] = rows.map((a) => a.volume_id) as [string, string, string]
  const root = await getVolume(rootId)
  t.match(root, { status: 'in-use', size: 1, bootable: true, imageId: cloud.image.id }, 'the root volume: from the image, bootable, in-use')
  t.equal(root.volumeImageMetadata.image_id, cloud.image.id)
  t.match(await getVolume(dataId), { status: 'in-use', size: 2, bootable: false })
  const disks = (await node1().driver.listDisks(server.id)).map((d) => [d.device, d.path])
  t.same(disks.sort(), [['vda', `/fake-volumes/${rootId}`], ['vdb', `/fake-volumes/${dataId}`], ['vdd', `/fake-volumes/${keptId}`]], 'the guest has them as vda, vdb, vdd')
  t.ok(node1().volumes.volumes.has(rootId), 'the backend of the server\'s host made the root volume')

  await deleted(server.id)
  await gone(rootId)
  await gone(dataId)
  const kept = await waitVolume(keptId, 'available')
  t.same(kept.attachments, [], 'the one marked delete_on_termination false stays, detached')
  await call(volumes, 'deleteVolume', { id: keptId }, demo.token)
  await gone(keptId)
})

t.test('delete_on_termination true on an existing volume: it goes with the server', async (t) => {
  const root = await newVolume('root-doomed', { imageId: cloud.image.id })
  const r = await create('bfv3', { imageRef: '', blockDeviceMappings: [{ sourceType: 'volume', uuid: root.id, bootIndex: 0, deleteOnTermination: true }] })
  await active(r.servers[0]!.id)
  await deleted(r.servers[0]!.id)
  await gone(root.id)
  t.pass('deleted with its server')
})

t.test('boot from a volume snapshot (--snapshot): a new volume of the snapshot\'s data on its host, bootable, deleted with the server', async (t) => {
  const snapshots = client(SnapshotsClient, cloud.s.address)
  t.teardown(() => snapshots.close())
  const root = await newVolume('snap-src', { imageId: cloud.image.id })
  const snap = await call<Snapshot>(snapshots, 'createSnapshot', { volumeId: root.id, name: 's1' }, demo.token)
  await eventually(async () => (await call<Snapshot>(snapshots, 'getSnapshot', { id: snap.id }, demo.token)).status === 'available', 15_000, 'the snapshot')
  const r = await create('bfv-snap', { imageRef: '', blockDeviceMappings: [{ sourceType: 'snapshot', destinationType: 'volume', uuid: snap.id, bootIndex: 0 }] })
  const up = await active(r.servers[0]!.id)
  const [made] = up.volumesAttached as [string]
  t.match(await getVolume(made), { status: 'in-use', snapshotId: snap.id, size: 1, bootable: true }, 'made from the snapshot, as big, bootable as its volume')
  await deleted(up.id)
  await gone(made)
  await call(snapshots, 'deleteSnapshot', { id: snap.id }, demo.token)
  await eventually(() => call(snapshots, 'getSnapshot', { id: snap.id }, demo.token).then(() => false, () => true), 15_000, 'the snapshot deleted')
  await call(volumes, 'deleteVolume', { id: root.id }, demo.token)
  await gone(root.id)
})

t.test('bad mappings: each refused with what and why, nothing made or reserved', async (t) => {
  const blank = await newVolume('not-bootable')
  const root = await newVolume('root-ok', { imageId: cloud.image.id })
  const before = (await listVolumes()).map((v) => `${v.id}:${v.status}`).sort()
  const servers = async () => (await call<{ servers: Server[] }>(cloud.c.servers, 'listServers', {}, demo.token)).servers.length
  const serversBefore = await servers()
  const attachmentsBefore = (await attachmentRows()).length
  const cases: Array<[string, object, number, RegExp, string?]> = [
    ['no image and no boot device', { imageRef: '', blockDeviceMappings: [] }, status.INVALID_ARGUMENT, /image_ref is required/],
    ['no image, a volume without boot_index', { imageRef: '', blockDeviceMappings: [{ sourceType: 'volume', uuid: root.id }] }, status.INVALID_ARGUMENT, /image_ref is empty, so a block device mapping with boot_index 0 is required/, 'image_ref'],
    ['image and a boot volume', { imageRef: cloud.image.id, blockDeviceMappings: [{ sourceType: 'volume', uuid: root.id, bootIndex: 0 }] }, status.INVALID_ARGUMENT, /has boot_index 0 and image_ref is .*: a server has one boot device/],
    ['two boot devices', { imageRef: '', blockDeviceMappings: [{ sourceType: 'volume', uuid: root.id, bootIndex: 0 }, { sourceType: 'image', destinationType: 'volume', uuid: cloud.image.id, bootIndex: 0, volumeSize: 1 }] }, status.INVALID_ARGUMENT, /boot indexes .* \(0, 0\) must be 0, 1, 2… with no gap and no repeat/],
    ['image source without a size', { imageRef: '', blockDeviceMappings: [{ sourceType: 'image', destinationType: 'volume', uuid: cloud.image.id, bootIndex: 0 }] }, status.INVALID_ARGUMENT, /block_device_mappings\[0\]\.volume_size is required for source_type image/, 'block_device_mappings[0].volume_size'],
    ['unknown source type', { imageRef: '', blockDeviceMappings: [{ sourceType: 'disk', uuid: root.id, bootIndex: 0 }] }, status.INVALID_ARGUMENT, /source_type must be one of image, volume, snapshot, blank, got 'disk'/, 'block_device_mappings[0].source_type'],
    ['a volume not bootable', { imageRef: '', blockDeviceMappings: [{ sourceType: 'volume', uuid: blank.id, bootIndex: 0 }] }, status.FAILED_PRECONDITION, /volume .* is not bootable, so it cannot be the boot device/],
    ['an unknown volume', { imageRef: '', blockDeviceMappings: [{ sourceType: 'volume', uuid: '3f1b0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11', bootIndex: 0 }] }, status.NOT_FOUND, /volume '3f1b0c2e-.*' not found/],
    ['a blank boot device', { imageRef: '', blockDeviceMappings: [{ sourceType: 'blank', destinationType: 'volume', volumeSize: 1, bootIndex: 0 }] }, status.INVALID_ARGUMENT, /a blank volume has nothing to boot/],
    ['an ephemeral local disk', { imageRef: cloud.image.id, blockDeviceMappings: [{ sourceType: 'blank', destinationType: 'local', volumeSize: 1 }] }, status.INVALID_ARGUMENT, /destination_type local is only for the image root disk/],
    ['one volume to two servers', { imageRef: '', maxCount: 2, blockDeviceMappings: [{ sourceType: 'volume', uuid: root.id, bootIndex: 0 }] }, status.INVALID_ARGUMENT, /can be attached to one server, and max_count is 2/],
    ['a size under the image\'s', { imageRef: '', blockDeviceMappings: [{ sourceType: 'image', destinationType: 'volume', uuid: cloud.image.id, bootIndex: 0, volumeSize: 0 }] }, status.INVALID_ARGUMENT, /volume_size is required/],
    ['vda for a data volume', { imageRef: cloud.image.id, blockDeviceMappings: [{ sourceType: 'blank', destinationType: 'volume', volumeSize: 1, deviceName: '/dev/vda' }] }, status.INVALID_ARGUMENT, /\/dev\/vda is the boot device/],
    ['an unknown volume type', { imageRef: '', blockDeviceMappings: [{ sourceType: 'image', destinationType: 'volume', uuid: cloud.image.id, bootIndex: 0, volumeSize: 1, volumeType: 'gold' }] }, status.NOT_FOUND, /volume type 'gold' not found/],
  ]
  for (const [what, body, code, message, field] of cases) {
    const err = await failure(create('bad', body))
    t.equal(err.code, code, `${what}: code`)
    t.match(err.details, message, `${what}: message`)
    if (field) t.equal(fieldOf(err), field, `${what}: field`)
  }
  // A volume of another project, even named by an admin's request for its own project, is refused.
  const other = await tenant(cloud.s, 'other')
  const theirs = await failure(create('bad', { imageRef: '', blockDeviceMappings: [{ sourceType: 'volume', uuid: root.id, bootIndex: 0 }] }, other.token))
  t.equal(theirs.code, status.NOT_FOUND, 'another project\'s volume is not found')
  t.same((await listVolumes()).map((v) => `${v.id}:${v.status}`).sort(), before, 'no volume made, none reserved')
  t.equal(await servers(), serversBefore, 'no server recorded')
  t.equal((await attachmentRows()).length, attachmentsBefore, 'no attachment recorded')
  for (const v of [blank, root]) await call(volumes, 'deleteVolume', { id: v.id }, demo.token)
  for (const v of [blank, root]) await gone(v.id)
})

t.test('over the volumes quota: refused, nothing made (no server, no volume, no allocation)', async (t) => {
  const q = await tenant(cloud.s, 'small')
  await call(quotas, 'updateQuota', { projectId: q.projectId, limits: { volumes: 1 } }, cloud.s.adminToken)
  const allocations = async () => (await cloud.s.controller.db.selectFrom('allocations').selectAll().execute()).length
  const allocationsBefore = await allocations()
  const err = await failure(create('over', {
    imageRef: '',
    blockDeviceMappings: [
      { sourceType: 'image', destinationType: 'volume', uuid: cloud.image.id, bootIndex: 0, volumeSize: 1 },
      { sourceType: 'blank', destinationType: 'volume', volumeSize: 1 },
    ],
  }, q.token))
  t.equal(err.code, status.RESOURCE_EXHAUSTED)
  t.match(err.details, /quota exceeded for volumes/)
  t.same(await listVolumes(q.token), [], 'no volume')
  t.same((await call<{ servers: Server[] }>(cloud.c.servers, 'listServers', {}, q.token)).servers, [], 'no server')
  t.equal(await allocations(), allocationsBefore, 'the claim was given back')
  await call(quotas, 'updateQuota', { projectId: q.projectId, limits: { gigabytes: 1 } }, cloud.s.adminToken)
  const big = await failure(create('over', { imageRef: '', blockDeviceMappings: [{ sourceType: 'image', destinationType: 'volume', uuid: cloud.image.id, bootIndex: 0, volumeSize: 2 }] }, q.token))
  t.equal(big.code, status.RESOURCE_EXHAUSTED)
  t.match(big.details, /quota exceeded for gigabytes/)
  t.same(await listVolumes(q.token), [], 'still no volume')
})

t.test('a volume that could not be made fails the build; the server in ERROR keeps nothing, the volume goes (delete_on_termination)', async (t) => {
  node1().volumes.failNext('create')
  const before = (await listVolumes()).map((v) => v.id).sort()
  const r = await create('bfv-broken', { imageRef: '', blockDeviceMappings: [{ sourceType: 'image', destinationType: 'volume', uuid: cloud.image.id, bootIndex: 0, volumeSize: 1 }] })
  // (the failed build may have cleaned up already: its volume is the one the create added)
  const made = (await listVolumes()).map((v) => v.id).filter((id) => !before.includes(id))
  const s = await cloud.waitFor(r.servers[0]!.id, (x) => x.status === 'ERROR', demo.token)
  t.match(s.fault?.message, /volume .* \(\/dev\/vda\) of server .* could not be made/)
  t.same(s.volumesAttached, [], 'no volume attached to the failed server')
  for (const id of made) await gone(id)
  t.same((await listVolumes()).map((v) => v.id).sort(), before, 'the volume made for it went (delete_on_termination)')
  await deleted(s.id)
})
