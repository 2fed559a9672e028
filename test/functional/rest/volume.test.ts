/**
 * Block Storage v3 (Cinder) over REST against a real controller, nats-server
 * and an agent whose volume role runs on the fake volume backend: the
 * versions document and the catalog's volumev3 entry, volumes, snapshots,
 * types, extra specs, os-extend, os-reset_status, limits and Cinder's error
 * bodies through raw HTTP; then Debian's `openstack` client (create and the
 * refused delete as processes, the rest in one shared client; `. admin-openrc`,
 * the volume endpoint from the token's catalog): volume create/list/show/delete
 * and volume snapshot create.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { openstackFiles, readOpenrc } from '../../../controller/identity/bootstrap.js'
import { OPENSTACK, hasOpenstack, openstackClient } from '../../helpers/osc.js'

type Json = any // eslint-disable-line @typescript-eslint/no-explicit-any

let cloud: TestCloud
let demo: Tenant
let base: string

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1'] })
  demo = await tenant(cloud.s, 'demo')
  base = `${cloud.s.controller.rest!.origin}/volume`
  await eventually(async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length === 1, 10_000, 'a volume backend')
})
t.teardown(() => cloud.close())

async function cinder(method: string, p: string, o: { token?: string; body?: unknown; headers?: Record<string, string> } = {}): Promise<{ status: number; body: Json; headers: Headers }> {
  const headers: Record<string, string> = { 'x-auth-token': o.token ?? cloud.s.adminToken, ...o.headers }
  if (o.body !== undefined) headers['content-type'] ??= 'application/json'
  const r = await fetch(`${base}${p}`, { method, headers, body: o.body === undefined ? undefined : JSON.stringify(o.body) })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : undefined, headers: r.headers }
}

const statusOf = async (id: string, token?: string) => (await cinder('GET', `/v3/volumes/${id}`, { token })).body?.volume?.status as string | undefined

t.test('versions, catalog, volumes, actions, snapshots, types and limits with Cinder shapes and codes', async (t) => {
  let r = await fetch(`${base}/`)
  t.equal(r.status, 300, 'the versions document is a multiple choice, as Cinder answers it')
  t.match(await r.json(), { versions: [{ id: 'v3.0', status: 'CURRENT', version: '3.0', min_version: '3.0', links: [{ rel: 'describedby' }, { rel: 'self', href: `${base}/v3/` }] }] })
  const tok = await fetch(`${cloud.s.controller.rest!.origin}/identity/v3/auth/tokens`, { headers: { 'x-auth-token': demo.token, 'x-subject-token': demo.token } })
  const catalog = ((await tok.json()) as Json).token.catalog as Json[]
  for (const type of ['volumev3', 'block-storage']) {
    t.match(catalog.find((e) => e.type === type), { endpoints: [{ interface: 'public', region_id: 'RegionOne', url: `${base}/v3` }] }, `the catalog names ${type}`)
  }

  // Create as the demo member, with and without the project in the path.
  let a = await cinder('POST', `/v3/${demo.projectId}/volumes`, { token: demo.token, body: { volume: { size: 1, name: 'vol1', description: 'first', metadata: { k: 'v' } } } })
  t.equal(a.status, 202)
  t.match(a.body.volume, { name: 'vol1', description: 'first', size: 1, status: 'creating', bootable: 'false', metadata: { k: 'v' }, volume_type: '__DEFAULT__', attachments: [] })
  t.notOk('os-vol-host-attr:host' in a.body.volume, 'the host is for admins')
  t.notOk('os-vol-tenant-attr:tenant_id' in a.body.volume, "create answers Cinder's plain view: the extensions' attributes are GET's")
  t.equal(a.headers.get('openstack-api-version'), 'volume 3.0')
  t.match(a.headers.get('x-openstack-request-id'), /^req-/)
  const id = a.body.volume.id as string
  await eventually(async () => (await statusOf(id, demo.token)) === 'available', 15_000, 'available')
  t.match((await cinder('GET', `/v3/volumes/${id}`, { token: demo.token })).body.volume, { id, 'os-vol-tenant-attr:tenant_id': demo.projectId }, 'GET shows the project')
  a = await cinder('GET', `/v3/volumes/${id}`)
  t.match(a.body.volume, { id, 'os-vol-host-attr:host': 'node1@fake#fake' }, "an admin sees the host, as Cinder's host@backend#pool")
  t.same((await cinder('GET', '/v3/volumes', { token: demo.token })).body.volumes.map((v: Json) => [v.id, v.name]), [[id, 'vol1']])
  t.match((await cinder('GET', `/v3/${demo.projectId}/volumes/detail?name=vol1`, { token: demo.token })).body.volumes, [{ id, status: 'available', size: 1 }])
  t.same((await cinder('GET', '/v3/volumes/detail', { token: cloud.s.adminToken })).body.volumes, [], "the admin's own project has none")
  t.equal((await cinder('GET', '/v3/volumes/detail?all_tenants=1')).body.volumes.length, 1, 'all_tenants for admins')
  a = await cinder('PUT', `/v3/volumes/${id}`, { token: demo.token, body: { volume: { name: 'vol-one', metadata: { n: '1' } } } })
  t.match(a, { status: 200, body: { volume: { name: 'vol-one', metadata: { n: '1' } } } })
  t.notOk('k' in a.body.volume.metadata, "PUT's metadata replaces the set")
  t.notOk('os-vol-tenant-attr:tenant_id' in a.body.volume, 'update answers the plain view too')

  // Errors: Cinder's bodies; refused requests change nothing.
  a = await cinder('GET', '/v3/volumes/3c5f5f0e-0000-4000-8000-000000000000', { token: demo.token })
  t.match(a, { status: 404, body: { itemNotFound: { code: 404, message: /not found/ } } })
  a = await cinder('POST', '/v3/volumes', { token: demo.token, body: { volume: { size: 'big' } } })
  t.match(a, { status: 400, body: { badRequest: { code: 400, message: /size/ } } })
  a = await cinder('POST', '/v3/volumes', { token: demo.token, body: { volume: { size: 1, colour: 'red' } } })
  t.match(a.body, { badRequest: { message: /'colour' was unexpected/ } })
  a = await cinder('POST', '/v3/volumes', { token: demo.token, body: { volume: { size: 5000 } } })
  t.match(a, { status: 413, body: { overLimit: { code: 413, message: /gigabytes/ } } }, 'over quota: 413 overLimit')
  a = await cinder('GET', '/v3/volumes', { token: demo.token, headers: { 'openstack-api-version': 'volume 4.0' } })
  t.equal(a.status, 406)
  a = await cinder('GET', `/v3/${cloud.s.openrc.OS_PROJECT_NAME}x/volumes`, { token: demo.token })
  t.equal(a.status, 403, "another project's path")
  t.equal((await cinder('GET', '/v3/volumes', { token: demo.token })).body.volumes.length, 1, 'nothing was made')

  // Actions: extend (a member), reset_status (admins only).
  a = await cinder('POST', `/v3/volumes/${id}/action`, { token: demo.token, body: { 'os-extend': { new_size: 1 } } })
  t.match(a, { status: 400, body: { badRequest: { message: /larger/ } } })
  a = await cinder('POST', `/v3/volumes/${id}/action`, { token: demo.token, body: { 'os-extend': { new_size: 2 } } })
  t.equal(a.status, 202)
  await eventually(async () => (await cinder('GET', `/v3/volumes/${id}`, { token: demo.token })).body.volume.size === 2, 15_000, 'extended to 2 GiB')
  a = await cinder('POST', `/v3/volumes/${id}/action`, { token: demo.token, body: { 'os-reset_status': { status: 'error' } } })
  t.match(a, { status: 403, body: { forbidden: { code: 403 } } }, 'reset_status is for admins')
  t.equal(await statusOf(id), 'available')
  a = await cinder('POST', `/v3/volumes/${id}/action`, { body: { 'os-reset_status': { status: 'error' } } })
  t.equal(a.status, 202)
  t.equal(await statusOf(id), 'error')
  t.equal((await cinder('POST', `/v3/volumes/${id}/action`, { body: { 'os-reset_status': { status: 'available' } } })).status, 202)
  a = await cinder('POST', `/v3/volumes/${id}/action`, { token: demo.token, body: { 'os-migrate_volume': {} } })
  t.match(a.body, { badRequest: { message: 'There is no such action: os-migrate_volume' } })

  // Snapshots.
  a = await cinder('POST', '/v3/snapshots', { token: demo.token, body: { snapshot: { volume_id: id, name: 'snap1' } } })
  t.match(a, { status: 202, body: { snapshot: { name: 'snap1', volume_id: id, size: 2 } } })
  t.notOk('os-extended-snapshot-attributes:project_id' in a.body.snapshot, "create answers Cinder's plain snapshot view")
  const snap = a.body.snapshot.id as string
  t.match((await cinder('GET', `/v3/snapshots/${snap}`, { token: demo.token })).body.snapshot, { id: snap, 'os-extended-snapshot-attributes:project_id': demo.projectId })
  await eventually(async () => (await cinder('GET', `/v3/snapshots/${snap}`, { token: demo.token })).body.snapshot.status === 'available', 15_000, 'the snapshot available')
  t.match((await cinder('GET', '/v3/snapshots/detail', { token: demo.token })).body.snapshots, [{ id: snap, status: 'available', 'os-extended-snapshot-attributes:progress': '100%' }])
  a = await cinder('DELETE', `/v3/volumes/${id}`, { token: demo.token })
  t.match(a, { status: 400, body: { badRequest: { message: /snapshot/ } } }, "a volume with snapshots stays (Cinder's InvalidVolume: 400)")
  t.notOk('os-extended-snapshot-attributes:project_id' in (await cinder('GET', '/v3/snapshots', { token: demo.token })).body.snapshots[0], "the summary listing is Cinder's plain view")
  t.same((await cinder('GET', `/v3/snapshots/detail?all_tenants=1&project_id=${demo.projectId}`)).body.snapshots.map((x: Json) => x.id), [snap], "an admin's listing of one project")
  t.same((await cinder('GET', '/v3/snapshots/detail?all_tenants=1&project_id=3c5f5f0e-0000-4000-8000-000000000001')).body.snapshots, [], 'and of another (none there)')
  t.equal((await cinder('POST', `/v3/snapshots/${snap}/action`, { token: demo.token, body: { 'os-reset_status': { status: 'error' } } })).status, 403, 'members reset no snapshot')
  t.equal((await cinder('POST', `/v3/snapshots/${snap}/action`, { body: { 'os-reset_status': { status: 'error' } } })).status, 202)
  t.equal((await cinder('GET', `/v3/snapshots/${snap}`, { token: demo.token })).body.snapshot.status, 'error', 'an admin reset it')
  t.match(await cinder('POST', `/v3/snapshots/${snap}/action`, { body: { 'os-reset_status': { status: 'nonsense' } } }), { status: 400, body: { badRequest: { message: /status must be one of/ } } })
  // A delete stuck in deleting (here by a reset): not again unforced, but an admin's force delete sends it again.
  t.equal((await cinder('POST', `/v3/snapshots/${snap}/action`, { body: { 'os-reset_status': { status: 'deleting' } } })).status, 202)
  t.match(await cinder('DELETE', `/v3/snapshots/${snap}`, { token: demo.token }), { status: 400, body: { badRequest: { message: /while its status is deleting/ } } })
  t.equal((await cinder('POST', `/v3/snapshots/${snap}/action`, { token: demo.token, body: { 'os-force_delete': {} } })).status, 403, 'force delete is for admins')
  t.equal((await cinder('POST', `/v3/snapshots/${snap}/action`, { body: { 'os-force_delete': {} } })).status, 202)
  await eventually(async () => (await cinder('GET', `/v3/snapshots/${snap}`, { token: demo.token })).status === 404, 15_000, 'the snapshot gone')

  // Types and extra specs (admins change them; everyone reads the public ones).
  t.match((await cinder('GET', '/v3/types', { token: demo.token })).body.volume_types, [{ name: '__DEFAULT__', is_public: true }])
  t.match((await cinder('GET', '/v3/types/default', { token: demo.token })).body.volume_type, { name: '__DEFAULT__' })
  a = await cinder('POST', '/v3/types', { token: demo.token, body: { volume_type: { name: 'fast' } } })
  t.equal(a.status, 403, 'members do not make types')
  a = await cinder('POST', '/v3/types', { body: { volume_type: { name: 'fast', description: 'SSD', extra_specs: { 'volume_backend_name': 'fake' } } } })
  t.match(a, { status: 200, body: { volume_type: { name: 'fast', description: 'SSD', is_public: true, extra_specs: { volume_backend_name: 'fake' } } } })
  const type = a.body.volume_type.id as string
  t.same((await cinder('POST', `/v3/types/${type}/extra_specs`, { body: { extra_specs: { tier: 'gold' } } })).body, { extra_specs: { tier: 'gold' } })
  t.same((await cinder('GET', `/v3/types/${type}/extra_specs`)).body, { extra_specs: { volume_backend_name: 'fake', tier: 'gold' } })
  t.same((await cinder('GET', `/v3/types/${type}/extra_specs/tier`)).body, { tier: 'gold' })
  t.equal((await cinder('DELETE', `/v3/types/${type}/extra_specs/tier`)).status, 202)
  t.equal((await cinder('GET', `/v3/types/${type}/extra_specs/tier`)).status, 404)
  t.equal((await cinder('DELETE', `/v3/types/${type}`)).status, 202)

  a = await cinder('GET', '/v3/limits', { token: demo.token })
  t.match(a.body.limits.absolute, { maxTotalVolumes: 10, maxTotalVolumeGigabytes: 1000, maxTotalSnapshots: 10, totalVolumesUsed: 1, totalGigabytesUsed: 2 })

  t.equal((await cinder('DELETE', `/v3/volumes/${id}`, { token: demo.token })).status, 202)
  await eventually(async () => (await cinder('GET', `/v3/volumes/${id}`, { token: demo.token })).status === 404, 15_000, 'the volume gone')
})

t.test("Cinder's listing: filters, sorting, limit/marker/offset with next links; zones, extensions, /v3, one extra spec by its key (Tempest's volume API tests)", async (t) => {
  t.match(await (await fetch(`${base}/v3/`)).json(), { versions: [{ id: 'v3.0', version: '3.0' }] }, "GET /v3/ lists its version, as Cinder's")
  const ids: string[] = []
  for (const [i, meta] of [{ k: 'a' }, { k: 'b' }, { k: 'a' }].entries()) {
    const a = await cinder('POST', '/v3/volumes', { token: demo.token, body: { volume: { size: 1, name: `page${i}`, metadata: meta } } })
    t.equal(a.status, 202)
    ids.push(a.body.volume.id)
  }
  for (const id of ids) await eventually(async () => (await statusOf(id, demo.token)) === 'available', 15_000, `volume ${id} available`)
  const list = async (q: string, token = demo.token) => cinder('GET', `/v3/volumes${q}`, { token })
  const sorted = [...ids].sort()
  t.same((await list('/detail?sort=id:asc')).body.volumes.map((v: Json) => v.id), sorted, 'sort=id:asc')
  t.same((await list('?sort_key=id&sort_dir=desc')).body.volumes.map((v: Json) => v.id), [...sorted].reverse(), 'sort_key + sort_dir')
  t.same((await list('')).body.volumes.map((v: Json) => v.id), [...ids].reverse(), 'newest first by default')
  // Every page of one, following the next links: each volume once, and a next link while pages are full.
  const seen: string[] = []
  let next: string | undefined = `${base}/v3/${demo.projectId}/volumes/detail?limit=1&sort=id:asc`
  for (let pages = 0; next && pages < 10; pages++) {
    const r = (await (await fetch(next, { headers: { 'x-auth-token': demo.token } })).json()) as Json
    seen.push(...r.volumes.map((v: Json) => v.id))
    next = r.volumes_links?.find((l: Json) => l.rel === 'next')?.href
    if (r.volumes.length === 0) t.notOk(next, 'an empty last page has no next link')
  }
  t.same(seen, sorted, 'paging by limit and marker lists each volume once, in order')
  t.same((await list(`?sort=id:asc&marker=${sorted[0]}&limit=5`)).body.volumes.map((v: Json) => v.id), sorted.slice(1), 'after the marker')
  t.same((await list('?sort=id:asc&offset=2')).body.volumes.map((v: Json) => v.id), sorted.slice(2), 'offset')
  t.same((await list('/detail?sort=id:asc&offset=1&limit=1')).body.volumes_links, [{ rel: 'next', href: `${base}/v3/volumes/detail?sort=id%3Aasc&limit=1&marker=${sorted[1]}` }],
    'the next link: the path asked (no project here), the query less offset, the marker after the page')
  t.same((await list(`?metadata=${encodeURIComponent("{'k': 'a'}")}`)).body.volumes.map((v: Json) => v.id).sort(), [ids[0], ids[2]].sort(), 'metadata as the clients send it')
  t.equal((await list('?bootable=false')).body.volumes.length, 3)
  t.equal((await list('?bootable=true')).body.volumes.length, 0)
  t.equal((await list('?availability_zone=nowhere')).body.volumes.length, 0)
  t.match(await list('?limit=invalid'), { status: 400, body: { badRequest: { message: /limit must be an integer/ } } })
  t.match(await list('?sort_key=colour'), { status: 400, body: { badRequest: { message: /'colour' is not a sort key/ } } })
  t.match(await list('?sort=id:sideways'), { status: 400, body: { badRequest: { message: /neither asc nor desc/ } } })
  t.match(await list('?marker=3c5f5f0e-0000-4000-8000-000000000000'), { status: 404, body: { itemNotFound: { message: /Marker .* could not be found/ } } })
  t.match(await cinder('GET', '/v3/snapshots?limit=invalid', { token: demo.token }), { status: 400 }, 'snapshots page the same way')
  t.match(await cinder('POST', '/v3/snapshots', { token: demo.token, body: { snapshot: { volume_id: null } } }), { status: 404, body: { itemNotFound: { message: 'Volume null could not be found.' } } }, 'a null volume_id is not found, as in Cinder')

  t.same((await cinder('GET', '/v3/os-availability-zone', { token: demo.token })).body, { availabilityZoneInfo: [{ zoneName: 'nova', zoneState: { available: true } }] }, 'the volume hosts\' zones')
  t.ok((await cinder('GET', '/v3/extensions', { token: demo.token })).body.extensions.some((e: Json) => e.alias === 'os-vol-tenant-attr'), 'the extensions served')

  const type = (await cinder('POST', '/v3/types', { body: { volume_type: { name: 'one-spec' } } })).body.volume_type.id as string
  t.same((await cinder('PUT', `/v3/types/${type}/extra_specs/tier`, { body: { tier: 'gold' } })).body, { tier: 'gold' }, 'PUT sets one spec by its key')
  t.match(await cinder('PUT', `/v3/types/${type}/extra_specs/tier`, { body: { tier: 'x', other: 'y' } }), { status: 400, body: { badRequest: { message: /Request body and URI mismatch/ } } })
  t.match(await cinder('PUT', `/v3/types/${type}/extra_specs/other`, { body: { tier: 'x' } }), { status: 400 })
  t.same((await cinder('GET', `/v3/types/${type}/extra_specs`)).body, { extra_specs: { tier: 'gold' } }, 'refused ones changed nothing')
  const up = await cinder('PUT', `/v3/types/${type}`, { body: { volume_type: { description: 'd' } } })
  t.match(up, { status: 200, body: { volume_type: { description: 'd', is_public: true } } })
  t.notOk('os-volume-type-access:is_public' in up.body.volume_type, "update answers Cinder's plain type view")
  t.equal((await cinder('DELETE', `/v3/types/${type}`)).status, 202)

  // Metadata routes, bootable, a clone of a bootable volume, and an admin's force delete.
  const m = `/v3/volumes/${ids[0]}/metadata`
  t.same((await cinder('GET', m, { token: demo.token })).body, { metadata: { k: 'a' } })
  t.same((await cinder('POST', m, { token: demo.token, body: { metadata: { x: '1' } } })).body, { metadata: { k: 'a', x: '1' } }, 'POST merges')
  t.same((await cinder('PUT', `${m}/x`, { token: demo.token, body: { meta: { x: '2' } } })).body, { meta: { x: '2' } }, 'one key set')
  t.match(await cinder('PUT', `${m}/x`, { token: demo.token, body: { meta: { y: '2' } } }), { status: 400, body: { badRequest: { message: /mismatch/ } } })
  t.same((await cinder('GET', `${m}/x`, { token: demo.token })).body, { meta: { x: '2' } })
  t.equal((await cinder('DELETE', `${m}/x`, { token: demo.token })).status, 200)
  t.equal((await cinder('GET', `${m}/x`, { token: demo.token })).status, 404)
  t.same((await cinder('PUT', m, { token: demo.token, body: { metadata: { only: 'this' } } })).body, { metadata: { only: 'this' } }, 'PUT replaces')
  t.equal((await cinder('POST', `/v3/volumes/${ids[0]}/action`, { token: demo.token, body: { 'os-set_bootable': { bootable: true } } })).status, 200)
  t.equal((await cinder('GET', `/v3/volumes/${ids[0]}`, { token: demo.token })).body.volume.bootable, 'true')
  const clone = await cinder('POST', '/v3/volumes', { token: demo.token, body: { volume: { size: 1, source_volid: ids[0] } } })
  t.equal(clone.body.volume.bootable, 'true', "a clone of a bootable volume is bootable, as Cinder's")
  ids.push(clone.body.volume.id)
  await eventually(async () => (await statusOf(clone.body.volume.id, demo.token)) === 'available', 15_000, 'the clone available')
  t.equal((await cinder('POST', `/v3/volumes/${ids[1]}/action`, { token: demo.token, body: { 'os-force_delete': {} } })).status, 403, 'force delete is for admins')
  t.equal((await cinder('POST', `/v3/volumes/${ids[1]}/action`, { body: { 'os-force_delete': {} } })).status, 202)
  await eventually(async () => (await statusOf(ids[1]!, demo.token)) === undefined, 15_000, 'force-deleted')
  ids.splice(1, 1)
  for (const id of ids) t.equal((await cinder('DELETE', `/v3/volumes/${id}`, { token: demo.token })).status, 202)
  for (const id of ids) await eventually(async () => (await statusOf(id, demo.token)) === undefined, 15_000, `volume ${id} gone`)
})

t.test('openstack volume create/list/show/delete and volume snapshot create (create and the refused delete as processes)', { skip: !hasOpenstack() && `${OPENSTACK} is not installed` }, async (t) => {
  const home = mkdtempSync(path.join(tmpdir(), 'strato-osc-vol-'))
  t.teardown(() => rmSync(home, { recursive: true, force: true }))
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...readOpenrc(openstackFiles(path.join(cloud.s.dataDir, 'admin-openrc')).openrc) }
  // Two commands as /usr/bin/openstack itself; the rest (and the polls) in one shared client (test/helpers/osc.ts).
  const client = openstackClient()
  t.teardown(() => client.close())
  const osc = (...args: string[]) => client.run(args, { env, timeoutMs: 120_000 })
  const oscProcess = (...args: string[]) => client.run(args, { env, timeoutMs: 120_000, process: true })
  const json = async (...args: string[]): Promise<Json> => {
    const r = await osc(...args, '-f', 'json')
    t.equal(r.code, 0, `openstack ${args.join(' ')}${r.code ? `: ${r.stderr}` : ''}`)
    return r.code === 0 ? JSON.parse(r.stdout) : {}
  }
  const create = await oscProcess('volume', 'create', '--size', '1', '--description', 'from the cli', 'cli-vol', '-f', 'json')
  t.equal(create.code, 0, `openstack volume create${create.code ? `: ${create.stderr}` : ''}`)
  const created: Json = create.code === 0 ? JSON.parse(create.stdout) : {}
  t.match(created, { name: 'cli-vol', size: 1, description: 'from the cli', status: 'creating', type: '__DEFAULT__', bootable: 'false' })
  await eventually(async () => (await json('volume', 'show', 'cli-vol')).status === 'available', 30_000, 'available')
  t.match(await json('volume', 'list'), [{ ID: created.id, Name: 'cli-vol', Status: 'available', Size: 1 }])
  t.match(await json('volume', 'show', 'cli-vol'), { id: created.id, name: 'cli-vol', status: 'available', 'os-vol-host-attr:host': 'node1@fake#fake' })
  const snap = await json('volume', 'snapshot', 'create', '--volume', 'cli-vol', 'cli-snap')
  t.match(snap, { name: 'cli-snap', volume_id: created.id, size: 1 })
  await eventually(async () => (await json('volume', 'snapshot', 'show', 'cli-snap')).status === 'available', 30_000, 'the snapshot available')
  const refused = await oscProcess('volume', 'delete', 'cli-vol')
  t.equal(refused.code, 1, 'a volume with a snapshot is not deleted')
  t.match(refused.stderr, /snapshot/)
  t.equal((await osc('volume', 'snapshot', 'delete', 'cli-snap')).code, 0)
  await eventually(async () => (await osc('volume', 'snapshot', 'show', 'cli-snap')).code === 1, 30_000, 'the snapshot gone')
  t.equal((await osc('volume', 'delete', 'cli-vol')).code, 0)
  await eventually(async () => (await json('volume', 'list')).length === 0, 30_000, 'the volume gone')
})
