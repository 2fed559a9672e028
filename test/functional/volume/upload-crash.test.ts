// Uploads to images interrupted by a controller crash: the controller daemon (its own process, on a
// real nats-server) is SIGKILLed while it receives a volume's data (the image `saving`, the volume
// `uploading`), and again while it receives a server snapshot's (the server in image_uploading),
// with nothing running any rollback. Started again, the controller finds the upload abandoned
// (nothing received for longer than any live upload is idle), puts the image back to queued with
// its partial data removed and says so in its log; the host, which kept its cast, uploads again: the
// volume is available (the server ACTIVE with no task) and the image active with the data. Nobody
// resets anything. The agent runs in this process (fake hypervisor with real overlay disks, volumes
// as files of the native engine).
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { promisify } from 'node:util'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { cloudClients, provision, type CloudClients } from '../../helpers/cloud.js'
import { spawnController, type ControllerProcess } from '../../helpers/controller-process.js'
import { startNats, type NatsServer } from '../../helpers/nats.js'
import { call, client, type Decoded } from '../../helpers/grpc.js'
import { eventually, startAgent, type TestAgent } from '../../helpers/agents.js'
import { FileVolumeDriver } from '../../../agent/volume/file.js'
import { imageInfo } from '../../../native/index.js'
import type { DiscoverHostsResponse } from '../../../proto/gen/strato/compute/v1/hosts.js'
import type { Image } from '../../../proto/gen/strato/image/v1/image.js'
import type { CreateServerImageResponse, CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import { VolumesClient, type UploadVolumeToImageResponse, type Volume } from '../../../proto/gen/strato/volume/v1/volume.js'

const GiB = 1024 ** 3
const run = promisify(execFile)
const dir = mkdtempSync(path.join(tmpdir(), 'strato-upload-crash-'))
let nats: NatsServer
let ctl: ControllerProcess
let agent: TestAgent<FileVolumeDriver>
let c: CloudClients
let volumes: VolumesClient

t.before(async () => {
  nats = await startNats()
  ctl = await spawnController(nats.url, {
    hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10, castAckWaitMs: 3_000 },
    servers: { castRetryMs: 500 },
    // A live upload is touched as it receives and aborted after 3 s idle: untouched for ~7 s, it is abandoned.
    grpc: { uploadIdleTimeoutMs: 3_000 },
  })
  c = cloudClients(ctl.address)
  volumes = client(VolumesClient, ctl.address)
  agent = await startAgent(nats.url, 'node1', { controllerAddress: ctl.address, requestTimeoutMs: 5_000, volumeDriver: new FileVolumeDriver({ dir: path.join(dir, 'volumes'), host: 'node1' }) })
  await eventually(async () => (await call<DiscoverHostsResponse>(c.hosts, 'discoverHosts', {}, ctl.adminToken)).mapped.length > 0 || undefined, 20_000, 'the host to be mapped')
})
t.teardown(async () => {
  if (t.passing() === false || process.env.STRATO_TEST_LOG) t.comment(ctl?.log().slice(-6000) ?? '')
  volumes?.close()
  if (c) Object.values(c).forEach((x) => x.close())
  await agent?.stop()
  await ctl?.close()
  await nats?.stop()
  rmSync(dir, { recursive: true, force: true })
})

const token = () => ctl.adminToken
const getVolume = (id: string) => call<Volume>(volumes, 'getVolume', { id }, token())
const getImage = (id: string) => call<Image>(c.images, 'getImage', { id }, token())
/** SIGKILLs the controller once the image is saving (its data arriving), and starts it again; returns where its new log begins. */
async function killWhileSaving(t: Test, imageId: string): Promise<number> {
  await eventually(async () => (await getImage(imageId)).status === 'saving' || undefined, 120_000, 'the image saving (its data arriving)')
  await ctl.kill('SIGKILL')
  t.comment('controller SIGKILLed while the image was saving')
  t.equal(partials().length, 1, 'the dead controller left the partial data of the upload behind')
  const from = ctl.log().length
  await ctl.restart()
  return from
}
const partials = () => readdirSync(path.join(ctl.dataDir, 'images')).filter((f) => f.endsWith('.partial'))

t.test('the controller SIGKILLed while it receives a volume upload: restarted, the upload is done again', { timeout: 600_000 }, async (t) => {
  // The backend reports itself with its heartbeat: until then no volume can be placed.
  const v = await eventually(() => call<Volume>(volumes, 'createVolume', { size: 1, name: 'crash-upload' }, token()).catch(() => undefined), 20_000, 'the volume backend to be reported')
  await eventually(async () => (await getVolume(v.id)).status === 'available' || undefined, 60_000, 'the volume available')

  // raw: the whole GiB goes over the wire, long enough to be caught in the middle.
  const r = await call<UploadVolumeToImageResponse>(volumes, 'uploadVolumeToImage', { id: v.id, imageName: 'interrupted', diskFormat: 'raw' }, token())
  const from = await killWhileSaving(t, r.imageId)
  const back = await eventually(async () => {
    const vol = await getVolume(v.id)
    return vol.status !== 'uploading' ? vol : undefined
  }, 300_000, 'the volume out of uploading')
  t.equal(back.status, 'available', `the volume is available again (${back.statusReason})`)
  t.equal(back.statusReason, '', 'no reason: the upload was done again, not given up')
  t.match(ctl.log().slice(from), /image upload abandoned/, 'the restarted controller logged the abandoned upload and what it did')
  const img: Decoded<Image> = await getImage(r.imageId)
  t.match(img, { status: 'active', diskFormat: 'raw', size: GiB, virtualSize: GiB }, 'the image is active with the whole volume')
  const stored = path.join(ctl.dataDir, 'images', r.imageId)
  t.ok(existsSync(stored), 'its data is stored')
  t.equal((await imageInfo(stored, 'raw'))[0]!.virtualSize, GiB)
  t.same(partials(), [], 'no partial data left')
})

t.test('the controller SIGKILLed while it receives a server snapshot: restarted, the snapshot is uploaded again', { timeout: 600_000 }, async (t) => {
  const p = await provision(c, token())
  const r = await call<CreateServerResponse>(c.servers, 'createServer', { name: 'crash-snapshot', flavorRef: p.flavor.id, imageRef: p.image.id, networks: [{ uuid: p.network.id }] }, token())
  const id = r.servers[0]!.id
  await eventually(async () => {
    const s = await call<Server>(c.servers, 'getServer', { id }, token())
    if (s.status === 'ERROR') throw new Error(`server ${id} ERROR: ${s.fault?.message}`)
    return s.status === 'ACTIVE' && s.taskState === '' ? s : undefined
  }, 60_000, 'the server ACTIVE')
  // 512 MiB written into its disk: a snapshot long enough on the wire to be caught in the middle.
  const disk = path.join((agent.agent as unknown as { config: { instancesDir: string } }).config.instancesDir, id, 'disk')
  await run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 32M 512M', disk])

  const snap = await call<CreateServerImageResponse>(c.servers, 'createServerImage', { id, name: 'interrupted-snapshot' }, token())
  const from = await killWhileSaving(t, snap.imageId)
  const server = await eventually(async () => {
    const s = await call<Server>(c.servers, 'getServer', { id }, token())
    return s.taskState === '' ? s : undefined
  }, 300_000, 'the server out of its snapshot task')
  t.equal(server.status, 'ACTIVE', `the server runs on (${server.fault?.message ?? 'no fault'})`)
  t.match(ctl.log().slice(from), /image upload abandoned/, 'the restarted controller logged the abandoned upload and what it did')
  const img = await getImage(snap.imageId)
  t.match(img, { status: 'active', diskFormat: 'qcow2', virtualSize: GiB }, 'the snapshot image is active, the size of the flavor\'s disk')
  t.ok(img.size > 512 * 1024 ** 2, `with the data written (${img.size} bytes)`)
  t.same(partials(), [], 'no partial data left')
})
