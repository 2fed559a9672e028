// A volume uploaded to an image (Cinder's os-volume_upload_image) through the real gRPC API, a real
// nats-server and an agent whose volume role keeps volumes as files of the native engine (the
// hypervisor is the fake): the volume is uploading while its data goes, then available again (in-use
// again when it was attached and forced); the image is active in the volume's project, qcow2 or raw
// as asked, and its stored bytes are the volume's (compared by the native engine, whole chain).
// Refusals (status, format, another project) change nothing; an upload whose data cannot be read
// leaves no image and says why in the volume's status reason.
import { mkdtempSync, rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import type { ServiceError } from '@grpc/grpc-js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, client, failure, status, type Decoded } from '../../helpers/grpc.js'
import { eventually, startAgent, type TestAgent } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { FileVolumeDriver } from '../../../agent/volume/file.js'
import { compareImages, imageInfo } from '../../../native/index.js'
import { VolumesClient, type UploadVolumeToImageResponse, type Volume } from '../../../proto/gen/strato/volume/v1/volume.js'
import type { Image, ListImagesResponse } from '../../../proto/gen/strato/image/v1/image.js'
import type { CreateServerResponse, ServerVolume } from '../../../proto/gen/strato/compute/v1/servers.js'

let cloud: TestCloud
let agent: TestAgent<FileVolumeDriver>
let demo: Tenant
let other: Tenant
let volumes: VolumesClient
const dir = mkdtempSync(path.join(tmpdir(), 'strato-upload-'))

t.before(async () => {
  cloud = await startCloud({ hosts: [] })
  agent = await startAgent(cloud.nats.url, 'node1', { powerSyncIntervalMs: 200, ...(cloud.s.caFile ? { caFile: cloud.s.caFile } : {}), volumeDriver: new FileVolumeDriver({ dir: path.join(dir, 'volumes'), host: 'node1' }) })
  await eventually(async () => (await cloud.s.controller.hosts.discover(), (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1), 10_000, 'the volume backend')
  demo = await tenant(cloud.s, 'demo')
  other = await tenant(cloud.s, 'other')
  volumes = client(VolumesClient, cloud.s.address)
})
t.teardown(async () => {
  volumes.close()
  await agent.stop()
  await cloud.close()
  rmSync(dir, { recursive: true, force: true })
})

const get = (id: string) => call<Volume>(volumes, 'getVolume', { id }, demo.token)
async function waitVolume(id: string, want: string): Promise<Decoded<Volume>> {
  let last: Decoded<Volume> | undefined
  return eventually(async () => {
    last = await get(id)
    return last.status === want ? last : undefined
  }, 20_000, `volume ${id} ${want}`).catch((err: Error) => {
    throw new Error(`${err.message}; last: ${last?.status} ${last?.statusReason}`)
  })
}
const image = (id: string, token = demo.token) => call<Image>(cloud.c.images, 'getImage', { id }, token)
const storedImage = (id: string) => path.join(cloud.s.dataDir, 'images', id)
const upload = (req: Record<string, unknown>, token = demo.token) => call<UploadVolumeToImageResponse>(volumes, 'uploadVolumeToImage', req, token)

async function volumeFromImage(name: string): Promise<Decoded<Volume>> {
  const v = await call<Volume>(volumes, 'createVolume', { size: 1, name, imageId: cloud.image.id }, demo.token)
  return waitVolume(v.id, 'available')
}

t.test('qcow2 and raw: uploading while the data goes, then available; the image is active with the volume\'s bytes', async (t) => {
  const v = await volumeFromImage('data')
  for (const diskFormat of ['qcow2', 'raw'] as const) {
    const r = await upload({ id: v.name, imageName: `from-volume-${diskFormat}`, diskFormat })
    t.equal(r.volume?.status, 'uploading', 'the answer shows the volume uploading')
    t.match(r, { imageName: `from-volume-${diskFormat}`, diskFormat, containerFormat: 'bare', visibility: 'private', protected: false })
    const img = await eventually(async () => {
      const i = await image(r.imageId)
      return i.status === 'active' ? i : undefined
      // A raw image of a 1 GiB volume is 1 GiB on the wire: a loaded machine takes a while.
    }, 180_000, `image ${r.imageId} active`)
    t.match(img, { owner: demo.projectId, diskFormat, containerFormat: 'bare', minDisk: 1, virtualSize: 1024 ** 3 }, `the ${diskFormat} image: the volume's project, its size`)
    t.notOk('image_id' in img.properties, 'the source image\'s own id is not inherited as a property')
    const back = await waitVolume(v.id, 'available')
    t.equal(back.statusReason, '', 'no reason: it went well')
    const [info] = await imageInfo(storedImage(r.imageId), diskFormat)
    t.equal(info!.virtualSize, 1024 ** 3)
    t.same(await compareImages(storedImage(r.imageId), agent.volumes.volumePath(v.id), { formatA: diskFormat, formatB: 'qcow2' }), { identical: true }, `the ${diskFormat} image's bytes are the volume's`)
  }
})

t.test('an in-use volume: refused without force, naming the status; with force it goes and is in-use again', async (t) => {
  const v = await volumeFromImage('attached')
  const s = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'vm', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] }, demo.token)
  const serverId = s.servers[0]!.id
  await cloud.waitFor(serverId, (x) => x.status === 'ACTIVE', demo.token, 20_000)
  await call<ServerVolume>(cloud.c.servers, 'attachVolume', { serverId, volumeId: v.id }, demo.token)
  await waitVolume(v.id, 'in-use')
  const images = async () => (await call<ListImagesResponse>(cloud.c.images, 'listImages', {}, demo.token)).images.length
  const before = await images()
  const e = await failure(upload({ id: v.id, imageName: 'nope', diskFormat: 'qcow2' }))
  t.equal(e.code, status.FAILED_PRECONDITION)
  t.match(e.details, /cannot upload volume .* while its status is in-use; upload needs status available/)
  t.equal(await images(), before, 'no image made')
  t.equal((await get(v.id)).status, 'in-use', 'the volume is as it was')

  const r = await upload({ id: v.id, imageName: 'forced', diskFormat: 'qcow2', force: true })
  t.equal(r.volume?.status, 'uploading')
  await eventually(async () => (await image(r.imageId)).status === 'active', 30_000, 'the forced image active')
  const back = await waitVolume(v.id, 'in-use')
  t.equal(back.attachments.length, 1, 'still attached to its server')
})

t.test('bad input is refused with the field named, and changes nothing', async (t) => {
  const v = await volumeFromImage('refusals')
  const images = async () => (await call<ListImagesResponse>(cloud.c.images, 'listImages', {}, cloud.s.adminToken)).images.length
  const before = await images()
  let e = await failure(upload({ id: v.id, imageName: 'x', diskFormat: 'vmdk' }))
  t.equal(e.code, status.INVALID_ARGUMENT)
  t.match(e.details, /disk_format must be raw or qcow2/)
  e = await failure(upload({ id: v.id, imageName: 'x', containerFormat: 'ovf' }))
  t.equal(e.code, status.INVALID_ARGUMENT)
  t.match(e.details, /container_format must be bare/)
  e = await failure(upload({ id: v.id, imageName: 'x' }, other.token))
  t.equal(e.code, status.NOT_FOUND, 'another project does not see the volume')
  e = await failure(upload({ id: v.id, imageName: 'x', visibility: 'public' }))
  t.equal(e.code, status.PERMISSION_DENIED, 'a member makes no public image')
  t.equal(await images(), before, 'no image made')
  t.equal((await get(v.id)).status, 'available')
})

t.test('an upload whose data cannot be read: no image is left, the volume is available with the reason', async (t) => {
  const v = await volumeFromImage('lost')
  // The backend's file goes behind the agent's back: the conversion finds nothing to read.
  await rm(agent.volumes.volumePath(v.id))
  const r = await upload({ id: v.id, imageName: 'broken', diskFormat: 'qcow2' })
  const back = await eventually(async () => {
    const x = await get(v.id)
    return x.status !== 'uploading' ? x : undefined
  }, 30_000, 'the upload over')
  t.equal(back.status, 'available', 'back to available (Cinder: the status before the upload)')
  t.match(back.statusReason, /volume .* not found|no such file|ENOENT/i, `the reason says why: ${back.statusReason}`)
  // The volume is available again before the image is deleted (on PostgreSQL the check can come between the two).
  await eventually(() => image(r.imageId).then(() => false, (e: ServiceError) => (e.code === status.NOT_FOUND ? true : Promise.reject(e))), 20_000, 'the image deleted')
  t.pass('the image of the failed upload is gone')
})
