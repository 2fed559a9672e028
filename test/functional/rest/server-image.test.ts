// Nova's createImage and createBackup over REST (POST /servers/{id}/action) and Nova's image proxy
// (/v2.1/images, below 2.36; its metadata below 2.39) against a real controller, nats-server and a
// fake-driver agent: 202 with Location before 2.45 and image_id from 2.45 (each answer checked against
// Tempest's schema), the image made and active, backups rotated (also through Debian's `openstack server
// backup create`), the proxy's view, filters and metadata reaching the image catalog, bad input and refused
// states answered with Nova's fault body, changing nothing.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { openstackFiles, readOpenrc } from '../../../controller/identity/bootstrap.js'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { hasOpenstack, openstackClient } from '../../helpers/osc.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { novaClient, TempestSchemas } from './compute-helpers.js'
import type { Image, ListImagesResponse } from '../../../proto/gen/strato/image/v1/image.js'

let cloud: TestCloud
let demo: Tenant
let nova: ReturnType<typeof novaClient>
const schemas = new TempestSchemas()
const osc = openstackClient()
const scratch = mkdtempSync(path.join(tmpdir(), 'strato-osc-backup-'))

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'] })
  demo = await tenant(cloud.s, 'demo')
  nova = novaClient(cloud.s.controller.rest!.origin, cloud.s.adminToken)
})
t.teardown(async () => {
  await osc.close()
  await cloud.close()
  rmSync(scratch, { recursive: true, force: true })
})

const images = async () => (await call<ListImagesResponse>(cloud.c.images, 'listImages', { limit: 1000 }, cloud.s.adminToken)).images

/** A server of the demo project, ACTIVE. */
async function activeServer(name: string): Promise<string> {
  const created = await nova('POST', '/v2.1/servers', { token: demo.token, body: { server: { name, flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }] } } })
  if (created.status !== 202) throw new Error(`server create: ${created.status} ${JSON.stringify(created.body)}`)
  const id = created.body.server.id as string
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token, 20_000)
  return id
}

/** The server's backups of `type` (names, oldest first), as the image catalog has them. */
async function backups(server: string, type: string): Promise<string[]> {
  const all = (await images()).filter((i) => i.properties.image_type === 'backup' && i.properties.instance_uuid === server && i.properties.backup_type === type)
  return all.sort((a, b) => a.createdAt!.getTime() - b.createdAt!.getTime()).map((i) => i.name)
}

/**
 * The server's backups of `type` once they are `want`, or as they are after 10 s: the rotation
 * follows the end of the server's task, as in Nova (Tempest waits for the oldest to go too).
 */
async function backupsBecome(server: string, type: string, want: string[]): Promise<string[]> {
  await eventually(async () => JSON.stringify(await backups(server, type)) === JSON.stringify(want), 10_000, `backups ${want.join(', ')}`).catch(() => undefined)
  return backups(server, type)
}

t.test('createImage: 202 with Location (2.1) or image_id (2.45); the image becomes active with the metadata', async (t) => {
  const created = await nova('POST', '/v2.1/servers', { token: demo.token, body: { server: { name: 'rest-snap', flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }] } } })
  t.equal(created.status, 202)
  const id = created.body.server.id as string
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token, 20_000)

  const old = schemas.add('images', 'create_image', '2.1', await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body: { createImage: { name: 'rest-1', metadata: { kind: 'nightly' } } } }))
  t.equal(old.status, 202)
  t.equal(old.body, undefined, 'no body before 2.45')
  const m = /\/image\/images\/([0-9a-f-]{36})$/.exec(old.headers.location ?? '')
  t.ok(m, `Location names the image at the image endpoint (${old.headers.location})`)
  const firstId = m![1]!
  t.ok(old.headers.location!.startsWith(cloud.s.controller.rest!.origin), 'an absolute URL')
  await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
  const img = await call<Image>(cloud.c.images, 'getImage', { id: firstId }, demo.token)
  t.match(img, { name: 'rest-1', status: 'active', owner: demo.projectId })
  t.match(img.properties, { image_type: 'snapshot', instance_uuid: id, kind: 'nightly' })

  const v245 = schemas.add('images', 'create_image', '2.45', await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, version: '2.45', body: { createImage: { name: 'rest-2' } } }))
  t.equal(v245.status, 202)
  t.match(v245.body, { image_id: /^[0-9a-f-]{36}$/ }, 'image_id in the body from 2.45')
  t.notOk(v245.headers.location, 'and no Location')
  await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
  t.equal((await call<Image>(cloud.c.images, 'getImage', { id: v245.body.image_id }, demo.token)).status, 'active')
})

t.test('bad input and refused states: Nova\'s fault body, nothing changed', async (t) => {
  const created = await nova('POST', '/v2.1/servers', { token: demo.token, body: { server: { name: 'rest-snap-2', flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }] } } })
  t.equal(created.status, 202, JSON.stringify(created.body))
  const id = created.body.server.id as string
  await cloud.waitFor(id, (s) => s.status === 'ACTIVE', demo.token, 20_000)
  const before = (await images()).length
  for (const [what, body] of [
    ['no name', { createImage: {} }],
    ['an empty name', { createImage: { name: '' } }],
    ['a name with spaces around', { createImage: { name: ' x ' } }],
    ['an unknown key', { createImage: { name: 'x', compress: true } }],
    ['metadata not strings', { createImage: { name: 'x', metadata: { a: 1 } } }],
  ] as const) {
    const r = await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body })
    t.equal(r.status, 400, `${what}: 400`)
    t.match(r.body, { badRequest: { code: 400, message: /./ } })
  }
  // While another action runs the server is busy: 409 naming the task.
  await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body: { 'os-stop': null } })
  const busy = await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body: { createImage: { name: 'x' } } })
  if (busy.status === 409) t.match(busy.body, { conflictingRequest: { code: 409, message: /task 'powering-off' is in progress/ } }, 'a stop in progress: 409')
  else t.equal(busy.status, 202, 'the stop was already done: the snapshot of a SHUTOFF server is allowed')
  await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
  const other = await tenant(cloud.s, 'other')
  const hidden = await nova('POST', `/v2.1/servers/${id}/action`, { token: other.token, body: { createImage: { name: 'x' } } })
  t.equal(hidden.status, 404, "another project's server: 404")
  t.equal((await images()).length, before + (busy.status === 202 ? 1 : 0), 'no image from a refused request')
})

t.test('createBackup: a backup image of its type; the server\'s backups of that type beyond the rotation deleted once it is made', async (t) => {
  const id = await activeServer('rest-backup')
  const backup = async (body: Record<string, unknown>, version?: string) => {
    const r = await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body: { createBackup: body }, ...(version ? { version } : {}) })
    t.equal(r.status, 202, `createBackup ${JSON.stringify(body)}: ${JSON.stringify(r.body)}`)
    await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
    return r
  }
  const first = schemas.add('servers', 'create_backup', '2.1', await backup({ name: 'daily-1', backup_type: 'daily', rotation: 2 }))
  const m = /\/compute\/v2\.1\/images\/([0-9a-f-]{36})$/.exec(first.headers.location ?? '')
  t.ok(m, `before 2.45 Location names the image in Nova's image proxy (${first.headers.location})`)
  const img = await call<Image>(cloud.c.images, 'getImage', { id: m![1]! }, demo.token)
  t.match(img, { name: 'daily-1', status: 'active', owner: demo.projectId })
  t.match(img.properties, { image_type: 'backup', backup_type: 'daily', instance_uuid: id })
  const second = schemas.add('servers', 'create_backup', '2.45', await backup({ name: 'daily-2', backup_type: 'daily', rotation: '2', metadata: { kind: 'db' } }, '2.45'))
  t.match(second.body, { image_id: /^[0-9a-f-]{36}$/ }, 'image_id in the body from 2.45')
  t.match((await call<Image>(cloud.c.images, 'getImage', { id: second.body.image_id }, demo.token)).properties, { kind: 'db', image_type: 'backup' }, 'the metadata with it')
  t.same(await backupsBecome(id, 'daily', ['daily-1', 'daily-2']), ['daily-1', 'daily-2'], 'two backups within a rotation of 2')
  await backup({ name: 'weekly-1', backup_type: 'weekly', rotation: 1 })
  await backup({ name: 'daily-3', backup_type: 'daily', rotation: 2 })
  t.same(await backupsBecome(id, 'daily', ['daily-2', 'daily-3']), ['daily-2', 'daily-3'], 'the third daily backup rotated the oldest out')
  t.same(await backupsBecome(id, 'weekly', ['weekly-1']), ['weekly-1'], 'backups of another type are not counted')
  const none = await backup({ name: 'weekly-2', backup_type: 'weekly', rotation: 0 })
  t.notOk(none.headers.location, 'rotation 0: no Location (the backup is deleted too)')
  t.same(await backupsBecome(id, 'weekly', []), [], 'rotation 0 deleted every weekly backup')
  t.same(await backupsBecome(id, 'daily', ['daily-2', 'daily-3']), ['daily-2', 'daily-3'], 'and left the daily ones')

  const before = (await images()).length
  for (const [what, body] of [
    ['no backup_type', { name: 'x', rotation: 1 }],
    ['no rotation', { name: 'x', backup_type: 'daily' }],
    ['a negative rotation', { name: 'x', backup_type: 'daily', rotation: -1 }],
    ['a rotation that is no integer', { name: 'x', backup_type: 'daily', rotation: 'two' }],
    ['backup_type not a string', { name: 'x', backup_type: 7, rotation: 1 }],
    ['an unknown key', { name: 'x', backup_type: 'daily', rotation: 1, compress: true }],
    ['no name', { backup_type: 'daily', rotation: 1 }],
  ] as const) {
    const r = await nova('POST', `/v2.1/servers/${id}/action`, { token: demo.token, body: { createBackup: body } })
    t.equal(r.status, 400, `${what}: 400`)
    t.match(r.body, { badRequest: { code: 400, message: /./ } })
  }
  t.equal((await images()).length, before, 'no image from a refused backup')
})

t.test('openstack server backup create (python-openstackclient): the backup made, the oldest rotated out', { skip: !hasOpenstack() && 'python3-openstackclient is not installed' }, async (t) => {
  const id = await activeServer('osc-backup')
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: scratch, LANG: 'C.UTF-8', ...readOpenrc(openstackFiles(path.join(cloud.s.dataDir, 'admin-openrc')).openrc) }
  for (const name of ['osc-1', 'osc-2']) {
    const r = await osc.run(['server', 'backup', 'create', '--name', name, '--type', 'nightly', '--rotate', '1', id, '-f', 'json'], { env })
    t.equal(r.code, 0, `openstack server backup create --name ${name}${r.code ? `: ${r.stderr}` : ''}`)
    if (r.code === 0) t.match(JSON.parse(r.stdout), { name, id: /^[0-9a-f-]{36}$/ }, 'the backup image shown')
    await cloud.waitFor(id, (s) => s.taskState === '', demo.token, 20_000)
  }
  t.same(await backupsBecome(id, 'nightly', ['osc-2']), ['osc-2'], '--rotate 1 kept the newest')
})

t.test("Nova's image proxy below 2.36: the catalog's images as Nova shows them, filtered, their metadata, delete", async (t) => {
  const server = await activeServer('proxy-src')
  const made = await nova('POST', `/v2.1/servers/${server}/action`, { token: demo.token, version: '2.45', body: { createImage: { name: 'proxy-snap', metadata: { auto_disk_config: 'False', purpose: 'proxy' } } } })
  t.equal(made.status, 202)
  const snap = made.body.image_id as string
  await cloud.waitFor(server, (s) => s.taskState === '', demo.token, 20_000)
  const origin = cloud.s.controller.rest!.origin

  const shown = schemas.add('images', 'get_image', '2.1', await nova('GET', `/v2.1/images/${snap}`, { token: demo.token }))
  t.equal(shown.status, 200)
  const inCatalog = await call<Image>(cloud.c.images, 'getImage', { id: snap }, demo.token)
  t.ok(inCatalog.size > 0, 'the snapshot has data')
  t.match(shown.body.image, {
    id: snap, name: 'proxy-snap', status: 'ACTIVE', progress: 100, minDisk: inCatalog.minDisk, minRam: inCatalog.minRam, 'OS-DCF:diskConfig': 'MANUAL',
    metadata: { image_type: 'snapshot', instance_uuid: server, purpose: 'proxy' }, 'OS-EXT-IMG-SIZE:size': inCatalog.size,
    server: { id: server, links: [{ rel: 'self', href: `${origin}/compute/v2.1/servers/${server}` }, { rel: 'bookmark', href: `${origin}/compute/servers/${server}` }] },
  })
  t.same(shown.body.image.links, [
    { rel: 'self', href: `${origin}/compute/v2.1/images/${snap}` }, { rel: 'bookmark', href: `${origin}/compute/images/${snap}` },
    { rel: 'alternate', type: 'application/vnd.openstack.image', href: `${origin}/image/images/${snap}` },
  ])
  const base = (await nova('GET', `/v2.1/images/${cloud.image.id}`, { token: demo.token, version: '2.35' })).body.image
  t.match(base, { id: cloud.image.id, status: 'ACTIVE' }, 'the public base image, at 2.35 too')
  t.notOk('server' in base, 'an image made by no server names none')

  const ids = async (query: string, detail = false) => {
    const r = await nova('GET', `/v2.1/images${detail ? '/detail' : ''}?${query}`, { token: demo.token })
    schemas.add('images', detail ? 'list_images_details' : 'list_images', '2.1', r, `list ${query}`)
    t.equal(r.status, 200, query)
    return (r.body.images as Array<{ id: string }>).map((i) => i.id)
  }
  t.same(await ids(`server=${encodeURIComponent(`${origin}/compute/servers/${server}`)}`), [snap], 'server by its bookmark link: its snapshot only')
  t.same(await ids(`server=${server}`, true), [snap], 'server by id, detailed')
  t.ok((await ids('type=snapshot')).includes(snap) && !(await ids('type=snapshot')).includes(cloud.image.id), 'type=snapshot: snapshots, not the base image')
  t.same(await ids('name=proxy-snap&status=ACTIVE'), [snap], 'name and status (Nova\'s upper case)')
  t.same(await ids('name=proxy-snap&status=SAVING'), [], 'an active image is not SAVING')
  t.same(await ids('property-purpose=proxy'), [snap], 'property-<key>')
  t.same(await ids(`minDisk=${cloud.flavor.disk}&name=proxy-snap`), [snap], 'minDisk')
  t.same(await ids(`changes-since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`), [], 'nothing changed after a minute from now')
  const all = await ids('')
  t.ok(all.includes(snap) && all.includes(cloud.image.id), 'no filter: every image the caller sees')
  const page = await nova('GET', '/v2.1/images/detail?limit=1', { token: demo.token })
  t.equal(page.body.images.length, 1, 'limit=1')
  t.match(page.body.images_links, [{ rel: 'next', href: new RegExp(`/compute/v2\\.1/images/detail\\?limit=1&marker=${page.body.images[0].id}$`) }], 'a full page links the next')
  t.equal((await nova('GET', '/v2.1/images?changes-since=yesterday', { token: demo.token })).status, 400, 'a changes-since that is no date: 400')

  // The metadata (Nova's image_metadata.py) is the image's extra properties in the catalog.
  const meta = async (method: string, p: string, body?: unknown, version?: string) => nova(method, `/v2.1/images/${snap}/metadata${p}`, { token: demo.token, ...(body ? { body } : {}), ...(version ? { version } : {}) })
  const props = async () => (await call<Image>(cloud.c.images, 'getImage', { id: snap }, demo.token)).properties
  t.same(schemas.add('images', 'image_metadata', '2.1', await meta('PUT', '', { metadata: { os_distro: 'cirros', os_version: '0.6' } })).body, { metadata: { os_distro: 'cirros', os_version: '0.6' } })
  t.same(await props(), { os_distro: 'cirros', os_version: '0.6' }, 'PUT replaced every property')
  t.same((await meta('POST', '', { metadata: { os_version: '0.7', arch: 'x86_64' } })).body, { metadata: { os_distro: 'cirros', os_version: '0.7', arch: 'x86_64' } }, 'POST merges')
  t.same(schemas.add('images', 'image_meta_item', '2.1', await meta('PUT', '/arch', { meta: { arch: 'aarch64' } })).body, { meta: { arch: 'aarch64' } })
  t.same((await meta('GET', '/arch', undefined, '2.38')).body, { meta: { arch: 'aarch64' } }, 'one item, at 2.38 too')
  t.equal((await meta('DELETE', '/os_version')).status, 204)
  t.same((await meta('GET', '')).body, { metadata: { os_distro: 'cirros', arch: 'aarch64' } })
  t.same(await props(), { os_distro: 'cirros', arch: 'aarch64' }, 'the catalog has what the proxy shows')
  t.equal((await meta('PUT', '/arch', { meta: { other: 'x' } })).status, 400, 'body and URI mismatch: 400')
  t.equal((await meta('POST', '', { metadata: { ['k'.repeat(256)]: 'v' } })).status, 400, 'a key over 255 characters: 400')
  t.equal((await meta('GET', '/nothing')).status, 404, 'an item it has not: 404')
  t.equal((await meta('DELETE', '/nothing')).status, 404, 'deleting an item it has not: 404')
  t.same(await props(), { os_distro: 'cirros', arch: 'aarch64' }, 'refused changes changed nothing')

  const gone = [
    ['GET', '/v2.1/images', '2.36'], ['GET', '/v2.1/images/detail', '2.36'], ['GET', `/v2.1/images/${snap}`, '2.36'], ['DELETE', `/v2.1/images/${snap}`, '2.36'],
    ['GET', `/v2.1/images/${snap}/metadata`, '2.39'], ['DELETE', `/v2.1/images/${snap}/metadata/arch`, '2.39'],
  ] as const
  for (const [method, p, version] of gone) {
    const r = await nova(method, p, { token: demo.token, version })
    t.equal(r.status, 404, `${method} ${p} at ${version}: 404 (the proxy's end)`)
    t.match(r.body, { itemNotFound: { message: /Image API/ } })
  }
  t.same(await props(), { os_distro: 'cirros', arch: 'aarch64' }, 'nothing deleted from 2.39 on')

  const other = await tenant(cloud.s, 'proxy-other')
  t.equal((await nova('GET', `/v2.1/images/${snap}`, { token: other.token })).status, 404, "another project's private image: 404")
  t.equal((await nova('DELETE', `/v2.1/images/${snap}`, { token: other.token })).status, 404, 'and it cannot delete it')
  t.equal((await nova('DELETE', `/v2.1/images/${cloud.image.id}`, { token: demo.token })).status, 403, "a public image of another project: 403")
  t.equal(schemas.add('images', 'delete', '2.1', await nova('DELETE', `/v2.1/images/${snap}`, { token: demo.token })).status, 204)
  t.equal((await nova('GET', `/v2.1/images/${snap}`, { token: demo.token })).status, 404, 'deleted')
  t.notOk((await images()).some((i) => i.id === snap), 'gone from the catalog')
  for (const bad of ['-1', 'abc', `${snap}1`]) t.equal((await nova('DELETE', `/v2.1/images/${bad}`, { token: demo.token })).status, 404, `DELETE /images/${bad}: 404`)
})

// Last: the checker runs Python synchronously, which stalls this process's agent heartbeats.
t.test("every createImage, createBackup and image proxy answer matches Tempest's schema for its microversion", async (t) => {
  const { checked, failures } = schemas.check()
  t.equal(checked, 18, 'createImage 2, createBackup 2, image proxy 14')
  t.same(failures, [], "Tempest's schemas")
})
