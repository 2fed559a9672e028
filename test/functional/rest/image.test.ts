// Image v2 (Glance) over REST against a real controller: JSON shapes, Glance's status codes, and the data path.
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client } from '../../helpers/grpc.js'
import { QuotasClient } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { Project, Role, User } from '../../../proto/gen/strato/identity/v1/identity.js'

let s: TestController
let base: string
let tmp: string
const tok = {} as Record<'admin' | 'demo' | 'alt', string>
const projects: Record<string, string> = {}

type Json = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

async function api(method: string, p: string, token: string | undefined, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: Json; headers: Headers }> {
  const h: Record<string, string> = { ...headers }
  if (token) h['x-auth-token'] = token
  let payload: Buffer | string | undefined
  if (Buffer.isBuffer(body)) payload = body
  else if (body !== undefined) {
    payload = JSON.stringify(body)
    h['content-type'] ??= 'application/json'
  }
  const r = await fetch(`${base}${p}`, { method, headers: h, body: payload })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : {}, headers: r.headers }
}

const patch = (id: string, token: string, ops: unknown[]) => api('PATCH', `/v2/images/${id}`, token, ops, { 'content-type': 'application/openstack-images-v2.1-json-patch' })
const putFile = (id: string, token: string, data: Buffer, type = 'application/octet-stream') => api('PUT', `/v2/images/${id}/file`, token, data, { 'content-type': type })
const storeFiles = () => readdirSync(path.join(s.dataDir, 'images'))

function makeQcow2(name: string, virtualMiB: number): Buffer {
  const raw = path.join(tmp, `${name}.raw`)
  const out = path.join(tmp, `${name}.qcow2`)
  const buf = Buffer.alloc(virtualMiB * 1024 * 1024)
  randomBytes(256 * 1024).copy(buf, 0)
  writeFileSync(raw, buf)
  execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, out])
  return readFileSync(out)
}

t.before(async () => {
  s = await startController()
  base = `${s.controller.rest!.origin}/image`
  tmp = mkdtempSync(path.join(tmpdir(), 'strato-rest-img-'))
  tok.admin = s.adminToken
  const member = await call<Role>(s.clients.roles, 'getRole', { name: 'member' }, s.adminToken)
  for (const name of ['demo', 'alt']) {
    const p = await call<Project>(s.clients.projects, 'createProject', { name, domainId: 'default' }, s.adminToken)
    const u = await call<User>(s.clients.users, 'createUser', { name, domainId: 'default', password: `${name}-pw` }, s.adminToken)
    await call(s.clients.roles, 'grantRole', { roleId: member.id, userId: u.id, projectId: p.id }, s.adminToken)
    projects[name] = p.id
    tok[name as 'demo' | 'alt'] = (await s.login(name, `${name}-pw`, { project: name })).token
  }
})
t.teardown(async () => {
  rmSync(tmp, { recursive: true, force: true })
  await s.close()
})

t.test('version discovery (no token) and the schemas glanceclient reads', async (t) => {
  for (const [p, code] of [['', 300], ['/', 300], ['/versions', 200]] as const) {
    const r = await api('GET', p, undefined)
    t.equal(r.status, code, `GET /image${p}`)
    t.match(r.body.versions[0], { id: 'v2.5', status: 'CURRENT', links: [{ rel: 'self', href: `${base}/v2/` }] })
    t.ok(r.body.versions.some((v: Json) => v.id === 'v2.0'))
    t.ok(r.headers.get('x-openstack-request-id')?.startsWith('req-'))
  }
  for (const name of ['image', 'images', 'member', 'members']) {
    const r = await api('GET', `/v2/schemas/${name}`, tok.demo)
    t.equal(r.status, 200)
    t.equal(r.body.name, name)
  }
  t.match((await api('GET', '/v2/schemas/image', tok.demo)).body, { additionalProperties: { type: 'string' }, properties: { disk_format: { enum: [null, 'raw'] } } })
  t.same((await api('GET', '/v2/info/import', tok.demo)).body['import-methods'].value, [], 'no import methods: clients do not stage')
  const r = await api('GET', '/v2/images', undefined)
  t.equal(r.status, 401)
  t.match(r.body, { code: '401 Unauthorized', title: 'Unauthorized' })
})

t.test('create, show, list, patch, tags and delete with Glance shapes and codes', async (t) => {
  let r = await api('POST', '/v2/images', tok.demo, { name: 'cirros', disk_format: 'qcow2', container_format: 'bare', visibility: 'private', min_ram: 64, tags: ['a', 'b'], 'owner_specified.openstack.object': 'images/cirros', os_distro: 'cirros' })
  t.equal(r.status, 201)
  const img = r.body
  t.match(img, {
    name: 'cirros', status: 'queued', visibility: 'private', protected: false, os_hidden: false, owner: projects.demo, checksum: null, size: null, virtual_size: null,
    min_disk: 0, min_ram: 64, disk_format: 'qcow2', container_format: 'bare', tags: ['a', 'b'], 'owner_specified.openstack.object': 'images/cirros', os_distro: 'cirros',
    self: `/v2/images/${img.id}`, file: `/v2/images/${img.id}/file`, schema: '/v2/schemas/image',
  })
  t.match(img.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
  t.equal(r.headers.get('location'), `${base}/v2/images/${img.id}`)

  t.same((await api('GET', `/v2/images/${img.id}`, tok.demo)).body, img)
  t.equal((await api('GET', '/v2/images/cirros', tok.demo)).status, 404, 'a name is not an id (clients look it up this way first)')
  t.equal((await api('GET', `/v2/images/${img.id}`, tok.alt)).status, 404, 'a private image is hidden from other projects')

  // Refusals: read-only (403), wrong types (400, field named), bad formats (400).
  r = await api('POST', '/v2/images', tok.demo, { name: 'x', disk_format: 'raw', container_format: 'bare', status: 'active' })
  t.equal(r.status, 403)
  t.match(r.body.message, /'status' is read-only/)
  r = await api('POST', '/v2/images', tok.demo, { name: 'x', disk_format: 'raw', container_format: 'bare', min_disk: 'big' })
  t.equal(r.status, 400)
  t.match(r.body.message, /'min_disk' must be an integer/)
  r = await api('POST', '/v2/images', tok.demo, { name: 'x', disk_format: 'floppy', container_format: 'bare' })
  t.equal(r.status, 400)
  t.match(r.body, { code: '400 Bad Request', message: /disk_format 'floppy'/ })
  r = await api('POST', '/v2/images', tok.demo, { name: 'x', disk_format: 'raw', container_format: 'bare', hw_cpu_cores: 4 })
  t.equal(r.status, 400, 'extra properties are strings')
  r = await api('POST', '/v2/images', tok.demo, { name: 'x', disk_format: 'raw', container_format: 'bare', visibility: 'public' })
  t.equal(r.status, 403, 'only admins publicize')

  // Glance's name is optional: absent or null, the image has none (null), and can be given one later.
  for (const body of [{ disk_format: 'raw', container_format: 'bare' }, { name: null, disk_format: 'raw', container_format: 'bare' }]) {
    r = await api('POST', '/v2/images', tok.demo, body)
    t.equal(r.status, 201, `created without a name: ${JSON.stringify(body)}`)
    t.equal(r.body.name, null, 'its name is null')
    t.equal((await api('GET', `/v2/images/${r.body.id}`, tok.demo)).body.name, null, 'also when read back')
    t.equal((await patch(r.body.id, tok.demo, [{ op: 'replace', path: '/name', value: 'named-later' }])).body.name, 'named-later')
    t.equal((await api('DELETE', `/v2/images/${r.body.id}`, tok.demo)).status, 204)
  }
  r = await api('POST', '/v2/images', tok.demo, { name: 'x'.repeat(256), disk_format: 'raw', container_format: 'bare' })
  t.equal(r.status, 400, 'a name over 255 characters is still refused')

  // JSON patch.
  r = await patch(img.id, tok.demo, [
    { op: 'replace', path: '/name', value: 'cirros-2' },
    { op: 'add', path: '/hw_disk_bus', value: 'virtio' },
    { op: 'replace', path: '/os_distro', value: 'cirros-0.6' },
    { op: 'remove', path: '/owner_specified.openstack.object' },
    { op: 'replace', path: '/tags', value: ['b', 'c'] },
    { op: 'replace', path: '/min_disk', value: 1 },
    { op: 'replace', path: '/protected', value: true },
  ])
  t.equal(r.status, 200)
  t.match(r.body, { name: 'cirros-2', hw_disk_bus: 'virtio', os_distro: 'cirros-0.6', tags: ['b', 'c'], min_disk: 1, protected: true })
  t.notOk('owner_specified.openstack.object' in r.body)
  t.equal((await patch(img.id, tok.demo, [{ op: 'replace', path: '/status', value: 'active' }])).status, 403)
  t.equal((await patch(img.id, tok.demo, [{ op: 'add', path: '/os_glance_foo', value: 'bar' }])).status, 403, 'the os_glance namespace is reserved')
  // The v2.0 media type's form (Tempest's): the op as the key.
  r = await api('PATCH', `/v2/images/${img.id}`, tok.demo, [{ replace: '/name', value: 'cirros-3' }, { add: '/x_legacy', value: '1' }], { 'content-type': 'application/openstack-images-v2.0-json-patch' })
  t.equal(r.status, 200)
  t.match(r.body, { name: 'cirros-3', x_legacy: '1' })
  t.equal((await patch(img.id, tok.demo, [{ op: 'remove', path: '/nope' }])).status, 409)
  t.equal((await patch(img.id, tok.demo, [{ op: 'move', path: '/name' }])).status, 400)
  t.equal((await api('PATCH', `/v2/images/${img.id}`, tok.demo, [{ op: 'replace', path: '/name', value: 'y' }])).status, 415, 'PATCH takes the json-patch media type')
  t.equal((await patch(img.id, tok.alt, [{ op: 'replace', path: '/name', value: 'y' }])).status, 404)

  // Tags one by one.
  t.equal((await api('PUT', `/v2/images/${img.id}/tags/d`, tok.demo)).status, 204)
  t.equal((await api('DELETE', `/v2/images/${img.id}/tags/b`, tok.demo)).status, 204)
  t.equal((await api('DELETE', `/v2/images/${img.id}/tags/zz`, tok.demo)).status, 404)
  t.same((await api('GET', `/v2/images/${img.id}`, tok.demo)).body.tags, ['c', 'd'])

  // Protected: 403 to delete; then unprotect and delete (204), then 404.
  r = await api('DELETE', `/v2/images/${img.id}`, tok.demo)
  t.equal(r.status, 403)
  t.match(r.body.message, /protected/)
  await patch(img.id, tok.demo, [{ op: 'replace', path: '/protected', value: false }])
  t.equal((await api('DELETE', `/v2/images/${img.id}`, tok.demo)).status, 204)
  t.equal((await api('GET', `/v2/images/${img.id}`, tok.demo)).status, 404)
})

t.test('list: filters, sort, limit/marker with the next link', async (t) => {
  const ids: string[] = []
  for (const [i, fmt] of ['raw', 'qcow2', 'raw', 'iso', 'raw'].entries()) {
    const r = await api('POST', '/v2/images', tok.alt, { name: `l${i}`, disk_format: fmt, container_format: i === 3 ? 'ovf' : 'bare', tags: i % 2 ? ['odd'] : [], os_distro: i === 4 ? 'debian' : 'cirros' })
    ids.push(r.body.id)
  }
  // Sizes for sorting: upload raw data of different lengths to the raw ones.
  for (const [i, n] of [[0, 3000], [2, 1000], [4, 2000]] as const) t.equal((await putFile(ids[i]!, tok.alt, randomBytes(n))).status, 204)
  const list = async (q: string) => {
    const r = await api('GET', `/v2/images${q}`, tok.alt)
    t.equal(r.status, 200, q)
    return r.body
  }
  let b = await list('')
  t.same(b.images.map((i: Json) => i.id), [...ids].reverse(), 'newest first by default')
  t.equal(b.first, '/v2/images')
  t.equal(b.schema, '/v2/schemas/images')
  t.notOk(b.next)
  t.same((await list('?disk_format=raw')).images.map((i: Json) => i.name), ['l4', 'l2', 'l0'])
  t.same((await list('?container_format=ovf')).images.map((i: Json) => i.name), ['l3'])
  t.same((await list('?tag=odd')).images.map((i: Json) => i.name), ['l3', 'l1'])
  t.same((await list('?os_distro=debian')).images.map((i: Json) => i.name), ['l4'], 'extra properties filter')
  t.same((await list('?name=l2')).images.map((i: Json) => i.name), ['l2'])
  t.same((await list('?status=active&sort=size:asc')).images.map((i: Json) => i.size), [1000, 2000, 3000])
  t.same((await list('?status=active&sort_key=size&sort_dir=desc')).images.map((i: Json) => i.size), [3000, 2000, 1000])
  t.same((await list('?size_min=1500&size_max=2500')).images.map((i: Json) => i.name), ['l4'])
  t.same((await list('?disk_format=in:iso,qcow2')).images.map((i: Json) => i.name), ['l3', 'l1'])
  t.same((await list('?os_hidden=True')).images, [])
  t.equal((await api('GET', '/v2/images?sort_key=colour', tok.alt)).status, 400)
  t.equal((await api('GET', '/v2/images?limit=-1', tok.alt)).status, 400)

  // Paging, in the catalog's order and in a sorted one: follow `next` to the end.
  for (const q of ['?limit=2', '?limit=2&sort=name:asc']) {
    const seen: string[] = []
    let next: string | undefined = `${q}`
    while (next) {
      b = await list(next.replace(/^\/v2\/images/, ''))
      t.ok(b.images.length <= 2)
      seen.push(...b.images.map((i: Json) => i.name))
      next = b.next
      if (next) t.match(next, /^\/v2\/images\?.*limit=2.*marker=/)
    }
    t.same(seen, q.includes('name') ? ['l0', 'l1', 'l2', 'l3', 'l4'] : ['l4', 'l3', 'l2', 'l1', 'l0'], `all pages of ${q}`)
  }
  t.notOk((await list('')).images.some((i: Json) => i.owner !== projects.alt), 'a project sees its own (there are no public ones)')
  for (const id of ids) await api('DELETE', `/v2/images/${id}`, tok.alt)
})

t.test('data: PUT …/file then GET …/file byte for byte, with Content-MD5 and ranges', async (t) => {
  const bytes = makeQcow2('up', 16)
  const img = (await api('POST', '/v2/images', tok.demo, { name: 'data', disk_format: 'qcow2', container_format: 'bare' })).body
  let r = await api('GET', `/v2/images/${img.id}/file`, tok.demo)
  t.equal(r.status, 204, 'no data yet: 204, as Glance')
  t.equal((await putFile(img.id, tok.demo, bytes, 'application/json')).status, 415)
  r = await putFile(img.id, tok.demo, bytes)
  t.equal(r.status, 204)
  const shown = (await api('GET', `/v2/images/${img.id}`, tok.demo)).body
  const md5 = createHash('md5').update(bytes).digest('hex')
  t.match(shown, { status: 'active', checksum: md5, os_hash_algo: 'sha512', os_hash_value: createHash('sha512').update(bytes).digest('hex'), size: bytes.length, virtual_size: 16 * 1024 * 1024 })
  t.equal((await putFile(img.id, tok.demo, bytes)).status, 409, 'an active image takes no second upload')

  let f = await fetch(`${base}/v2/images/${img.id}/file`, { headers: { 'x-auth-token': tok.demo } })
  t.equal(f.status, 200)
  t.equal(f.headers.get('content-md5'), md5)
  t.equal(f.headers.get('content-type'), 'application/octet-stream')
  t.equal(Number(f.headers.get('content-length')), bytes.length)
  t.ok(Buffer.from(await f.arrayBuffer()).equals(bytes), 'downloaded byte for byte')
  f = await fetch(`${base}/v2/images/${img.id}/file`, { headers: { 'x-auth-token': tok.demo, range: 'bytes=100-199' } })
  t.equal(f.status, 206)
  t.equal(f.headers.get('content-range'), `bytes 100-199/${bytes.length}`)
  t.ok(Buffer.from(await f.arrayBuffer()).equals(bytes.subarray(100, 200)))
  f = await fetch(`${base}/v2/images/${img.id}/file`, { headers: { 'x-auth-token': tok.demo, range: 'bytes=-10' } })
  t.ok(Buffer.from(await f.arrayBuffer()).equals(bytes.subarray(bytes.length - 10)))
  f = await fetch(`${base}/v2/images/${img.id}/file`, { headers: { 'x-auth-token': tok.demo, range: `bytes=${bytes.length}-` } })
  t.equal(f.status, 416)
  await f.arrayBuffer()

  // Deactivated: admins only (non-admins 403), and only admins deactivate.
  t.equal((await api('POST', `/v2/images/${img.id}/actions/deactivate`, tok.demo)).status, 403)
  t.equal((await api('POST', `/v2/images/${img.id}/actions/deactivate`, tok.admin)).status, 204)
  t.equal((await api('GET', `/v2/images/${img.id}`, tok.demo)).body.status, 'deactivated')
  t.equal((await api('GET', `/v2/images/${img.id}/file`, tok.demo)).status, 403)
  f = await fetch(`${base}/v2/images/${img.id}/file`, { headers: { 'x-auth-token': tok.admin } })
  t.ok(Buffer.from(await f.arrayBuffer()).equals(bytes), 'an admin still downloads it')
  t.equal((await api('POST', `/v2/images/${img.id}/actions/reactivate`, tok.admin)).status, 204)
  t.equal((await api('GET', `/v2/images/${img.id}`, tok.demo)).body.status, 'active')
})

t.test('refused uploads go back to queued with nothing kept: wrong format, quota, a client gone mid-body', async (t) => {
  const img = (await api('POST', '/v2/images', tok.demo, { name: 'liar', disk_format: 'raw', container_format: 'bare' })).body
  let r = await putFile(img.id, tok.demo, makeQcow2('liar', 4))
  t.equal(r.status, 400)
  t.match(r.body.message, /the uploaded data is qcow2 but the image's disk_format is raw/)
  t.match((await api('GET', `/v2/images/${img.id}`, tok.demo)).body, { status: 'queued', size: null, checksum: null })
  t.notOk(storeFiles().some((f) => f.startsWith(img.id)))

  // Formats may wait until the data comes (Glance): created without them, the upload is refused until they are set.
  const bare = (await api('POST', '/v2/images', tok.demo, { name: 'formless', protected: true })).body
  t.match(bare, { status: 'queued', disk_format: null, container_format: null, protected: true })
  r = await putFile(bare.id, tok.demo, makeQcow2('formless', 4))
  t.match(r, { status: 400, body: { message: /needs disk_format and container_format set before its data is uploaded/ } })
  t.match((await api('GET', `/v2/images/${bare.id}`, tok.demo)).body, { status: 'queued', size: null })
  t.equal((await api('DELETE', `/v2/images/${bare.id}`, tok.demo)).status, 403, 'protected: not deleted')
  r = await patch(bare.id, tok.demo, [{ op: 'add', path: '/disk_format', value: 'qcow2' }, { op: 'add', path: '/container_format', value: 'bare' }, { op: 'replace', path: '/protected', value: false }])
  t.match(r, { status: 200, body: { disk_format: 'qcow2', container_format: 'bare' } })
  t.match(await putFile(bare.id, tok.demo, makeQcow2('formless', 4)), { status: 204 })
  t.equal((await api('DELETE', `/v2/images/${bare.id}`, tok.demo)).status, 204)

  const quotas = client(QuotasClient, s.address)
  t.teardown(() => quotas.close())
  await call(quotas, 'updateQuota', { projectId: projects.alt, limits: { image_size_total: 1 } }, tok.admin)
  const big = (await api('POST', '/v2/images', tok.alt, { name: 'big', disk_format: 'raw', container_format: 'bare' })).body
  r = await putFile(big.id, tok.alt, randomBytes(2 * 1024 * 1024))
  t.equal(r.status, 413, "Glance's status for an upload over quota")
  t.match(r.body.message, /image_size_total/)
  t.equal((await api('GET', `/v2/images/${big.id}`, tok.alt)).body.status, 'queued')

  // A client that announces 8 MiB, sends 1 MiB and goes away.
  await new Promise<void>((resolve) => {
    const req = request(`${base}/v2/images/${img.id}/file`, { method: 'PUT', headers: { 'x-auth-token': tok.demo, 'content-type': 'application/octet-stream', 'content-length': 8 * 1024 * 1024 } })
    req.on('error', () => resolve())
    req.on('response', () => resolve())
    req.write(randomBytes(1024 * 1024), () => setTimeout(() => req.destroy(), 100))
  })
  for (let i = 0; i < 400 && (await api('GET', `/v2/images/${img.id}`, tok.demo)).body.status !== 'queued'; i++) await new Promise((r) => setTimeout(r, 50))
  t.equal((await api('GET', `/v2/images/${img.id}`, tok.demo)).body.status, 'queued', 'back to queued after the client left')
  t.notOk(storeFiles().some((f) => f.startsWith(img.id)), 'no partial file left')
  t.equal((await putFile(img.id, tok.demo, randomBytes(4096))).status, 204, 'and it takes a later upload')
})

/** PUT …/file with a chunked body (no Content-Length, as Tempest sends it): `parts` written with `gapMs` between them, then ended unless `hang`. */
function chunkedPut(origin: string, token: string, id: string, parts: Buffer[], opts: { gapMs?: number; hang?: boolean } = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${origin}/image/v2/images/${id}/file`, { method: 'PUT', headers: { 'x-auth-token': token, 'content-type': 'application/octet-stream' } })
    req.on('response', (res) => (res.resume(), resolve(res.statusCode!)))
    req.on('error', reject)
    void (async () => {
      for (const p of parts) {
        req.write(p)
        await new Promise((r) => setTimeout(r, opts.gapMs ?? 0))
      }
      if (!opts.hang) req.end()
    })()
  })
}

t.test('a chunked upload (no Content-Length) is taken whole; one that stalls is cut at the idle limit', async (t) => {
  const parts = Array.from({ length: 8 }, () => randomBytes(300_000))
  const img = (await api('POST', '/v2/images', tok.demo, { name: 'chunked', disk_format: 'raw', container_format: 'bare' })).body
  t.equal(await chunkedPut(s.controller.rest!.origin, tok.demo, img.id, parts, { gapMs: 5 }), 204)
  const f = await fetch(`${base}/v2/images/${img.id}/file`, { headers: { 'x-auth-token': tok.demo } })
  t.ok(Buffer.from(await f.arrayBuffer()).equals(Buffer.concat(parts)), 'byte for byte')

  const idle = await startController({ grpc: { uploadIdleTimeoutMs: 500 } as never })
  t.teardown(() => idle.close())
  const origin = idle.controller.rest!.origin
  const created = await fetch(`${origin}/image/v2/images`, { method: 'POST', headers: { 'x-auth-token': idle.adminToken, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'stall', disk_format: 'raw', container_format: 'bare' }) })
  const { id } = (await created.json()) as { id: string }
  const started = Date.now()
  const code = await chunkedPut(origin, idle.adminToken, id, [randomBytes(100_000)], { hang: true }).catch(() => 0)
  t.ok(code === 503 || code === 0, `the stalled upload is refused (${code}) or its connection closed`)
  t.ok(Date.now() - started < 60_000, `at the idle limit, not the request timeout (${Date.now() - started} ms)`)
  const after = await fetch(`${origin}/image/v2/images/${id}`, { headers: { 'x-auth-token': idle.adminToken } })
  t.equal(((await after.json()) as { status: string }).status, 'queued', 'back to queued')
})

t.test('members: the owner shares, the member accepts, both see it', async (t) => {
  const img = (await api('POST', '/v2/images', tok.demo, { name: 'shared', disk_format: 'raw', container_format: 'bare', visibility: 'shared' })).body
  let r = await api('POST', `/v2/images/${img.id}/members`, tok.demo, { member: projects.alt })
  t.equal(r.status, 200)
  t.match(r.body, { image_id: img.id, member_id: projects.alt, status: 'pending', schema: '/v2/schemas/member' })
  t.equal((await api('POST', `/v2/images/${img.id}/members`, tok.demo, { member: projects.alt })).status, 409)
  t.equal((await api('POST', `/v2/images/${img.id}/members`, tok.demo, {})).status, 400)
  t.notOk((await api('GET', '/v2/images', tok.alt)).body.images.some((i: Json) => i.id === img.id), 'pending: not listed for the member')
  t.equal((await api('PUT', `/v2/images/${img.id}/members/${projects.alt}`, tok.demo, { status: 'accepted' })).status, 403, 'the owner cannot accept for the member')
  r = await api('PUT', `/v2/images/${img.id}/members/${projects.alt}`, tok.alt, { status: 'accepted' })
  t.equal(r.status, 200)
  t.equal(r.body.status, 'accepted')
  t.ok((await api('GET', '/v2/images', tok.alt)).body.images.some((i: Json) => i.id === img.id), 'accepted: listed')
  r = await api('GET', `/v2/images/${img.id}/members`, tok.demo)
  t.match(r.body, { members: [{ member_id: projects.alt, status: 'accepted' }], schema: '/v2/schemas/members' })
  t.equal((await api('GET', `/v2/images/${img.id}/members/${projects.alt}`, tok.demo)).body.status, 'accepted')
  t.equal((await api('DELETE', `/v2/images/${img.id}/members/${projects.alt}`, tok.demo)).status, 204)
  t.equal((await api('GET', `/v2/images/${img.id}/members/${projects.alt}`, tok.demo)).status, 404)
  const priv = (await api('POST', '/v2/images', tok.demo, { name: 'p', disk_format: 'raw', container_format: 'bare', visibility: 'private' })).body
  t.equal((await api('POST', `/v2/images/${priv.id}/members`, tok.demo, { member: projects.alt })).status, 403, 'private images have no members (403, as Glance)')
})
