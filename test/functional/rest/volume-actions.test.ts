// Nova's os-volume_attachments, Cinder's os-quota-sets and os-volume_upload_image over REST against a
// real controller, nats-server and an agent whose hypervisor is the fake and whose volume backend keeps
// files of the native engine: attach, list, show and detach answer as Tempest's schemas say per
// microversion and move the volume through attaching → in-use → available; quota sets show per-type
// keys and usage, admins set them and reset them to the defaults (DELETE), bad keys change nothing; an upload's image has the volume's data.
// Then Debian's `openstack` client as a process: server add volume, volume list (Attached to),
// server remove volume, image create --volume, quota set --volumes. Swap and ephemeral disks are
// refused naming the field.
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { openstackFiles, readOpenrc } from '../../../controller/identity/bootstrap.js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { eventually, startAgent, type TestAgent } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { novaClient, TempestSchemas, type NovaCall } from './compute-helpers.js'
import { FileVolumeDriver } from '../../../agent/volume/file.js'
import { compareImages } from '../../../native/index.js'

type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any

let cloud: TestCloud
let agent: TestAgent<FileVolumeDriver>
let demo: Tenant
let nova: ReturnType<typeof novaClient>
const dir = mkdtempSync(path.join(tmpdir(), 'strato-rest-volumes-'))
const schemas = new TempestSchemas()

t.before(async () => {
  cloud = await startCloud({ hosts: [] })
  agent = await startAgent(cloud.nats.url, 'node1', { powerSyncIntervalMs: 200, ...(cloud.s.caFile ? { caFile: cloud.s.caFile } : {}), volumeDriver: new FileVolumeDriver({ dir: path.join(dir, 'volumes'), host: 'node1' }) })
  await eventually(async () => (await cloud.s.controller.hosts.discover(), (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1), 10_000, 'the volume backend')
  demo = await tenant(cloud.s, 'demo')
  nova = novaClient(cloud.s.controller.rest!.origin, cloud.s.adminToken)
})
t.teardown(async () => {
  await agent.stop()
  await cloud.close()
  rmSync(dir, { recursive: true, force: true })
})

async function cinder(method: string, p: string, o: { token?: string; body?: unknown } = {}): Promise<{ status: number; body: Json }> {
  const r = await fetch(`${cloud.s.controller.rest!.origin}/volume/v3${p}`, {
    method, headers: { 'x-auth-token': o.token ?? demo.token, 'content-type': 'application/json' }, ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}),
  })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : undefined }
}
async function volumeStatus(id: string, want: string, token = demo.token): Promise<Json> {
  let last: Json
  return eventually(async () => {
    last = (await cinder('GET', `/volumes/${id}`, { token })).body?.volume
    return last?.status === want ? last : undefined
  }, 30_000, `volume ${id} ${want}`).catch((err: Error) => {
    throw new Error(`${err.message}; last: ${last?.status} ${last?.status_reason ?? ''}`)
  })
}
async function newVolume(name: string, token = demo.token, extra: Record<string, unknown> = {}): Promise<string> {
  const a = await cinder('POST', '/volumes', { token, body: { volume: { size: 1, name, ...extra } } })
  if (a.status !== 202) throw new Error(`volume create: ${a.status} ${JSON.stringify(a.body)}`)
  await volumeStatus(a.body.volume.id, 'available', token)
  return a.body.volume.id
}
async function newServer(name: string, token = demo.token): Promise<string> {
  const a = await nova('POST', '/v2.1/servers', { token, body: { server: { name, imageRef: cloud.image.id, flavorRef: '1', networks: [{ uuid: cloud.network.id }] } } })
  if (a.status !== 202) throw new Error(`server create: ${a.status} ${JSON.stringify(a.body)}`)
  const id = a.body.server.id as string
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', token, 20_000)
  return id
}

t.test('os-volume_attachments: attach, list, show, detach, shaped per microversion as Tempest checks', async (t) => {
  const server = await newServer('vm-attach')
  const vol = await newVolume('data')
  const at = (version: string): NovaCall => ({ token: demo.token, version })
  const base = `/v2.1/servers/${server}/os-volume_attachments`

  const a = schemas.add('servers', 'attach_volume', '2.73', await nova('POST', base, { ...at('2.73'), body: { volumeAttachment: { volumeId: vol } } }))
  t.equal(a.status, 200, JSON.stringify(a.body))
  t.match(a.body.volumeAttachment, { id: vol, volumeId: vol, serverId: server, device: '/dev/vdb', tag: null })
  const inUse = await volumeStatus(vol, 'in-use')
  t.match(inUse.attachments, [{ server_id: server, device: '/dev/vdb' }], 'Cinder shows where it is attached')
  const listed = schemas.add('servers', 'list_volume_attachments', '2.73', await nova('GET', base, at('2.73')))
  t.same(listed.body.volumeAttachments.map((x: Json) => x.volumeId), [vol])
  const old = schemas.add('servers', 'list_volume_attachments', '2.1', await nova('GET', base, at('2.1')))
  t.notOk('tag' in old.body.volumeAttachments[0], 'no tag before 2.70')
  schemas.add('servers', 'show_volume_attachment', '2.73', await nova('GET', `${base}/${vol}`, at('2.73')))
  schemas.add('servers', 'show_volume_attachment', '2.1', await nova('GET', `${base}/${vol}`, at('2.1')))

  const again = await nova('POST', base, { ...at('2.73'), body: { volumeAttachment: { volumeId: vol } } })
  t.match(again, { status: 400, body: { badRequest: { message: /already attached to server/ } } }, "attached here already: Nova's 400 (InvalidVolume), not the server state's 409")
  const other = await newServer('vm-attach-2')
  const elsewhere = await nova('POST', `/v2.1/servers/${other}/os-volume_attachments`, { ...at('2.73'), body: { volumeAttachment: { volumeId: vol } } })
  t.match(elsewhere, { status: 400, body: { badRequest: { message: /status is in-use/ } } }, 'in use by another server: 400 too')
  agent.driver.injectFailure({ operation: 'spawn' })
  const made = await nova('POST', '/v2.1/servers', { token: demo.token, body: { server: { name: 'vm-broken', imageRef: cloud.image.id, flavorRef: '1', networks: [{ uuid: cloud.network.id }] } } })
  const broken = made.body.server.id as string
  await cloud.waitFor(broken, (s) => s.status === 'ERROR', demo.token, 20_000)
  const spare = await newVolume('spare')
  const byServer = await nova('POST', `/v2.1/servers/${broken}/os-volume_attachments`, { ...at('2.73'), body: { volumeAttachment: { volumeId: spare } } })
  t.match(byServer, { status: 409, body: { conflictingRequest: { message: /while it is ERROR/ } } }, "refused by the server's state: 409")
  // Gone again, as the later tests count the project's volumes.
  t.equal((await cinder('DELETE', `/volumes/${spare}`)).status, 202)
  t.equal((await nova('DELETE', `/v2.1/servers/${broken}`, at('2.73'))).status, 204)
  await eventually(async () => (await cinder('GET', `/volumes/${spare}`)).status === 404, 30_000, 'the spare volume deleted')

  // An admin's reset-state leaves the volume attached but not in-use: Cinder's begin_detaching refuses it, Nova answers 400.
  const reset = async (status: string) => t.equal((await cinder('POST', `/volumes/${vol}/action`, { token: cloud.s.adminToken, body: { 'os-reset_status': { status } } })).status, 202, `reset to ${status}`)
  await reset('error')
  const notInUse = await nova('DELETE', `${base}/${vol}`, at('2.73'))
  t.match(notInUse, { status: 400, body: { badRequest: { message: /status is error; detach needs status in-use/ } } }, "detaching a volume that is not in-use: Nova's 400 (InvalidVolume)")
  t.match((await nova('GET', base, at('2.73'))).body.volumeAttachments, [{ volumeId: vol }], 'still attached')
  await reset('in-use')
  t.equal((await nova('DELETE', `${base}/${vol}`, at('2.73'))).status, 202)
  await volumeStatus(vol, 'available')
  t.same((await nova('GET', base, at('2.73'))).body.volumeAttachments, [], 'nothing attached any more')

  const refused = async (method: string, p: string, body: unknown, code: number, message: RegExp) => {
    const r = await nova(method, p, { ...at('2.73'), ...(body !== undefined ? { body } : {}) })
    t.equal(r.status, code, `${method} ${p} ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`)
    t.match(JSON.stringify(r.body), message)
  }
  await refused('POST', base, { volumeAttachment: {} }, 400, /'volumeId' is a required property/)
  await refused('POST', base, { volumeAttachment: { volumeId: 'nope' } }, 400, /is not a 'uuid'/)
  await refused('POST', base, { volumeAttachment: { volumeId: vol, device: '/dev/vda' } }, 400, /root disk/)
  await refused('POST', base, { volumeAttachment: { volumeId: '6f1c0c2e-8f0b-4c1e-9a59-0d5f4f6a0b11' } }, 404, /not found/)
  await refused('GET', `${base}/${vol}`, undefined, 404, /is not attached to server/)
  await refused('DELETE', `${base}/${vol}`, undefined, 404, /is not attached to server/)
  await reset('error')
  await refused('POST', base, { volumeAttachment: { volumeId: vol } }, 400, /cannot attach volume .* while its status is error; attach needs status available/)
  t.equal((await cinder('GET', `/volumes/${vol}`)).body.volume.status, 'error', 'the refused attach changed nothing')
  await reset('available')
  t.equal((await cinder('GET', `/volumes/${vol}`)).body.volume.status, 'available', 'refusals changed nothing')

  // Cinder's multiattach request parameter (honoured until 2023.1, and how Tempest 33 makes its multiattach volumes): the volume attaches to both servers.
  const notBool = await cinder('POST', '/volumes', { body: { volume: { size: 1, multiattach: 'sometimes' } } })
  t.match(notBool, { status: 400, body: { badRequest: { message: /multiattach must be a boolean, got "sometimes"/ } } })
  const shared = await newVolume('shared', demo.token, { multiattach: true })
  t.match((await cinder('GET', `/volumes/${shared}`)).body.volume, { multiattach: true, volume_type: '__DEFAULT__' }, 'multiattach whatever the type says')
  // As Tempest does: attach, wait for the server in the volume's attachments (Cinder lists attached ones only), attach again.
  const attachedTo = async (servers: string[]) => eventually(async () => {
    const v = (await cinder('GET', `/volumes/${shared}`)).body.volume
    return v.attachments.length === servers.length ? v : undefined
  }, 30_000, `attached to ${servers.length} servers`)
  const early = await nova('POST', `/v2.1/servers/${server}/os-volume_attachments`, { ...at('2.59'), body: { volumeAttachment: { volumeId: shared } } })
  t.match(early, { status: 400, body: { badRequest: { message: /multiattach volume: those are attached from compute API microversion 2\.60 on/ } } }, "Nova's MultiattachNotSupportedOldMicroversion")
  t.equal((await cinder('GET', `/volumes/${shared}`)).body.volume.status, 'available', 'the refusal reserved nothing')
  t.equal((await nova('POST', `/v2.1/servers/${server}/os-volume_attachments`, { ...at('2.60'), body: { volumeAttachment: { volumeId: shared } } })).status, 200)
  t.equal((await attachedTo([server])).status, 'in-use', 'listed once attached: in-use')
  t.equal((await nova('POST', `/v2.1/servers/${other}/os-volume_attachments`, { ...at('2.60'), body: { volumeAttachment: { volumeId: shared } } })).status, 200)
  const twice = await attachedTo([server, other])
  t.equal(twice.status, 'in-use')
  t.same(twice.attachments.map((x: Json) => x.server_id).sort(), [server, other].sort())
  t.equal((await nova('DELETE', `/v2.1/servers/${server}/os-volume_attachments/${shared}`, at('2.60'))).status, 202)
  await volumeStatus(shared, 'in-use')
  t.same((await attachedTo([other])).attachments.map((x: Json) => x.server_id), [other], 'in-use while the other server has it')
  t.equal((await nova('DELETE', `/v2.1/servers/${other}/os-volume_attachments/${shared}`, at('2.60'))).status, 202)
  await volumeStatus(shared, 'available')
  const bootEarly = await nova('POST', '/v2.1/servers', {
    ...at('2.59'),
    body: { server: { name: 'vm-early', imageRef: cloud.image.id, flavorRef: '1', networks: [{ uuid: cloud.network.id }], block_device_mapping_v2: [{ source_type: 'volume', destination_type: 'volume', uuid: shared, boot_index: -1 }] } },
  })
  t.match(bootEarly, { status: 400, body: { badRequest: { message: /multiattach volume: those are attached from compute API microversion 2\.60 on/ } } }, 'nor at create before 2.60')
  t.equal((await cinder('GET', `/volumes/${shared}`)).body.volume.status, 'available', 'the refused create reserved nothing')
  t.equal((await cinder('DELETE', `/volumes/${shared}`)).status, 202)
  await eventually(async () => (await cinder('GET', `/volumes/${shared}`)).status === 404 || undefined, 30_000, 'the shared volume gone')
})

t.test('os-volume_attachments 2.75–2.89: delete_on_termination on attach (2.79) and PUT (2.85), attachment_id and bdm_uuid (2.89); deleting the server deletes such a volume', async (t) => {
  const server = await newServer('vm-dot')
  const vol = await newVolume('dot')
  const at = (version: string): NovaCall => ({ token: demo.token, version })
  const base = `/v2.1/servers/${server}/os-volume_attachments`
  const one = `${base}/${vol}`
  let a = await nova('POST', base, { ...at('2.78'), body: { volumeAttachment: { volumeId: vol, delete_on_termination: true } } })
  t.equal(a.status, 400, 'delete_on_termination needs 2.79')
  t.match(a.body, { badRequest: { message: /'delete_on_termination' was unexpected/ } })
  a = schemas.add('servers', 'attach_volume', '2.79', await nova('POST', base, { ...at('2.79'), body: { volumeAttachment: { volumeId: vol, delete_on_termination: true } } }))
  t.equal(a.status, 200, JSON.stringify(a.body))
  t.match(a.body.volumeAttachment, { id: vol, volumeId: vol, delete_on_termination: true })
  const inUse = await volumeStatus(vol, 'in-use')
  t.notOk('delete_on_termination' in (await nova('GET', one, at('2.78'))).body.volumeAttachment, 'not shown before 2.79')
  t.equal(schemas.add('servers', 'show_volume_attachment', '2.79', await nova('GET', one, at('2.79'))).body.volumeAttachment.delete_on_termination, true)
  schemas.add('servers', 'list_volume_attachments', '2.79', await nova('GET', base, at('2.79')))
  t.match((await nova('GET', `/v2.1/servers/${server}`, at('2.3'))).body.server['os-extended-volumes:volumes_attached'], [{ id: vol, delete_on_termination: true }], 'the server view agrees')
  // 2.89: attachment_id and bdm_uuid instead of id (Strato's attachment row is both); attach's own answer keeps id, as Nova's does.
  t.match((await nova('GET', one, at('2.88'))).body.volumeAttachment, { id: vol })
  a = await nova('GET', base, at('2.89'))
  const attachmentId = inUse.attachments[0].attachment_id as string
  t.same(a.body.volumeAttachments, [{ serverId: server, volumeId: vol, device: '/dev/vdb', tag: null, delete_on_termination: true, attachment_id: attachmentId, bdm_uuid: attachmentId }], 'Cinder\'s attachment id')
  t.same((await nova('GET', one, at('2.89'))).body.volumeAttachment, a.body.volumeAttachments[0])
  // 2.75: unknown query parameters are a 400; limit and offset page.
  t.equal((await nova('GET', `${base}?bogus=1`, at('2.74'))).status, 200)
  t.equal((await nova('GET', `${base}?bogus=1`, at('2.75'))).status, 400)
  t.same((await nova('GET', `${base}?offset=1`, at('2.75'))).body.volumeAttachments, [])
  // 2.85: PUT changes delete_on_termination; before it PUT (a swap) is not offered; nothing else may change.
  a = await nova('PUT', one, { ...at('2.84'), body: { volumeAttachment: { volumeId: vol } } })
  t.equal(a.status, 405)
  const put = (body: Record<string, unknown>) => nova('PUT', one, { ...at('2.85'), body: { volumeAttachment: { volumeId: vol, ...body } } })
  for (const [body, why] of [[{ device: '/dev/vdc', delete_on_termination: false }, /device property is not mutable/], [{ volumeId: cloud.network.id, delete_on_termination: false }, /swapping a volume is not offered/], [{ delete_on_termination: 'sometimes' }, /must be a boolean/], [{ colour: 'red' }, /'colour' was unexpected/]] as Array<[Record<string, unknown>, RegExp]>) {
    a = await put(body)
    t.equal(a.status, 400, JSON.stringify(body))
    t.match(JSON.stringify(a.body), why)
  }
  t.equal((await nova('GET', one, at('2.85'))).body.volumeAttachment.delete_on_termination, true, 'the refusals changed nothing')
  t.equal((await put({ delete_on_termination: false, device: '/dev/vdb', serverId: server })).status, 202)
  t.equal((await nova('GET', one, at('2.85'))).body.volumeAttachment.delete_on_termination, false)
  t.match((await nova('GET', `/v2.1/servers/${server}`, at('2.3'))).body.server['os-extended-volumes:volumes_attached'], [{ id: vol, delete_on_termination: false }])
  t.equal((await put({ delete_on_termination: true })).status, 202)
  // What the flag is for: the server's deletion takes the volume with it.
  t.equal((await nova('DELETE', `/v2.1/servers/${server}`, at('2.85'))).status, 204)
  await eventually(async () => (await cinder('GET', `/volumes/${vol}`)).status === 404, 30_000, 'the volume deleted with its server')
})

t.test('os-quota-sets: per-type keys and usage; admins set them; bad keys change nothing', async (t) => {
  await newVolume('counted')
  const p = `/${demo.projectId}/os-quota-sets/${demo.projectId}`
  const shown = await cinder('GET', p)
  t.equal(shown.status, 200)
  t.match(shown.body.quota_set, { id: demo.projectId, volumes: 10, snapshots: 10, gigabytes: 1000, volumes___DEFAULT__: -1, gigabytes___DEFAULT__: -1, snapshots___DEFAULT__: -1, backups: 10 })
  const used = await cinder('GET', `${p}?usage=true`)
  t.match(used.body.quota_set.volumes, { limit: 10, in_use: 2, reserved: 0 }, 'usage counts the project\'s volumes')
  t.match(used.body.quota_set.volumes___DEFAULT__, { limit: -1, in_use: 2 })
  t.equal((await cinder('GET', `${p}/defaults`)).body.quota_set.volumes, 10)

  t.equal((await cinder('PUT', p, { body: { quota_set: { volumes: 3 } } })).status, 403, 'members set no quotas')
  const admin = cloud.s.adminToken
  const set = await cinder('PUT', `/os-quota-sets/${demo.projectId}`, { token: admin, body: { quota_set: { volumes: 3, volumes___DEFAULT__: 2 } } })
  t.equal(set.status, 200, JSON.stringify(set.body))
  t.match(set.body.quota_set, { volumes: 3, volumes___DEFAULT__: 2 })
  const over = await cinder('POST', '/volumes', { body: { volume: { size: 1 } } })
  t.equal(over.status, 413, 'the per-type limit holds')
  t.match(JSON.stringify(over.body), /volumes___DEFAULT__/)
  for (const body of [{ volumes: 5, volumes_nosuchtype: 1 }, { volumes: 5, backups: 1 }, { volumes: 'many' }]) {
    const r = await cinder('PUT', `/os-quota-sets/${demo.projectId}`, { token: admin, body: { quota_set: body } })
    t.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.body)}`)
  }
  t.match((await cinder('GET', p)).body.quota_set, { volumes: 3, volumes___DEFAULT__: 2 }, 'refused updates changed nothing')
  const { id: _id, ...saved } = (await cinder('GET', p)).body.quota_set
  const restored = await cinder('PUT', `/os-quota-sets/${demo.projectId}`, { token: admin, body: { quota_set: saved } })
  t.match(restored, { status: 200, body: { quota_set: { volumes: 3, backups: 10 } } }, 'the set GET showed goes back as it is (backups at what is shown), as Tempest restores it')
  await cinder('PUT', `/os-quota-sets/${demo.projectId}`, { token: admin, body: { quota_set: { volumes: 10, volumes___DEFAULT__: -1 } } })
})

t.test('os-quota-sets DELETE: an admin puts the project\'s volume limits back to the defaults, and only those', async (t) => {
  const admin = cloud.s.adminToken
  const p = `/os-quota-sets/${demo.projectId}`
  t.equal((await cinder('PUT', p, { token: admin, body: { quota_set: { volumes: 4, gigabytes: 40, snapshots___DEFAULT__: 3 } } })).status, 200)
  t.equal((await nova('PUT', `/v2.1/os-quota-sets/${demo.projectId}`, { body: { quota_set: { instances: 7 } } })).status, 200)

  const member = await cinder('DELETE', p)
  t.equal(member.status, 403, 'members reset no quotas')
  const unknown = await cinder('DELETE', '/os-quota-sets/00000000-0000-4000-8000-000000000000', { token: admin })
  t.equal(unknown.status, 404, `a project that does not exist: ${JSON.stringify(unknown.body)}`)
  t.match((await cinder('GET', p, { token: admin })).body.quota_set, { volumes: 4, gigabytes: 40, snapshots___DEFAULT__: 3 }, 'refused deletes changed nothing')

  const reset = await cinder('DELETE', `/${demo.projectId}${p}`, { token: admin })
  t.equal(reset.status, 200, JSON.stringify(reset.body))
  t.equal(reset.body, undefined, 'no body')
  t.match((await cinder('GET', p, { token: admin })).body.quota_set, { volumes: 10, gigabytes: 1000, snapshots: 10, snapshots___DEFAULT__: -1 }, 'the volume limits are the defaults again')
  t.equal((await nova('GET', `/v2.1/os-quota-sets/${demo.projectId}`)).body.quota_set.instances, 7, 'the compute limits are not Cinder\'s to reset')
  t.equal((await cinder('DELETE', p, { token: admin })).status, 200, 'a project with nothing set: still 200')
  await nova('PUT', `/v2.1/os-quota-sets/${demo.projectId}`, { body: { quota_set: { instances: 10 } } })
})

t.test('os-volume_upload_image: the volume uploading, then available; the image holds its data', async (t) => {
  const vol = await newVolume('to-image', demo.token, { imageRef: cloud.image.id })
  const r = await cinder('POST', `/${demo.projectId}/volumes/${vol}/action`, { body: { 'os-volume_upload_image': { image_name: 'vol-image', disk_format: 'qcow2', container_format: 'bare', force: 'False' } } })
  t.equal(r.status, 202, JSON.stringify(r.body))
  const u = r.body['os-volume_upload_image']
  t.match(u, { id: vol, status: 'uploading', image_name: 'vol-image', disk_format: 'qcow2', container_format: 'bare', size: 1, volume_type: { name: '__DEFAULT__' } })
  await volumeStatus(vol, 'available')
  const image = await eventually(async () => {
    const i = await fetch(`${cloud.s.controller.rest!.origin}/image/v2/images/${u.image_id}`, { headers: { 'x-auth-token': demo.token } }).then((x) => x.json()) as Json
    return i.status === 'active' ? i : undefined
  }, 30_000, 'the image active')
  t.match(image, { name: 'vol-image', disk_format: 'qcow2', owner: demo.projectId, visibility: 'private' })
  t.same(await compareImages(path.join(cloud.s.dataDir, 'images', u.image_id), agent.volumes.volumePath(vol), { formatA: 'qcow2', formatB: 'qcow2' }), { identical: true }, 'the image\'s bytes are the volume\'s')
  const bad = await cinder('POST', `/volumes/${vol}/action`, { body: { 'os-volume_upload_image': { disk_format: 'qcow2' } } })
  t.equal(bad.status, 400)
  t.match(bad.body, { badRequest: { message: /'image_name' is a required property/ } })
})

t.test('swap and ephemeral disks (blank → local) are refused naming the field; nothing is made', async (t) => {
  const base = { name: 'eph', imageRef: cloud.image.id, flavorRef: '1', networks: [{ uuid: cloud.network.id }] }
  const before = (await nova('GET', '/v2.1/servers', { token: demo.token })).body.servers.length
  const refused = async (bdm: unknown, message: RegExp) => {
    const a = await nova('POST', '/v2.1/servers', { token: demo.token, body: { server: { ...base, block_device_mapping_v2: bdm } } })
    t.equal(a.status, 400, JSON.stringify(a.body))
    t.match(a.body, { badRequest: { message } })
  }
  await refused([{ source_type: 'blank', destination_type: 'local', guest_format: 'swap', volume_size: 1, boot_index: -1 }], /block_device_mapping_v2\[0\]\.guest_format: Strato does not support it/)
  await refused([{ source_type: 'blank', destination_type: 'local', volume_size: 1, boot_index: -1 }], /destination_type local is only for the image root disk/)
  t.equal((await nova('GET', '/v2.1/servers', { token: demo.token })).body.servers.length, before, 'no server made')
})

const OPENSTACK = '/usr/bin/openstack'
t.test('openstack server add volume, volume list (Attached to), server remove volume, image create --volume, quota set', { skip: !existsSync(OPENSTACK) && `${OPENSTACK} is not installed` }, async (t) => {
  const home = mkdtempSync(path.join(tmpdir(), 'strato-osc-volumes-'))
  t.teardown(() => rmSync(home, { recursive: true, force: true }))
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...readOpenrc(openstackFiles(path.join(cloud.s.dataDir, 'admin-openrc')).openrc) }
  const osc = (...args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(OPENSTACK, args, { env, timeout: 180_000 }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }))
  })
  const json = async (...args: string[]): Promise<Json> => {
    const r = await osc(...args, '-f', 'json')
    t.equal(r.code, 0, `openstack ${args.join(' ')}${r.code ? `: ${r.stderr}` : ''}`)
    return r.code === 0 ? JSON.parse(r.stdout) : {}
  }
  const admin = cloud.s.adminToken
  const server = await newServer('osc-vm', admin)
  const vol = await newVolume('osc-vol', admin, { imageRef: cloud.image.id })
  const add = await osc('--os-compute-api-version', '2.79', 'server', 'add', 'volume', '--enable-delete-on-termination', 'osc-vm', 'osc-vol')
  t.equal(add.code, 0, add.stderr)
  await volumeStatus(vol, 'in-use', admin)
  const attachment = (await cinder('GET', `/volumes/${vol}`, { token: admin })).body.volume.attachments[0].attachment_id
  t.same(await json('--os-compute-api-version', '2.89', 'server', 'volume', 'list', 'osc-vm'), [{ Device: '/dev/vdb', 'Server ID': server, 'Volume ID': vol, Tag: null, 'Delete On Termination?': true, 'Attachment ID': attachment, 'BlockDeviceMapping UUID': attachment }], 'server volume list at 2.89')
  const listed = (await json('volume', 'list')) as Json[]
  t.match(listed.find((v) => v.ID === vol), { Name: 'osc-vol', Status: 'in-use', Size: 1, 'Attached to': [{ server_id: server, device: '/dev/vdb' }] })
  // The table's column (what a person reads): the server's name and the device.
  const attachedTo = async () => (await osc('volume', 'list', '-f', 'table', '-c', 'ID', '-c', 'Attached to')).stdout.split('\n').find((l) => l.includes(vol)) ?? ''
  const line = await attachedTo()
  t.match(line, /Attached to osc-vm on \/dev\/vdb/, `Attached to names the server and the device: ${line}`)
  t.equal((await osc('server', 'remove', 'volume', 'osc-vm', 'osc-vol')).code, 0)
  await volumeStatus(vol, 'available', admin)
  const after = await attachedTo()
  t.match(after, new RegExp(`^\\| ${vol} \\|\\s+\\|$`), `nothing attached any more: ${after}`)

  const created = await json('image', 'create', '--volume', 'osc-vol', '--disk-format', 'qcow2', 'osc-vol-image')
  t.match(created, { image_name: 'osc-vol-image', disk_format: 'qcow2', status: 'uploading', id: vol })
  await eventually(async () => (await json('image', 'show', 'osc-vol-image')).status === 'active', 30_000, 'the image active')
  await volumeStatus(vol, 'available', admin)

  const q = await osc('quota', 'set', '--volumes', '7', demo.projectId)
  t.equal(q.code, 0, q.stderr)
  t.equal((await cinder('GET', `/os-quota-sets/${demo.projectId}`)).body.quota_set.volumes, 7, 'openstack quota set --volumes reached Cinder\'s quota set')
})

t.test('every answer matches Tempest\'s schema', async (t) => {
  const { checked, failures } = schemas.check()
  t.ok(checked >= 5, `${checked} answers checked`)
  t.same(failures, [])
})
