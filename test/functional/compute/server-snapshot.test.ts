/**
 * Server snapshots (Nova's createImage) through gRPC on the fake driver, with
 * real disks (the agent's overlays, the native engine, the image service):
 * the states it is allowed from, the task_state steps, the image's
 * properties, the data uploaded with a scoped image-upload token (never a
 * user's token on the bus), and the clean-up of a snapshot that fails.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { createHash } from 'node:crypto'
import t from 'tap'
import { Metadata } from '@grpc/grpc-js'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { startCloud, uploadImage, type TestCloud } from '../../helpers/cloud.js'
import { call, failure, status } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { Cast } from '../../../proto/gen/strato/agent/v1/agent.js'
import type { ConductorClient } from '../../../agent/conductor-client.js'
import type { CreateServerImageResponse, CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { Image, ImagesClient, ListImagesResponse } from '../../../proto/gen/strato/image/v1/image.js'
import { checkImage, imageInfo, readImage, writeImage } from '../../../native/index.js'

let cloud: TestCloud
let demo: Tenant
let nc: NatsConnection
let work: string
/** Every cast put on the bus, raw. */
const casts: Uint8Array[] = []
/** The snapshot steps the agent reported, with the server's task_state the controller then showed. */
const steps: Array<{ uuid: string; step: string; taskAfter: string; token: string }> = []
/** Holds the agent at its first snapshot step while set. */
let gate: Promise<void> | undefined
let source: { id: string; data: Buffer }

function download(images: ImagesClient, token: string, id: string): Promise<Buffer> {
  const md = new Metadata()
  md.set('x-auth-token', token)
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = []
    const st = images.downloadImage({ id }, md)
    st.on('data', (c: { data: Uint8Array }) => parts.push(Buffer.from(c.data)))
    st.on('end', () => resolve(Buffer.concat(parts)))
    st.on('error', reject)
  })
}

function decode(token: string): { header: Record<string, unknown>; payload: Record<string, unknown> } {
  const [h, p] = token.split('.')
  return { header: JSON.parse(Buffer.from(h!, 'base64url').toString()), payload: JSON.parse(Buffer.from(p!, 'base64url').toString()) }
}

const instancesDir = () => (cloud.agents[0]!.agent as unknown as { config: { instancesDir: string } }).config.instancesDir
const getServer = (id: string) => call<Server>(cloud.c.servers, 'getServer', { id }, demo.token)
const images = async () => (await call<ListImagesResponse>(cloud.c.images, 'listImages', { limit: 1000 }, cloud.s.adminToken)).images

async function boot(name: string): Promise<string> {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: 'm1.nano', imageRef: source.id, networks: [{ uuid: cloud.network.id }] }, demo.token)
  const id = r.servers[0]!.id
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token, 20_000, `${name} ACTIVE`)
  return id
}

async function snapshotDone(id: string, imageId: string): Promise<{ server: Server; image: Image | undefined }> {
  const server = await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000, `the snapshot of ${id} to finish`)
  const image = (await images()).find((i) => i.id === imageId)
  return { server, image }
}

t.before(async () => {
  work = mkdtempSync(path.join(tmpdir(), 'strato-snap-'))
  cloud = await startCloud({ hosts: ['node1'] })
  demo = await tenant(cloud.s, 'demo')
  // With the controller's rights: a test watching every cast on the bus.
  nc = await connect({ ...cloud.nats.connectOptions(), servers: cloud.nats.url })
  nc.subscribe('strato.agent.*.cast', { callback: (_err, m) => void casts.push(m.data) })
  const conductor = (cloud.agents[0]!.agent as unknown as { conductor: ConductorClient }).conductor
  const real = conductor.snapshotStep.bind(conductor)
  conductor.snapshotStep = async (uuid, castId, step) => {
    if (gate) await gate
    const r = await real(uuid, castId, step)
    const s = await call<Server>(cloud.c.servers, 'getServer', { id: uuid }, cloud.s.adminToken)
    steps.push({ uuid, step, taskAfter: s.taskState, token: r.imageUploadToken })
    return r
  }
  // The servers' image: demo's own, with properties a snapshot inherits and one it must not.
  const data = await download(cloud.c.images, cloud.s.adminToken, cloud.image.id)
  const img = await call<Image>(cloud.c.images, 'createImage', {
    name: 'src', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'private', minRam: 32,
    properties: { hw_disk_bus: 'virtio', os_distro: 'bootsector', img_signature: 'c2lnbmVk', os_glance_importing_to_stores: 'x' },
  }, demo.token)
  await uploadImage(cloud.c.images, demo.token, img.id, data)
  source = { id: img.id, data }
})
t.teardown(async () => {
  await nc?.close()
  await cloud?.close()
  rmSync(work, { recursive: true, force: true })
})

t.test('a running server: paused for the copy, ACTIVE and running after; the image has Nova\'s properties and the server\'s data', async (t) => {
  const id = await boot('snap-run')
  const driver = cloud.agents[0]!.driver
  const powers: string[] = []
  const pause = driver.pause.bind(driver)
  const unpause = driver.unpause.bind(driver)
  driver.pause = async (uuid) => (powers.push('pause'), pause(uuid))
  driver.unpause = async (uuid) => (powers.push('unpause'), unpause(uuid))
  t.teardown(() => {
    driver.pause = pause
    driver.unpause = unpause
  })
  casts.length = 0
  steps.length = 0
  const r = await call<CreateServerImageResponse>(cloud.c.servers, 'createServerImage', { id, name: 'snap-1', metadata: { purpose: 'backup' } }, demo.token)
  t.match(r.server, { id, status: 'ACTIVE', taskState: 'image_snapshot_pending' }, "the answer shows the snapshot's first task (Nova's image_snapshot_pending)")
  const { server, image } = await snapshotDone(id, r.imageId)
  t.match(server, { status: 'ACTIVE', taskState: '', powerState: 1 }, 'ACTIVE and running afterwards')
  t.equal((await driver.getInfo(id)).powerState, 1, 'the guest runs')
  t.same(powers, ['pause', 'unpause'], 'paused for the copy, then resumed')
  t.same(steps.filter((s) => s.uuid === id).map((s) => [s.step, s.taskAfter]), [['image_snapshot', 'image_snapshot'], ['image_pending_upload', 'image_pending_upload'], ['image_uploading', 'image_uploading']], "the host's steps move the task along Nova's states")

  t.ok(image, 'the image exists')
  t.match(image, { name: 'snap-1', status: 'active', visibility: 'private', owner: demo.projectId, diskFormat: 'qcow2', containerFormat: 'bare', minRam: 32, minDisk: cloud.flavor.disk })
  const user = decode(demo.token).payload.sub
  t.match(image!.properties, {
    image_type: 'snapshot', instance_uuid: id, base_image_ref: source.id, user_id: user, image_location: 'snapshot', owner_id: demo.projectId,
    hw_disk_bus: 'virtio', os_distro: 'bootsector', purpose: 'backup',
  }, "Nova's snapshot properties, the source's and the request's metadata")
  const props = image?.properties ?? {}
  t.notOk('img_signature' in props, 'a signature is not inherited (it signs the source\'s bytes)')
  t.notOk('os_glance_importing_to_stores' in props, 'nor the os_glance namespace')

  const data = await download(cloud.c.images, demo.token, r.imageId)
  t.equal(createHash('md5').update(data).digest('hex'), image!.checksum, 'checksum set by the image service')
  t.equal(Number(image!.size), data.length, 'size set by the image service')
  const file = path.join(work, 'snap-1.qcow2')
  writeFileSync(file, data)
  const [info] = await imageInfo(file, 'qcow2')
  t.equal(info?.backingFile, undefined, 'one flattened qcow2: no backing file')
  t.equal(info?.virtualSize, cloud.flavor.disk * 1024 ** 3, "the root disk's size (the flavor's disk)")
  const srcFile = path.join(work, 'src.qcow2')
  writeFileSync(srcFile, source.data)
  t.same(await readImage(file, 0, 65536, 'qcow2'), await readImage(srcFile, 0, 65536, 'qcow2'), "the guest's data (the image's, as nothing wrote)")

  const snapCast = casts.map((b) => Cast.decode(b)).find((c) => c.snapshot?.instanceUuid === id)
  t.ok(snapCast, 'the snapshot went to the host as a cast')
  t.equal(snapCast!.id, `snapshot.${id}.${r.imageId}`, 'named by the server and the image')
  t.same(snapCast!.snapshot, { instanceUuid: id, compress: false })
  for (const raw of casts) {
    const text = Buffer.from(raw).toString('latin1')
    t.notOk(text.includes(demo.token), 'no user token in any cast')
    t.notOk(/eyJ[\w-]+\.[\w-]+\.[\w-]+/.test(text), 'no token of any kind in any cast')
  }
})

t.test('the image-upload token uploads its image once and does nothing else', async (t) => {
  const id = await boot('snap-token')
  steps.length = 0
  const r = await call<CreateServerImageResponse>(cloud.c.servers, 'createServerImage', { id, name: 'snap-token' }, demo.token)
  await snapshotDone(id, r.imageId)
  const token = steps.find((s) => s.uuid === id && s.step === 'image_uploading')?.token
  t.ok(token, 'the conductor gave the host a token at the upload step (not before)')
  t.same(steps.filter((s) => s.uuid === id && s.step !== 'image_uploading').map((s) => s.token), ['', ''], 'earlier steps carry none')
  const { header, payload } = decode(token!)
  t.equal(header.typ, 'strato-image-upload+jwt')
  t.match(payload, { knd: 'image-upload', aud: 'strato.image.v1.Images/UploadImage', img: r.imageId, hst: 'node1', srv: id })
  for (const claim of ['sub', 'p', 'r', 'adm']) t.notOk(claim in payload, `no '${claim}' claim`)

  const again = await failure(uploadImage(cloud.c.images, token!, r.imageId, source.data))
  t.equal(again.code, status.FAILED_PRECONDITION, 'its own image, now active, takes no second upload')
  const other = await call<Image>(cloud.c.images, 'createImage', { name: 'victim', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'private' }, demo.token)
  const denied = await failure(uploadImage(cloud.c.images, token!, other.id, source.data))
  t.equal(denied.code, status.PERMISSION_DENIED, 'another queued image is refused')
  t.match(denied.details, `uploads image ${r.imageId} only`)
  t.equal((await call<Image>(cloud.c.images, 'getImage', { id: other.id }, demo.token)).status, 'queued', 'and got nothing')
  for (const [what, p] of [
    ['DownloadImage', download(cloud.c.images, token!, r.imageId)],
    ['GetImage', call(cloud.c.images, 'getImage', { id: r.imageId }, token)],
    ['DeleteImage', call(cloud.c.images, 'deleteImage', { id: r.imageId }, token)],
    ['ListServers', call(cloud.c.servers, 'listServers', {}, token)],
  ] as const) {
    const err = await failure(p as Promise<unknown>)
    t.equal(err.code, status.UNAUTHENTICATED, `${what} refuses it`)
    t.match(err.details, /image-upload token .*accepted only by strato\.image\.v1\.Images\/UploadImage/)
  }
})

t.test('a stopped server is read as it is (no pause) and stays SHUTOFF; compression when asked', async (t) => {
  const id = await boot('snap-stopped')
  await call(cloud.c.servers, 'stopServer', { id }, demo.token)
  await cloud.waitFor(id, (s) => s.status === 'SHUTOFF' && s.taskState === '', demo.token, 20_000)
  // Known bytes written into the stopped server's disk (its overlay), past the image's data.
  const marker = Buffer.from(`written into ${id} while stopped\n`.padEnd(512, '.'))
  const disk = path.join(instancesDir(), id, 'disk')
  await writeImage(disk, 5 * 1024 * 1024, marker, 'qcow2')
  const driver = cloud.agents[0]!.driver
  const pause = driver.pause.bind(driver)
  let paused = 0
  driver.pause = async (uuid) => (paused++, pause(uuid))
  t.teardown(() => void (driver.pause = pause))
  const r = await call<CreateServerImageResponse>(cloud.c.servers, 'createServerImage', { id, name: 'snap-z', compress: true }, demo.token)
  const { server, image } = await snapshotDone(id, r.imageId)
  t.equal(server.status, 'SHUTOFF', 'still SHUTOFF')
  t.equal(paused, 0, 'nothing to pause')
  t.equal(image?.status, 'active')
  const file = path.join(work, 'snap-z.qcow2')
  writeFileSync(file, await download(cloud.c.images, demo.token, r.imageId))
  t.ok((await checkImage(file)).compressedClusters > 0, 'its data clusters are compressed')
  const srcFile = path.join(work, 'src2.qcow2')
  writeFileSync(srcFile, source.data)
  t.same(await readImage(file, 0, 4096, 'qcow2'), await readImage(srcFile, 0, 4096, 'qcow2'), "the image's data, from the base")
  t.same(await readImage(file, 5 * 1024 * 1024, 512, 'qcow2'), marker, 'and the bytes written into the overlay')
})

t.test('refused from a state Nova refuses, naming it; a bad request or a full quota changes nothing', async (t) => {
  const id = await boot('snap-refused')
  const before = (await images()).length
  // A snapshot held at its first step: the server is busy.
  let release!: () => void
  gate = new Promise<void>((resolve) => (release = resolve))
  const first = await call<CreateServerImageResponse>(cloud.c.servers, 'createServerImage', { id, name: 'held' }, demo.token)
  const busy = await failure(call(cloud.c.servers, 'createServerImage', { id, name: 'second' }, demo.token))
  t.equal(busy.code, status.FAILED_PRECONDITION)
  t.match(busy.details, "task 'image_snapshot_pending' is in progress", 'names the task in progress')
  const stop = await failure(call(cloud.c.servers, 'stopServer', { id }, demo.token))
  t.equal(stop.code, status.FAILED_PRECONDITION, 'nor can it be stopped meanwhile')
  gate = undefined
  release()
  await snapshotDone(id, first.imageId)
  t.equal((await images()).length, before + 1, 'only the first snapshot made an image')

  // ERROR: a server whose build failed.
  cloud.agents[0]!.driver.injectFailure({ operation: 'spawn' })
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'snap-error', flavorRef: 'm1.nano', imageRef: source.id, networks: [{ uuid: cloud.network.id }] }, demo.token)
  const bad = r.servers[0]!.id
  await cloud.waitFor(bad, (s) => s.status === 'ERROR', demo.token, 20_000)
  const n = (await images()).length
  const err = await failure(call(cloud.c.servers, 'createServerImage', { id: bad, name: 'x' }, demo.token))
  t.equal(err.code, status.FAILED_PRECONDITION)
  t.match(err.details, 'while it is ERROR (vm_state error); snapshot needs vm_state active or stopped')
  const noName = await failure(call(cloud.c.servers, 'createServerImage', { id, name: '' }, demo.token))
  t.equal(noName.code, status.INVALID_ARGUMENT, 'a name is needed')
  const reserved = await failure(call(cloud.c.servers, 'createServerImage', { id, name: 'x', metadata: { size: '1' } }, demo.token))
  t.equal(reserved.code, status.INVALID_ARGUMENT, 'metadata cannot set a reserved attribute')
  t.equal((await images()).length, n, 'no image was made')
  t.equal((await getServer(id)).taskState, '', 'the server is untouched')

  // Quota: the project may hold no more images.
  const owned = (await images()).filter((i) => i.owner === demo.projectId).length
  await call(cloud.c.quotas, 'updateQuota', { projectId: demo.projectId, limits: { images: owned } }, cloud.s.adminToken)
  t.teardown(() => call(cloud.c.quotas, 'updateQuota', { projectId: demo.projectId, limits: { images: 100 } }, cloud.s.adminToken))
  const full = await failure(call(cloud.c.servers, 'createServerImage', { id, name: 'over' }, demo.token))
  t.equal(full.code, status.RESOURCE_EXHAUSTED)
  t.match(full.details, 'images')
  t.equal((await images()).length, n, 'no image')
  t.equal((await getServer(id)).taskState, '', 'no task')

  const other = await tenant(cloud.s, 'other')
  const hidden = await failure(call(cloud.c.servers, 'createServerImage', { id, name: 'x' }, other.token))
  t.equal(hidden.code, status.NOT_FOUND, "another project's server is not found")
})

t.test('a snapshot that fails on the host leaves no image, clears the task with a fault, and the server keeps running', async (t) => {
  const id = await boot('snap-fail')
  const n = (await images()).length
  cloud.agents[0]!.driver.injectFailure({ operation: 'pause', uuid: id })
  const r = await call<CreateServerImageResponse>(cloud.c.servers, 'createServerImage', { id, name: 'doomed' }, demo.token)
  const server = await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
  t.match(server, { status: 'ACTIVE', powerState: 1 }, 'still ACTIVE and running')
  t.match(server.fault?.message ?? '', 'injected failure in pause', 'the fault says what failed')
  await eventually(async () => !(await images()).some((i) => i.id === r.imageId), 10_000, 'the image to be deleted')
  t.equal((await images()).length, n, 'no image is left')
  t.equal((await cloud.agents[0]!.driver.getInfo(id)).powerState, 1, 'the guest runs')

  // The image deleted by its owner while the host works: the snapshot is abandoned, nothing is left.
  let release!: () => void
  gate = new Promise<void>((resolve) => (release = resolve))
  const r2 = await call<CreateServerImageResponse>(cloud.c.servers, 'createServerImage', { id, name: 'deleted-meanwhile' }, demo.token)
  await call(cloud.c.images, 'deleteImage', { id: r2.imageId }, demo.token)
  gate = undefined
  release()
  const after = await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
  t.match(after.fault?.message ?? '', `image ${r2.imageId} of the snapshot of server ${id} was deleted`)
  t.equal(after.status, 'ACTIVE')
  const dir = path.join(instancesDir(), id)
  const { readdirSync } = await import('node:fs')
  t.same(readdirSync(dir).filter((f) => f.startsWith('snapshot-')), [], 'no temporary file is left in the server\'s directory')
})

t.test('a guest left paused (a snapshot interrupted by an agent restart) runs again after the next snapshot', async (t) => {
  const id = await boot('snap-left-paused')
  const driver = cloud.agents[0]!.driver
  await driver.pause(id)
  const r = await call<CreateServerImageResponse>(cloud.c.servers, 'createServerImage', { id, name: 'after-restart' }, demo.token)
  const { server, image } = await snapshotDone(id, r.imageId)
  t.equal(image?.status, 'active')
  t.equal(server.status, 'ACTIVE')
  t.equal((await driver.getInfo(id)).powerState, 1, 'the guest runs again')
})
