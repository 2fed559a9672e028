// Volumes through the real gRPC API, a real nats-server and two agents whose volume role runs the
// fake volume driver: create (blank, from an image, from a snapshot, from a volume) is scheduled
// by capacity and cast to the backend's host; results set the status (available, or error with
// the backend's reason); delete is refused while snapshots exist unless cascaded; bad input
// changes nothing; 50 concurrent creates admit exactly the quota, and per-type quotas hold too.
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, client, failure, status, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { QuotasClient, type QuotaSet } from '../../../proto/gen/strato/compute/v1/compute.js'
import {
  SnapshotsClient, VolumesClient, VolumeTypesClient,
  type ListSnapshotsResponse, type ListVolumesResponse, type ListVolumeTypesResponse, type Snapshot, type Volume, type VolumeType,
} from '../../../proto/gen/strato/volume/v1/volume.js'

let cloud: TestCloud
let demo: Tenant
let volumes: VolumesClient
let snapshots: SnapshotsClient
let types: VolumeTypesClient
let quotas: QuotasClient

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1', 'node2'], agent: { fakeVolumes: { totalGb: 200 } } })
  demo = await tenant(cloud.s, 'demo')
  volumes = client(VolumesClient, cloud.s.address)
  snapshots = client(SnapshotsClient, cloud.s.address)
  types = client(VolumeTypesClient, cloud.s.address)
  quotas = client(QuotasClient, cloud.s.address)
  // Both backends have reported their capacity.
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 2, 5_000, 'two volume backends')
})
t.teardown(async () => {
  for (const c of [volumes, snapshots, types, quotas]) c.close()
  await cloud.close()
})

const get = (id: string, token = demo.token) => call<Volume>(volumes, 'getVolume', { id }, token)
async function waitStatus(id: string, want: string, token = demo.token): Promise<Decoded<Volume>> {
  let last: Decoded<Volume> | undefined
  return eventually(async () => {
    last = await get(id, token)
    return last.status === want ? last : undefined
  }, 5_000, `volume ${id} ${want}`).catch((err: Error) => {
    throw new Error(`${err.message}; last: ${last?.status} ${last?.statusReason}`)
  })
}
async function gone(id: string): Promise<void> {
  await eventually(() => get(id).then(() => false, (e: { code?: number }) => e.code === status.NOT_FOUND), 5_000, `volume ${id} gone`)
}
const backendOf = (id: string) => cloud.agents.find((a) => a.volumes.volumes.has(id))

t.test('the default type __DEFAULT__ exists; types are created by admins with extra specs', async (t) => {
  const list = await call<ListVolumeTypesResponse>(types, 'listVolumeTypes', {}, demo.token)
  t.ok(list.volumeTypes.some((x) => x.name === '__DEFAULT__'), 'the default type is listed')
  const e = await failure(call(types, 'createVolumeType', { name: 'nope' }, demo.token))
  t.equal(e.code, status.PERMISSION_DENIED, 'members do not create types')
  const fast = await call<VolumeType>(types, 'createVolumeType', { name: 'fast', extraSpecs: { volume_backend_name: 'fake', multiattach: '<is> True' } }, cloud.s.adminToken)
  t.same(fast.extraSpecs, { volume_backend_name: 'fake', multiattach: '<is> True' })
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'typed', volumeType: 'fast' }, demo.token)
  t.equal(v.volumeType, 'fast')
  t.equal(v.multiattach, true, 'multiattach comes from the type')
  await waitStatus(v.id, 'available')
  const busy = await failure(call(types, 'deleteVolumeType', { id: 'fast' }, cloud.s.adminToken))
  t.equal(busy.code, status.FAILED_PRECONDITION, 'a type in use is not deleted')
  await call(volumes, 'deleteVolume', { id: v.id }, demo.token)
  await gone(v.id)
  await call(types, 'deleteVolumeType', { id: 'fast' }, cloud.s.adminToken)
  const def = await failure(call(types, 'deleteVolumeType', { id: '__DEFAULT__' }, cloud.s.adminToken))
  t.equal(def.code, status.FAILED_PRECONDITION, 'the default type stays')
})

t.test('a blank volume is created on a backend, shown with Cinder fields, extended and deleted', async (t) => {
  const v = await call<Volume>(volumes, 'createVolume', { size: 2, name: 'data', description: 'd', metadata: { k: 'v' } }, demo.token)
  t.match(v, { status: 'creating', size: 2, name: 'data', volumeType: '__DEFAULT__', bootable: false, projectId: demo.projectId, userId: demo.userId, metadata: { k: 'v' }, attachments: [] })
  t.equal(v.host, '', 'members do not see the backend host')
  t.equal(v.backendName, '', 'nor its backend')
  const ok = await waitStatus(v.id, 'available')
  t.ok(ok.availabilityZone, 'the zone is the backend host\'s')
  t.equal(backendOf(v.id)?.volumes.volumes.get(v.id)?.sizeGb, 2, 'the backend holds it')
  const admin = await get(v.id, cloud.s.adminToken)
  t.match(admin.host, /^node[12]$/, 'admins see the host')
  t.equal(admin.backendName, 'fake', 'and its backend (Cinder\'s host@backend#pool)')

  const ext = await call<Volume>(volumes, 'extendVolume', { id: v.id, newSize: 3 }, demo.token)
  t.equal(ext.status, 'extending')
  const grown = await waitStatus(v.id, 'available')
  t.equal(grown.size, 3, 'size follows the backend\'s extend')
  const shrink = await failure(call(volumes, 'extendVolume', { id: v.id, newSize: 2 }, demo.token))
  t.equal(shrink.code, status.INVALID_ARGUMENT)

  const upd = await call<Volume>(volumes, 'updateVolume', { id: v.id, name: 'data2', setMetadata: { a: 'b' }, unsetMetadata: ['k'], bootable: true }, demo.token)
  t.match(upd, { name: 'data2', metadata: { a: 'b' }, bootable: true })
  t.notOk('k' in upd.metadata)

  const del = await call<Volume>(volumes, 'deleteVolume', { id: v.id }, demo.token)
  t.equal(del.status, 'deleting')
  await gone(v.id)
  t.notOk(backendOf(v.id), 'the backend deleted it')
})

t.test('snapshots: a volume with snapshots is not deleted unless cascaded; volumes from a snapshot and from a volume carry the data', async (t) => {
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'src' }, demo.token)
  await waitStatus(v.id, 'available')
  const backend = backendOf(v.id)!
  backend.volumes.write(v.id, 4096, Buffer.from('hello volume'))
  const s = await call<Snapshot>(snapshots, 'createSnapshot', { volumeId: v.id, name: 'snap1' }, demo.token)
  t.match(s, { status: 'creating', volumeId: v.id, size: 1, name: 'snap1' })
  await eventually(async () => (await call<Snapshot>(snapshots, 'getSnapshot', { id: s.id }, demo.token)).status === 'available', 5_000, 'snapshot available')
  backend.volumes.write(v.id, 4096, Buffer.from('changed!!!!!'))

  const refused = await failure(call(volumes, 'deleteVolume', { id: v.id }, demo.token))
  t.equal(refused.code, status.FAILED_PRECONDITION)
  t.match(refused.details, /has 1 snapshot.*cascade/)
  t.equal((await get(v.id)).status, 'available', 'nothing changed')

  const fromSnap = await call<Volume>(volumes, 'createVolume', { snapshotId: s.id, name: 'restored' }, demo.token)
  t.equal(fromSnap.size, 1, 'the size comes from the snapshot')
  t.equal(fromSnap.snapshotId, s.id)
  await waitStatus(fromSnap.id, 'available')
  t.equal(backendOf(fromSnap.id), backend, 'made on the snapshot\'s backend')
  t.equal(backend.volumes.read(fromSnap.id, 4096, 12).toString(), 'hello volume', 'with the snapshot\'s data')

  const clone = await call<Volume>(volumes, 'createVolume', { sourceVolid: v.id, size: 2, name: 'clone' }, demo.token)
  t.equal(clone.sourceVolid, v.id)
  await waitStatus(clone.id, 'available')
  t.equal(backend.volumes.read(clone.id, 4096, 12).toString(), 'changed!!!!!', 'a clone has the source\'s data now')

  const listed = await call<ListSnapshotsResponse>(snapshots, 'listSnapshots', { volumeId: v.id }, demo.token)
  t.same(listed.snapshots.map((x) => x.id), [s.id])

  await call(volumes, 'deleteVolume', { id: v.id, cascade: true }, demo.token)
  await gone(v.id)
  const snapGone = await failure(call(snapshots, 'getSnapshot', { id: s.id }, demo.token))
  t.equal(snapGone.code, status.NOT_FOUND, 'cascade deleted the snapshot')
  t.equal(backend.volumes.read(fromSnap.id, 4096, 12).toString(), 'hello volume', 'the volume made from it keeps its data')
  for (const id of [fromSnap.id, clone.id]) await call(volumes, 'deleteVolume', { id }, demo.token)
  for (const id of [fromSnap.id, clone.id]) await gone(id)
})

t.test('a volume from an image is bootable and shows the image metadata', async (t) => {
  const v = await call<Volume>(volumes, 'createVolume', { imageId: 'cirros', name: 'boot' }, demo.token)
  t.equal(v.bootable, true)
  t.equal(v.imageId, cloud.image.id)
  t.match(v.volumeImageMetadata, { image_id: cloud.image.id, image_name: 'cirros', disk_format: 'qcow2' })
  t.equal(v.size, 1, 'the size defaults to the image\'s (rounded up to GiB)')
  await waitStatus(v.id, 'available')
  await call(volumes, 'deleteVolume', { id: v.id }, demo.token)
  await gone(v.id)
})

t.test('a backend failure sets error with its reason; the status table refuses actions by status, naming it', async (t) => {
  for (const a of cloud.agents) a.volumes.failNext('create', 'RESOURCE_EXHAUSTED', 'the disk is on fire')
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'doomed' }, demo.token)
  const err = await waitStatus(v.id, 'error')
  t.match(err.statusReason, /RESOURCE_EXHAUSTED: the disk is on fire/)
  for (const a of cloud.agents) a.volumes.clearFailures() // the other host's was not used
  const e = await failure(call(volumes, 'extendVolume', { id: v.id, newSize: 5 }, demo.token))
  t.equal(e.code, status.FAILED_PRECONDITION)
  t.match(e.details, /while its status is error; extend needs status available/)
  const snap = await failure(call(snapshots, 'createSnapshot', { volumeId: v.id }, demo.token))
  t.match(snap.details, /snapshot volume .* while its status is error/)
  // Members cannot reset; admins can.
  t.equal((await failure(call(volumes, 'resetVolumeState', { id: v.id, status: 'available' }, demo.token))).code, status.PERMISSION_DENIED)
  const bad = await failure(call(volumes, 'resetVolumeState', { id: v.id, status: 'fine' }, cloud.s.adminToken))
  t.equal(bad.code, status.INVALID_ARGUMENT)
  const reset = await call<Volume>(volumes, 'resetVolumeState', { id: v.id, status: 'maintenance' }, cloud.s.adminToken)
  t.equal(reset.status, 'maintenance')
  const del = await failure(call(volumes, 'deleteVolume', { id: v.id }, demo.token))
  t.match(del.details, /cannot delete volume .* while its status is maintenance; delete needs status available or error or error_extending/)
  t.equal((await failure(call(volumes, 'deleteVolume', { id: v.id, force: true }, demo.token))).code, status.PERMISSION_DENIED, 'force is for admins')
  // In use (as an attachment will make it): delete is refused, even forced, and nothing changes.
  await call(volumes, 'resetVolumeState', { id: v.id, status: 'in-use' }, cloud.s.adminToken)
  const inUse = await failure(call(volumes, 'deleteVolume', { id: v.id }, demo.token))
  t.match(inUse.details, /cannot delete volume .* while its status is in-use/)
  const forced = await failure(call(volumes, 'deleteVolume', { id: v.id, force: true }, cloud.s.adminToken))
  t.match(forced.details, /cannot force-delete volume .* while its status is in-use/)
  t.equal((await get(v.id)).status, 'in-use', 'nothing changed')
  await call(volumes, 'resetVolumeState', { id: v.id, status: 'maintenance' }, cloud.s.adminToken)
  await call(volumes, 'deleteVolume', { id: v.id, force: true }, cloud.s.adminToken)
  await gone(v.id)
})

t.test('bad input gets a clear error and changes nothing', async (t) => {
  const before = (await call<ListVolumesResponse>(volumes, 'listVolumes', {}, demo.token)).volumes.length
  const zero = await failure(call(volumes, 'createVolume', { size: 0, name: 'zero' }, demo.token))
  t.equal(zero.code, status.INVALID_ARGUMENT)
  t.match(zero.details, /size must be a whole number of GiB ≥ 1, got 0/)
  const type = await failure(call(volumes, 'createVolume', { size: 1, volumeType: 'no-such' }, demo.token))
  t.equal(type.code, status.NOT_FOUND)
  t.match(type.details, /volume type 'no-such' not found/)
  const two = await failure(call(volumes, 'createVolume', { size: 1, imageId: 'cirros', sourceVolid: '00000000-0000-4000-8000-000000000009' }, demo.token))
  t.equal(two.code, status.INVALID_ARGUMENT)
  const big = await failure(call(volumes, 'createVolume', { size: 1001 }, demo.token))
  t.equal(big.code, status.RESOURCE_EXHAUSTED)
  t.match(big.details, /quota exceeded for gigabytes/)
  const full = await failure(call(volumes, 'createVolume', { size: 500 }, demo.token))
  t.equal(full.code, status.RESOURCE_EXHAUSTED)
  t.match(full.details, /no valid backend was found: .*room for 500 GiB; node\d has 200 GiB/)
  const after = (await call<ListVolumesResponse>(volumes, 'listVolumes', {}, demo.token)).volumes.length
  t.equal(after, before, 'no volume was recorded')

  // An extend (or a copy beside its source) must fit the volume's own backend.
  const small = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'small' }, demo.token)
  await waitStatus(small.id, 'available')
  const tooBig = await failure(call(volumes, 'extendVolume', { id: small.id, newSize: 250 }, demo.token))
  t.equal(tooBig.code, status.RESOURCE_EXHAUSTED)
  t.match(tooBig.details, /the volume backend of host 'node\d' has room for \d+ GiB; 249 GiB more do not fit/)
  t.match(await get(small.id), { status: 'available', size: 1 }, 'nothing changed')
  const bigCopy = await failure(call(volumes, 'createVolume', { sourceVolid: small.id, size: 300 }, demo.token))
  t.equal(bigCopy.code, status.RESOURCE_EXHAUSTED)
  await call(volumes, 'deleteVolume', { id: small.id }, demo.token)
  await gone(small.id)
})

t.test('50 concurrent creates admit exactly the quota', async (t) => {
  const q = await tenant(cloud.s, 'quota-race')
  await call(quotas, 'updateQuota', { projectId: q.projectId, limits: { volumes: 7 } }, cloud.s.adminToken)
  const results = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => call<Volume>(volumes, 'createVolume', { size: 1, name: `race-${i}` }, q.token)))
  const ok = results.filter((r) => r.status === 'fulfilled')
  const refused = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected')
  t.equal(ok.length, 7, 'exactly the quota was admitted')
  t.ok(refused.every((r) => (r.reason as { code: number }).code === status.RESOURCE_EXHAUSTED && /quota exceeded for volumes/.test((r.reason as { details: string }).details)), 'the rest were refused by the volumes quota')
  const listed = await call<ListVolumesResponse>(volumes, 'listVolumes', {}, q.token)
  t.equal(listed.volumes.length, 7)
  for (const v of listed.volumes) await waitStatus(v.id, 'available', q.token)
  // The snapshots quota too, and gigabytes counts snapshots.
  await call(quotas, 'updateQuota', { projectId: q.projectId, limits: { snapshots: 1 } }, cloud.s.adminToken)
  const first = listed.volumes[0]!.id
  await call(snapshots, 'createSnapshot', { volumeId: first }, q.token)
  const e = await failure(call(snapshots, 'createSnapshot', { volumeId: first }, q.token))
  t.match(e.details, /quota exceeded for snapshots: 1 of 1 in use/)
})

t.test("per-type quotas (Cinder's volumes_<type>, gigabytes_<type>, snapshots_<type>) are checked in the creating transaction", async (t) => {
  const q = await tenant(cloud.s, 'per-type')
  await call<VolumeType>(types, 'createVolumeType', { name: 'gold' }, cloud.s.adminToken)
  const quotaOf = async () => Object.fromEntries((await call<QuotaSet>(quotas, 'getQuota', { projectId: q.projectId }, q.token)).items.map((i) => [i.resource, [i.limit, i.inUse]]))
  const shown = await quotaOf()
  t.same(shown['volumes_gold'], [-1, 0], 'each type has its quotas, unlimited by default')
  t.same(shown['gigabytes___DEFAULT__'], [-1, 0], 'the default type too')

  const unknown = await failure(call(quotas, 'updateQuota', { projectId: q.projectId, limits: { volumes_nosuch: 1 } }, cloud.s.adminToken))
  t.equal(unknown.code, status.INVALID_ARGUMENT)
  t.match(unknown.details, /unknown quota resource 'volumes_nosuch': there is no 'nosuch'/)
  t.notOk('volumes_nosuch' in (await quotaOf()), 'nothing was set')

  await call(quotas, 'updateQuota', { projectId: q.projectId, limits: { volumes_gold: 4, gigabytes_gold: 5, snapshots_gold: 0 } }, cloud.s.adminToken)
  // Concurrent creates of the type admit exactly its quota; other types are not held back.
  const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => call<Volume>(volumes, 'createVolume', { size: 1, name: `gold-${i}`, volumeType: 'gold' }, q.token)))
  const ok = results.filter((r): r is PromiseFulfilledResult<Decoded<Volume>> => r.status === 'fulfilled')
  t.equal(ok.length, 4, 'exactly volumes_gold were admitted')
  t.ok(results.every((r) => r.status === 'fulfilled' || /quota exceeded for volumes_gold: 4 of 4 in use, 1 more requested/.test((r.reason as { details: string }).details)), 'the rest were refused naming volumes_gold')
  const plain = await call<Volume>(volumes, 'createVolume', { size: 1, name: 'plain' }, q.token)
  t.equal(plain.volumeType, '__DEFAULT__', 'a volume of another type is admitted')
  const now = await quotaOf()
  t.same([now['volumes_gold'], now['gigabytes_gold'], now['volumes___DEFAULT__']], [[4, 4], [5, 4], [-1, 1]], 'usage is counted per type')

  for (const v of ok) await waitStatus(v.value.id, 'available', q.token)
  const first = ok[0]!.value.id
  const grow = await failure(call(volumes, 'extendVolume', { id: first, newSize: 3 }, q.token))
  t.equal(grow.code, status.RESOURCE_EXHAUSTED)
  t.match(grow.details, /quota exceeded for gigabytes_gold: 4 of 5 in use, 2 more requested/)
  t.match(await get(first, q.token), { status: 'available', size: 1 }, 'the extend changed nothing')
  const snap = await failure(call(snapshots, 'createSnapshot', { volumeId: first }, q.token))
  t.match(snap.details, /quota exceeded for snapshots_gold: 0 of 0 in use, 1 more requested/)
  t.equal((await call<ListSnapshotsResponse>(snapshots, 'listSnapshots', {}, q.token)).snapshots.length, 0, 'no snapshot was made')

  for (const v of [...ok.map((r) => r.value), plain]) await waitStatus(v.id, 'available', q.token)
  for (const v of [...ok.map((r) => r.value), plain]) await call(volumes, 'deleteVolume', { id: v.id }, q.token)
})
