// Images through the real gRPC server (Glance v2 semantics), with real qcow2 files made by qemu-img.
import { execFileSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { Metadata, type ServiceError } from '@grpc/grpc-js'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, client, failure, fieldOf, status, type Decoded } from '../../helpers/grpc.js'
import { ImagesClient, type Image, type ImageMember, type ListImageMembersResponse, type ListImagesResponse } from '../../../proto/gen/strato/image/v1/image.js'
import { QuotasClient } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { Project, Role, User } from '../../../proto/gen/strato/identity/v1/identity.js'

let s: TestController
let images: ImagesClient
let tmp: string
const tok: Record<string, string> = {}
const projects: Record<string, string> = {}

/** A qcow2 of `virtualMiB` with some data in it, made by qemu-img. */
function makeQcow2(name: string, virtualMiB: number, opts: { backing?: string } = {}): string {
  const raw = path.join(tmp, `${name}.raw`)
  const out = path.join(tmp, `${name}.qcow2`)
  const buf = Buffer.alloc(virtualMiB * 1024 * 1024)
  randomBytes(256 * 1024).copy(buf, 0)
  Buffer.from('STRATO TEST IMAGE '.repeat(1000)).copy(buf, 3 * 1024 * 1024)
  writeFileSync(raw, buf)
  if (opts.backing) execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', opts.backing, '-F', 'raw', out])
  else execFileSync('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', raw, out])
  return out
}

/** Uploads with the protocol's explicit end: `size` up front (default) or `last` on the final message. */
function upload(token: string, imageId: string, file: string | Buffer, opts: { chunk?: number; abortAfter?: number; end?: 'size' | 'last' | 'none' } = {}): Promise<Decoded<Image>> {
  const data = typeof file === 'string' ? readFileSync(file) : file
  const md = new Metadata()
  md.set('x-auth-token', token)
  return new Promise((resolve, reject) => {
    const stream = images.uploadImage(md, (err: ServiceError | null, res: Image) => (err ? reject(err) : resolve(res as Decoded<Image>)))
    const end = opts.end ?? 'size'
    stream.write({ imageId, size: end === 'size' ? data.length : 0 })
    const size = opts.chunk ?? 256 * 1024
    for (let off = 0, n = 0; off < data.length; off += size, n++) {
      if (opts.abortAfter !== undefined && n === opts.abortAfter) {
        setTimeout(() => stream.cancel(), 50)
        return
      }
      stream.write({ data: data.subarray(off, off + size), last: end === 'last' && off + size >= data.length })
    }
    stream.end()
  })
}

function download(token: string, id: string): Promise<Buffer> {
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

const storeFiles = () => readdirSync(path.join(s.dataDir, 'images'))

t.before(async () => {
  s = await startController()
  images = client(ImagesClient, s.address)
  tmp = mkdtempSync(path.join(tmpdir(), 'strato-img-'))
  tok.admin = s.adminToken
  const member = await call<Role>(s.clients.roles, 'getRole', { name: 'member' }, s.adminToken)
  const reader = await call<Role>(s.clients.roles, 'getRole', { name: 'reader' }, s.adminToken)
  const other = await call<{ id: string }>(s.clients.domains, 'createDomain', { name: 'otherdomain' }, s.adminToken)
  for (const [name, domainId, roleId] of [['demo', 'default', member.id], ['alt', 'default', member.id], ['peek', 'default', reader.id], ['far', other.id, member.id]] as const) {
    const p = await call<Project>(s.clients.projects, 'createProject', { name, domainId }, s.adminToken)
    const u = await call<User>(s.clients.users, 'createUser', { name, domainId, password: `${name}-pw` }, s.adminToken)
    await call(s.clients.roles, 'grantRole', { roleId, userId: u.id, projectId: p.id }, s.adminToken)
    projects[name] = p.id
    tok[name] = (await s.login(name, `${name}-pw`, { domain: domainId === 'default' ? 'Default' : 'otherdomain', project: name })).token
  }
})
t.teardown(async () => {
  images.close()
  rmSync(tmp, { recursive: true, force: true })
  await s.close()
})

t.test('the seed: image create "cirros" --file … --disk-format qcow2 --container-format bare --public', async (t) => {
  const file = makeQcow2('cirros', 64)
  const created = await call<Image>(images, 'createImage', { name: 'cirros', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public' }, tok.admin)
  t.match(created, { name: 'cirros', status: 'queued', visibility: 'public', diskFormat: 'qcow2', containerFormat: 'bare', size: 0, protected: false, minDisk: 0, minRam: 0, schema: '/v2/schemas/image' })
  t.equal(created.file, `/v2/images/${created.id}/file`)
  t.match(created.id, /^[0-9a-f-]{36}$/)
  const bytes = readFileSync(file)
  const active = await upload(tok.admin!, created.id, file)
  t.equal(active.status, 'active')
  t.equal(active.checksum, createHash('md5').update(bytes).digest('hex'), 'md5 checksum')
  t.equal(active.osHashAlgo, 'sha512')
  t.equal(active.osHashValue, createHash('sha512').update(bytes).digest('hex'), 'sha512 os_hash_value')
  t.equal(active.size, bytes.length)
  t.equal(active.virtualSize, 64 * 1024 * 1024, 'virtual_size read from the qcow2 header by the native engine')
  t.equal(active.owner, (await s.controller.auth.authenticate(tok.admin!)).projectId)
  t.ok(active.createdAt && active.updatedAt)
  t.same(await download(tok.demo!, created.id), bytes, 'any project downloads a public image, byte for byte')
  const stored = path.join(s.dataDir, 'images', created.id)
  t.ok(statSync(stored).blocks * 512 <= statSync(stored).size + 4096, 'stored no larger than the data (written sparse)')
  const second = await failure(upload(tok.admin!, created.id, file))
  t.equal(second.code, status.FAILED_PRECONDITION, 'an active image takes no second upload')
})

t.test('uploads whose content is not the declared format, or unsafe, are rejected and discarded', async (t) => {
  const q = makeQcow2('declared-raw', 8)
  const img = await call<Image>(images, 'createImage', { name: 'liar', diskFormat: 'raw', containerFormat: 'bare' }, tok.demo)
  const e = await failure(upload(tok.demo!, img.id, q))
  t.equal(e.code, status.INVALID_ARGUMENT)
  t.match(e.details, /the uploaded data is qcow2 but the image's disk_format is raw; it was discarded/)
  t.equal(fieldOf(e), 'disk_format')
  const after = await call<Image>(images, 'getImage', { id: img.id }, tok.demo)
  t.match(after, { status: 'queued', size: 0, checksum: '' }, 'back to queued, nothing recorded')
  t.notOk(storeFiles().some((f) => f.startsWith(img.id)), 'no data left in the store')

  // A qcow2 whose backing file points at a host file (OSSA-2024-001 style).
  const hostFile = path.join(tmp, 'host-secret.raw')
  writeFileSync(hostFile, 'secret')
  const evil = makeQcow2('evil', 8, { backing: hostFile })
  const img2 = await call<Image>(images, 'createImage', { name: 'evil', diskFormat: 'qcow2', containerFormat: 'bare' }, tok.demo)
  const e2 = await failure(upload(tok.demo!, img2.id, evil))
  t.equal(e2.code, status.INVALID_ARGUMENT)
  t.match(e2.details, /unsafe.*backing/i)
  t.equal((await call<Image>(images, 'getImage', { id: img2.id }, tok.demo)).status, 'queued')

  // The same image can then take a good upload.
  const good = makeQcow2('good', 8)
  t.equal((await upload(tok.demo!, img2.id, good)).status, 'active', 'a rejected image accepts a later valid upload')
})

t.test('an aborted upload returns the image to queued and leaves no partial file', async (t) => {
  const img = await call<Image>(images, 'createImage', { name: 'aborted', diskFormat: 'raw', containerFormat: 'bare' }, tok.demo)
  const data = randomBytes(4 * 1024 * 1024)
  // The server sees the client's cancel some time after the client does, and may
  // not even have taken the upload (queued → saving) when the client gave up:
  // wait (generously: the machine may be loaded) until the image is queued
  // again after a change (the upload taken, then given back: updated_at moved).
  const updated = async () => (await call<Image>(images, 'getImage', { id: img.id }, tok.demo)).updatedAt?.getTime()
  const settled = async (before: number | undefined): Promise<string> => {
    let st = ''
    for (let i = 0; i < 300; i++) {
      const now = await call<Image>(images, 'getImage', { id: img.id }, tok.demo)
      st = now.status
      if (st === 'queued' && now.updatedAt?.getTime() !== before) break
      await new Promise((r) => setTimeout(r, 100))
    }
    return st
  }
  let before = await updated()
  await failure(upload(tok.demo!, img.id, data, { chunk: 64 * 1024, abortAfter: 20 }))
  t.equal(await settled(before), 'queued')
  t.notOk(storeFiles().some((f) => f.startsWith(img.id)), 'no partial file')
  for (const end of ['size', 'last'] as const) {
    before = await updated()
    const short = await failure(upload(tok.demo!, img.id, data, { chunk: 64 * 1024, abortAfter: 20, end }))
    t.ok(short.code === status.CANCELLED, `cancelled (${end})`)
    t.equal(await settled(before), 'queued', `a cancelled upload is not kept (${end})`)
  }
  const noEnd = await failure(upload(tok.demo!, img.id, data, { end: 'none' }))
  t.equal(noEnd.code, status.INVALID_ARGUMENT, 'an upload with neither size nor last is refused')
  t.match(noEnd.details, /without a message marked last/)
  t.equal(fieldOf(noEnd), 'last')
  t.notOk(storeFiles().some((f) => f.startsWith(img.id)), 'no partial file')
  const viaLast = await upload(tok.demo!, img.id, data, { end: 'last' })
  t.equal(viaLast.status, 'active', 'an upload ended by last is kept')
  t.equal(viaLast.virtualSize, data.length, 'raw: virtual size is the data size')
  t.equal(viaLast.size, data.length)
})

t.test('bad metadata is INVALID_ARGUMENT naming the field', async (t) => {
  for (const [field, req] of [
    ['disk_format', { name: 'x', diskFormat: 'qcow3', containerFormat: 'bare' }],
    ['container_format', { name: 'x', diskFormat: 'raw', containerFormat: 'tarball' }],
    ['visibility', { name: 'x', diskFormat: 'raw', containerFormat: 'bare', visibility: 'everyone' }],
    ['name', { name: '', diskFormat: 'raw', containerFormat: 'bare' }],
    ['min_ram', { name: 'x', diskFormat: 'raw', containerFormat: 'bare', minRam: -1 }],
    ['properties.status', { name: 'x', diskFormat: 'raw', containerFormat: 'bare', properties: { status: 'active' } }],
  ] as const) {
    const e = await failure(call(images, 'createImage', req, tok.demo))
    t.equal(e.code, status.INVALID_ARGUMENT, field)
    t.equal(fieldOf(e), field)
  }
  const pub = await failure(call(images, 'createImage', { name: 'mine', diskFormat: 'raw', containerFormat: 'bare', visibility: 'public' }, tok.demo))
  t.equal(pub.code, status.PERMISSION_DENIED, 'only admins publish')
  t.equal((await call<ListImagesResponse>(images, 'listImages', { name: 'x' }, tok.demo)).images.length, 0, 'nothing created')
})

t.test('protected images cannot be deleted; update rules', async (t) => {
  const img = await call<Image>(images, 'createImage', { name: 'keep', diskFormat: 'raw', containerFormat: 'bare', protected: true, tags: ['a'], properties: { os_distro: 'cirros' } }, tok.demo)
  t.same(img.tags, ['a'])
  t.same(img.properties, { os_distro: 'cirros' })
  const e = await failure(call(images, 'deleteImage', { id: img.id }, tok.demo))
  t.equal(e.code, status.FAILED_PRECONDITION)
  t.match(e.details, /protected/)
  const u = await call<Image>(images, 'updateImage', { id: img.id, protected: false, name: 'keep2', addTags: ['b'], removeTags: ['a'], setProperties: { hw_disk_bus: 'virtio' }, minRam: 64 }, tok.demo)
  t.match(u, { name: 'keep2', protected: false, minRam: 64 })
  t.same(u.tags, ['b'])
  t.same(u.properties, { os_distro: 'cirros', hw_disk_bus: 'virtio' })
  t.equal((await failure(call(images, 'updateImage', { id: img.id, name: 'nope' }, tok.peek))).code, status.NOT_FOUND, 'another project cannot even see it')
  await call(images, 'deleteImage', { id: img.id }, tok.demo)
  t.equal((await failure(call(images, 'getImage', { id: img.id }, tok.demo))).code, status.NOT_FOUND)
})

t.test('visibility: private, shared with members, community, public; domains', async (t) => {
  const mk = (name: string, visibility: string, who = 'demo') => call<Image>(images, 'createImage', { name, diskFormat: 'raw', containerFormat: 'bare', visibility }, tok[who])
  const priv = await mk('v-private', 'private')
  const shared = await mk('v-shared', 'shared')
  const comm = await mk('v-community', 'community')
  const names = async (who: string, extra: object = {}) => (await call<ListImagesResponse>(images, 'listImages', { limit: 1000, ...extra }, tok[who])).images.map((i) => i.name)

  t.equal((await failure(call(images, 'getImage', { id: priv.id }, tok.alt))).code, status.NOT_FOUND, 'another project\'s private image is invisible')
  t.notOk((await names('alt')).includes('v-private'))
  t.ok((await names('demo')).includes('v-private'), 'the owner sees it')
  t.ok((await names('admin')).includes('v-private'), 'admins see everything')

  t.equal((await failure(call(images, 'addImageMember', { imageId: priv.id, memberId: projects.alt }, tok.demo))).code, status.FAILED_PRECONDITION, 'private images take no members')
  const m = await call<ImageMember>(images, 'addImageMember', { imageId: shared.id, memberId: projects.alt }, tok.demo)
  t.equal(m.status, 'pending')
  t.equal((await call<Image>(images, 'getImage', { id: shared.id }, tok.alt)).name, 'v-shared', 'a pending member can get it')
  t.notOk((await names('alt')).includes('v-shared'), 'but does not list it until accepted')
  t.ok((await names('alt', { memberStatus: 'pending' })).includes('v-shared'))
  t.equal((await failure(call(images, 'updateImageMember', { imageId: shared.id, memberId: projects.alt, status: 'accepted' }, tok.demo))).code, status.PERMISSION_DENIED, 'the owner cannot accept for the member')
  await call(images, 'updateImageMember', { imageId: shared.id, memberId: projects.alt, status: 'accepted' }, tok.alt)
  t.ok((await names('alt')).includes('v-shared'), 'accepted: listed')
  t.same((await call<ListImageMembersResponse>(images, 'listImageMembers', { id: shared.id }, tok.demo)).members.map((x) => [x.memberId, x.status]), [[projects.alt, 'accepted']])
  t.equal((await failure(call(images, 'getImage', { id: shared.id }, tok.peek))).code, status.NOT_FOUND, 'non-members do not see it')
  t.equal((await failure(call(images, 'addImageMember', { imageId: shared.id, memberId: projects.far }, tok.demo))).code, status.PERMISSION_DENIED, 'no sharing across domains')

  t.equal((await call<Image>(images, 'getImage', { id: comm.id }, tok.alt)).name, 'v-community', 'community: usable by id')
  t.notOk((await names('alt')).includes('v-community'), 'community: not in the default listing')
  t.ok((await names('alt', { visibility: 'community' })).includes('v-community'), 'listed when asked for')
  t.equal((await failure(call(images, 'getImage', { id: comm.id }, tok.far))).code, status.NOT_FOUND, 'community images stay within their domain')
  t.ok((await names('far')).includes('cirros'), 'an admin\'s public image reaches every domain')
  t.equal((await failure(call(images, 'updateImage', { id: shared.id, name: 'hijack' }, tok.alt))).code, status.PERMISSION_DENIED, 'members cannot change it')
})

t.test('readers cannot change images; deactivated images cannot be downloaded by non-admins', async (t) => {
  const e = await failure(call(images, 'createImage', { name: 'by-reader', diskFormat: 'raw', containerFormat: 'bare' }, tok.peek))
  t.equal(e.code, status.PERMISSION_DENIED, 'a reader cannot create images')
  t.match(e.details, /member role/)
  const img = await call<Image>(images, 'createImage', { name: 'deact', diskFormat: 'raw', containerFormat: 'bare', visibility: 'public' }, tok.admin)
  await upload(tok.admin!, img.id, Buffer.alloc(1024 * 1024, 7))
  t.equal((await failure(call(images, 'deactivateImage', { id: img.id }, tok.demo))).code, status.PERMISSION_DENIED)
  t.equal((await call<Image>(images, 'deactivateImage', { id: img.id }, tok.admin)).status, 'deactivated')
  const d = await failure(download(tok.demo!, img.id))
  t.equal(d.code, status.FAILED_PRECONDITION)
  t.match(d.details, /deactivated/)
  t.equal((await download(tok.admin!, img.id)).length, 1024 * 1024, 'admins still can')
  t.equal((await call<Image>(images, 'reactivateImage', { id: img.id }, tok.admin)).status, 'active')
  t.equal((await download(tok.demo!, img.id)).length, 1024 * 1024)
})

t.test('pagination with limit and marker', async (t) => {
  for (let i = 0; i < 5; i++) await call(images, 'createImage', { name: `page-${i}`, diskFormat: 'raw', containerFormat: 'bare', tags: ['paged'] }, tok.alt)
  const seen: string[] = []
  let marker = ''
  for (let pages = 0; pages < 10; pages++) {
    const r = await call<ListImagesResponse>(images, 'listImages', { tags: ['paged'], limit: 2, marker }, tok.alt)
    seen.push(...r.images.map((i) => i.name))
    if (!r.nextMarker) break
    marker = r.nextMarker
  }
  t.same(seen, ['page-4', 'page-3', 'page-2', 'page-1', 'page-0'], 'newest first, each once')
  t.equal((await failure(call(images, 'listImages', { marker: 'nope' }, tok.alt))).code, status.INVALID_ARGUMENT)
})

t.test('image size quota: an upload past image_size_total is refused and discarded', async (t) => {
  const quotas = client(QuotasClient, s.address)
  t.teardown(() => quotas.close())
  await call(quotas, 'updateQuota', { projectId: projects.alt, limits: { image_size_total: 1 } }, tok.admin)
  const img = await call<Image>(images, 'createImage', { name: 'big', diskFormat: 'raw', containerFormat: 'bare' }, tok.alt)
  for (const end of ['size', 'last'] as const) {
    const e = await failure(upload(tok.alt!, img.id, randomBytes(2 * 1024 * 1024), { end }))
    t.equal(e.code, status.RESOURCE_EXHAUSTED, `over quota (${end === 'size' ? 'refused up front' : 'stopped mid-stream'})`)
    t.match(e.details, /image_size_total/)
  }
  t.equal((await call<Image>(images, 'getImage', { id: img.id }, tok.alt)).status, 'queued')
  t.notOk(existsSync(path.join(s.dataDir, 'images', img.id)))
})
