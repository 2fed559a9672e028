// Boot from volume over Nova's REST API (POST /servers with block_device_mapping_v2, numbers and
// booleans as strings as clients send them) against a real controller, nats-server and an agent
// whose hypervisor and volume backend are the fakes: the server is built from a volume made from
// the image, shows image "" and its volume in os-extended-volumes:volumes_attached, Cinder shows
// the volume in-use on /dev/vda; deleting the server deletes the volume it made; a bad mapping is
// Nova's 400 naming the field, and changes nothing. Then Debian's `openstack` client (the create as its own
// process, the rest in one shared client): server create --boot-from-volume 1 --image … --wait, server show,
// volume show, server delete --wait.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { openstackFiles, readOpenrc } from '../../../controller/identity/bootstrap.js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { novaClient } from './compute-helpers.js'
import { OPENSTACK, hasOpenstack, openstackClient } from '../../helpers/osc.js'

type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any

let cloud: TestCloud
let demo: Tenant
let nova: ReturnType<typeof novaClient>

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'] })
  demo = await tenant(cloud.s, 'demo')
  nova = novaClient(cloud.s.controller.rest!.origin, cloud.s.adminToken)
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 10_000, 'a volume backend')
})
t.teardown(() => cloud.close())

async function cinder(method: string, p: string, token = demo.token, body?: unknown): Promise<{ status: number; body: Json }> {
  const r = await fetch(`${cloud.s.controller.rest!.origin}/volume/v3${p}`, { method, headers: { 'x-auth-token': token, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : undefined }
}

t.test('POST /servers with block_device_mapping_v2: booted from a new volume, shown as Nova does, the volume deleted with the server', async (t) => {
  const tok = { token: demo.token, version: '2.67' }
  const server = {
    name: 'bfv-rest', imageRef: '', flavorRef: '1', networks: [{ uuid: cloud.network.id }],
    block_device_mapping_v2: [{ source_type: 'image', destination_type: 'volume', uuid: cloud.image.id, boot_index: '0', volume_size: '1', delete_on_termination: 'true', volume_type: '__DEFAULT__' }],
  }
  const a = await nova('POST', '/v2.1/servers', { ...tok, body: { server } })
  t.equal(a.status, 202, JSON.stringify(a.body))
  const id = a.body.server.id as string
  const shown = await eventually(async () => {
    const s = await nova('GET', `/v2.1/servers/${id}`, tok)
    return s.body.server.status === 'ACTIVE' ? s.body.server : undefined
  }, 15_000, 'the server ACTIVE')
  t.equal(shown.image, '', 'booted from a volume: image is "" (the CLI shows N/A (booted from volume))')
  const attached = shown['os-extended-volumes:volumes_attached'] as Array<{ id: string; delete_on_termination?: boolean }>
  t.equal(attached.length, 1)
  t.equal(attached[0]!.delete_on_termination, true, 'it goes with the server (2.3: delete_on_termination shown)')
  const volumeId = attached[0]!.id
  const v = await cinder('GET', `/volumes/${volumeId}`)
  t.match(v.body.volume, { status: 'in-use', bootable: 'true', size: 1, attachments: [{ server_id: id, device: '/dev/vda' }] }, 'Cinder: in-use on /dev/vda, bootable')
  t.equal(v.body.volume.volume_image_metadata?.image_id, cloud.image.id)
  const detach = await nova('DELETE', `/v2.1/servers/${id}/os-volume_attachments/${volumeId}`, tok)
  t.match(detach, { status: 400, body: { badRequest: { message: /is the root disk/ } } }, "the root volume is not detached: Nova's 400, the volume's refusal")
  t.equal((await cinder('GET', `/volumes/${volumeId}`)).body.volume.status, 'in-use', 'the refusal changed nothing')

  t.equal((await nova('DELETE', `/v2.1/servers/${id}`, tok)).status, 204)
  await eventually(async () => (await cinder('GET', `/volumes/${volumeId}`, cloud.s.adminToken)).status === 404, 15_000, 'the volume deleted with its server')
  t.pass('the volume went with the server (delete_on_termination)')
})

t.test('bad block_device_mapping_v2: Nova\'s 400 naming the field; nothing made', async (t) => {
  const tok = { token: demo.token }
  const base = { name: 'x', imageRef: '', flavorRef: '1', networks: [{ uuid: cloud.network.id }] }
  const broken = (await cinder('POST', '/volumes', demo.token, { volume: { size: 1, name: 'broken' } })).body.volume.id as string
  await eventually(async () => (await cinder('GET', `/volumes/${broken}`)).body.volume.status === 'available', 15_000, 'the volume made')
  t.equal((await cinder('POST', `/volumes/${broken}/action`, cloud.s.adminToken, { 'os-reset_status': { status: 'error' } })).status, 202)
  const before = (await cinder('GET', '/volumes')).body.volumes.length
  const refused = async (bdm: unknown, message: RegExp) => {
    const a = await nova('POST', '/v2.1/servers', { ...tok, body: { server: { ...base, block_device_mapping_v2: bdm } } })
    t.equal(a.status, 400, JSON.stringify(bdm))
    t.match(a.body, { badRequest: { code: 400, message } })
  }
  await refused([{ source_type: 'image', destination_type: 'volume', uuid: cloud.image.id, boot_index: 0 }], /volume_size is required for source_type image/)
  await refused([{ source_type: 'image', destination_type: 'volume', uuid: cloud.image.id, boot_index: 'first', volume_size: 1 }], /block_device_mapping_v2\[0\]\.boot_index must be an integer/)
  await refused({ source_type: 'volume' }, /block_device_mapping_v2 must be a list/)
  await refused([{ source_type: 'blank', destination_type: 'volume', volume_size: 1, disk_bus: 'ide' }], /disk_bus: Strato's disks are virtio/)
  await refused([{ source_type: 'image', destination_type: 'volume', uuid: cloud.image.id, boot_index: 0, volume_size: 1, volume_type: 'x' }], /volume_type needs microversion 2.67/)
  await refused([], /image_ref is required/)
  // The volume's status refuses (Nova's InvalidVolume): 400 as the mapping's other faults, not a 409.
  await refused([{ source_type: 'volume', destination_type: 'volume', uuid: broken, boot_index: 0 }], /cannot attach volume .* while its status is error/)
  t.equal((await cinder('GET', `/volumes/${broken}`)).body.volume.status, 'error', 'the refused volume is as it was')
  t.equal((await cinder('GET', '/volumes')).body.volumes.length, before, 'no volume made')
  t.equal((await nova('GET', '/v2.1/servers', tok)).body.servers.length, 0, 'no server made')
})

t.test('openstack server create --boot-from-volume (its own process), server show, volume show, server delete', { skip: !hasOpenstack() && `${OPENSTACK} is not installed` }, async (t) => {
  const home = mkdtempSync(path.join(tmpdir(), 'strato-osc-bfv-'))
  t.teardown(() => rmSync(home, { recursive: true, force: true }))
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...readOpenrc(openstackFiles(path.join(cloud.s.dataDir, 'admin-openrc')).openrc) }
  // The create as /usr/bin/openstack itself; the rest in one shared client (test/helpers/osc.ts).
  const client = openstackClient()
  t.teardown(() => client.close())
  const osc = (...args: string[]) => client.run(args, { env, timeoutMs: 180_000 })
  const json = async (...args: string[]): Promise<Json> => {
    const r = await osc(...args, '-f', 'json')
    t.equal(r.code, 0, `openstack ${args.join(' ')}${r.code ? `: ${r.stderr}` : ''}`)
    return r.code === 0 ? JSON.parse(r.stdout) : {}
  }
  const args = ['server', 'create', '--flavor', '1', '--image', cloud.image.id, '--boot-from-volume', '1', '--network', cloud.network.id, '--wait', 'bfv-osc']
  const r = await client.run([...args, '-f', 'json'], { env, timeoutMs: 180_000, process: true })
  t.equal(r.code, 0, `openstack ${args.join(' ')}${r.code ? `: ${r.stderr}` : ''}`)
  const created: Json = r.code === 0 ? JSON.parse(r.stdout) : {}
  t.match(created, { name: 'bfv-osc', status: 'ACTIVE', image: 'N/A (booted from volume)' })
  const shown = await json('server', 'show', 'bfv-osc')
  t.equal(shown.image, 'N/A (booted from volume)')
  const volumeId = (/"id":"([0-9a-f-]{36})"/.exec(JSON.stringify(shown.volumes_attached)) ?? [])[1]
  t.ok(volumeId, `volumes_attached names the root volume: ${JSON.stringify(shown.volumes_attached)}`)
  t.match(await json('volume', 'show', volumeId!), { status: 'in-use', bootable: 'true', size: 1 })
  t.equal((await osc('server', 'delete', '--wait', 'bfv-osc')).code, 0)
  await eventually(async () => (await cinder('GET', `/volumes/${volumeId}`, cloud.s.adminToken)).status === 404, 30_000, 'the root volume deleted with the server')
})
