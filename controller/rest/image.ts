/**
 * Image v2 (Glance) over REST: version discovery, schemas, images (create,
 * list, show, JSON-patch update, delete, deactivate/reactivate, tags),
 * members, and the image data (`PUT`/`GET /v2/images/{id}/file`). Thin as
 * `api/images.ts`: the JSON is translated to and from the image catalog's
 * calls, and the data goes through the same catalog upload and download
 * (native sink and source: MD5, SHA-512, format inspection, the store's shared
 * upload budget, quota) with the same upload turns and idle limit as gRPC.
 *
 * Where Glance's status codes differ from the catalog's error classes, the
 * handlers ask first and refuse as Glance does (403 to delete a protected
 * image or download a deactivated one, 204 for an image without data).
 */
import { createReadStream } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, Unavailable } from '../../proto/errors.js'
import type { AuthContext } from '../identity/model.js'
import type { Image, ImageMember, ImageViewer } from '../image/catalog.js'
import { CONTAINER_FORMATS, DISK_FORMATS, VISIBILITIES } from '../image/states.js'
import type { FileSource } from '../../native/index.js'
import type { UploadLimits, UploadSlots } from '../api/images.js'
import { header, HttpError, REST_PREFIX, type AuthedRequest, type RestRequest, type RestResult, type RestService, type Route } from './http.js'
import type { RestDomain } from './services.js'

const I = 'strato.image.v1.Images'

/** The upload turns and limits gRPC's UploadImage uses, shared with REST's `PUT …/file`. */
export interface ImageUploads {
  slots: UploadSlots
  limits: UploadLimits
}

/**
 * The Image API versions served. 2.6 and later bring interoperable import,
 * hidden images and multiple stores, which Strato does not serve; clients
 * that look for them see they are absent.
 */
const VERSIONS = ['2.5', '2.4', '2.3', '2.2', '2.1', '2.0']

const PATCH_TYPES = ['application/openstack-images-v2.1-json-patch', 'application/openstack-images-v2.0-json-patch']

/** Glance's attributes that only the server sets: a create or patch naming them is refused (403, as Glance). */
const READ_ONLY = new Set(['status', 'checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size', 'created_at', 'updated_at', 'file', 'schema', 'self', 'direct_url', 'locations', 'stores'])

/** Sort keys Glance accepts. */
const SORT_KEYS = ['name', 'status', 'container_format', 'disk_format', 'size', 'virtual_size', 'id', 'created_at', 'updated_at', 'visibility', 'owner', 'min_disk', 'min_ram']

/** List parameters the catalog filters on itself (in SQL); the others are applied here. */
const CATALOG_QUERY = new Set(['name', 'status', 'visibility', 'owner', 'tag', 'member_status', 'limit', 'marker'])
/** Query parameters that are not property filters. */
const NOT_FILTERS = new Set(['sort', 'sort_key', 'sort_dir', 'os_hidden'])

/** Download buffers per call, reused: reading runs ahead of the socket by this many. */
const POOL = 4
const CHUNK = 1024 * 1024

function viewerOf(a: AuthContext): ImageViewer {
  return { projectId: a.projectId, domainId: a.actingDomainId, isAdmin: a.isCloudAdmin, canWrite: a.roles.has('member') }
}

/** The caller as the image catalog takes it (also for Nova's image proxy). */
export const viewer = (req: RestRequest) => viewerOf((req as AuthedRequest).auth)

/** Glance's timestamps: seconds, `Z`. */
const stamp = (d: Date) => d.toISOString().replace(/\.\d{3}Z$/, 'Z')

/** An image as Glance shows it: core attributes, then each extra property at the top level. */
export function glanceImage(i: Image): Record<string, unknown> {
  const hasData = i.status === 'active' || i.status === 'deactivated'
  return {
    ...i.properties,
    id: i.id,
    name: i.name || null,
    status: i.status,
    visibility: i.visibility,
    protected: i.protected,
    os_hidden: false,
    owner: i.owner,
    checksum: hasData ? i.checksum : null,
    os_hash_algo: hasData ? i.osHashAlgo : null,
    os_hash_value: hasData ? i.osHashValue : null,
    size: hasData ? i.size : null,
    virtual_size: hasData && i.virtualSize > 0 ? i.virtualSize : null,
    min_disk: i.minDisk,
    min_ram: i.minRam,
    disk_format: i.diskFormat || null,
    container_format: i.containerFormat || null,
    tags: i.tags,
    created_at: stamp(i.createdAt),
    updated_at: stamp(i.updatedAt),
    self: `/v2/images/${i.id}`,
    file: i.file,
    schema: i.schema,
  }
}

function glanceMember(m: ImageMember): Record<string, unknown> {
  return { image_id: m.imageId, member_id: m.memberId, status: m.status, created_at: stamp(m.createdAt), updated_at: stamp(m.updatedAt), schema: '/v2/schemas/member' }
}

// ------------------------------------------------------------------ JSON → catalog

function typed<T>(field: string, v: unknown, type: 'string' | 'boolean' | 'integer' | 'tags'): T {
  const ok =
    type === 'integer' ? Number.isInteger(v) : type === 'tags' ? Array.isArray(v) && v.every((t) => typeof t === 'string') : typeof v === type
  if (!ok) throw new InvalidArgument(`'${field}' must be ${type === 'integer' ? 'an integer' : type === 'tags' ? 'a list of strings' : `a ${type}`}, got ${JSON.stringify(v)}`, { field })
  return v as T
}

/** Extra properties are strings in Glance's schema. */
const propertyValue = (key: string, v: unknown) => typed<string>(key, v, 'string')

function refuseReadOnly(key: string): void {
  if (READ_ONLY.has(key)) throw new HttpError(403, `Attribute '${key}' is read-only.`)
  // Glance keeps the os_glance namespace for itself.
  if (key.startsWith('os_glance')) throw new HttpError(403, `Attribute '${key}' is reserved.`)
}

function checkHidden(v: unknown): void {
  if (typed<boolean>('os_hidden', v, 'boolean')) throw new InvalidArgument('hidden images (os_hidden) are not supported', { field: 'os_hidden' })
}

type CreateRequest = Parameters<RestDomain['images']['create']>[0]

function createRequest(body: Record<string, unknown>, auth: AuthContext): CreateRequest {
  const out: CreateRequest = { properties: {} }
  for (const [key, v] of Object.entries(body)) {
    refuseReadOnly(key)
    // null is absent: an image without a name (Glance's null), the defaults for the others.
    if (v === null) continue
    switch (key) {
      case 'id': out.id = typed(key, v, 'string'); break
      case 'name': out.name = typed(key, v, 'string'); break
      case 'disk_format': out.diskFormat = typed(key, v, 'string'); break
      case 'container_format': out.containerFormat = typed(key, v, 'string'); break
      case 'visibility': out.visibility = typed(key, v, 'string'); break
      case 'protected': out.protected = typed(key, v, 'boolean'); break
      case 'min_disk': out.minDisk = typed(key, v, 'integer'); break
      case 'min_ram': out.minRam = typed(key, v, 'integer'); break
      case 'tags': out.tags = typed(key, v, 'tags'); break
      case 'os_hidden': checkHidden(v); break
      case 'owner':
        if (v !== auth.projectId) throw new PermissionDenied(`an image is owned by the project of the token that creates it (${auth.projectId ?? 'none'}), not ${JSON.stringify(v)}`)
        break
      default: out.properties![key] = propertyValue(key, v)
    }
  }
  return out
}

type UpdateRequest = Parameters<RestDomain['images']['update']>[1]

const CORE_PATCH: Record<string, (u: UpdateRequest, v: unknown) => void> = {
  name: (u, v) => (u.name = typed('name', v, 'string')),
  visibility: (u, v) => (u.visibility = typed('visibility', v, 'string')),
  protected: (u, v) => (u.protected = typed('protected', v, 'boolean')),
  min_disk: (u, v) => (u.minDisk = typed('min_disk', v, 'integer')),
  min_ram: (u, v) => (u.minRam = typed('min_ram', v, 'integer')),
  disk_format: (u, v) => (u.diskFormat = typed('disk_format', v, 'string')),
  container_format: (u, v) => (u.containerFormat = typed('container_format', v, 'string')),
  os_hidden: (_u, v) => checkHidden(v),
}

/** A JSON patch (`[{op, path, value}]`, RFC 6902's add/replace/remove as Glance takes them) as the catalog's update. */
function updateRequest(ops: unknown, current: Image): UpdateRequest {
  if (!Array.isArray(ops)) throw new InvalidArgument('the request body must be a JSON array of patch operations', { field: 'body' })
  const u: UpdateRequest = { setProperties: {}, unsetProperties: [], addTags: [], removeTags: [] }
  for (const [n, raw] of ops.entries()) {
    const op = { ...(raw as { op?: unknown; path?: unknown; value?: unknown }) }
    // The v2.0 media type names the op as the key: {"replace": "/name", "value": …}.
    const legacy = typeof raw === 'object' && raw !== null && op.op === undefined ? (['add', 'replace', 'remove'] as const).find((k) => k in (raw as object)) : undefined
    if (legacy) {
      op.op = legacy
      op.path = (raw as Record<string, unknown>)[legacy]
    }
    if (typeof op !== 'object' || op === null || typeof op.op !== 'string' || typeof op.path !== 'string') {
      throw new InvalidArgument(`patch operation ${n} must be an object with 'op' and 'path'`, { field: `[${n}]` })
    }
    // Glance's v2.1 paths are `/key`; v2.0 also took a bare `key`.
    const m = /^\/?([^/]+)$/.exec(op.path)
    if (!m) throw new InvalidArgument(`patch path '${op.path}' must name one attribute, e.g. /name`, { field: `[${n}].path` })
    const key = m[1]!.replace(/~1/g, '/').replace(/~0/g, '~')
    refuseReadOnly(key)
    if (key === 'id' || key === 'owner') throw new HttpError(403, `Attribute '${key}' is read-only.`)
    if (op.op !== 'add' && op.op !== 'replace' && op.op !== 'remove') throw new InvalidArgument(`patch op '${op.op}' is not one of add, replace, remove`, { field: `[${n}].op` })
    if (op.op !== 'remove' && !('value' in op)) throw new InvalidArgument(`patch operation ${n} (${op.op} ${op.path}) needs a value`, { field: `[${n}].value` })
    if (key === 'tags') {
      if (op.op === 'remove') throw new HttpError(403, "Attribute 'tags' is reserved; replace it with a list, or delete tags one by one")
      const want = new Set(typed<string[]>('tags', op.value, 'tags'))
      u.addTags = [...want]
      u.removeTags = current.tags.filter((t) => !want.has(t))
    } else if (key in CORE_PATCH) {
      if (op.op === 'remove') throw new HttpError(403, `Attribute '${key}' is reserved.`)
      CORE_PATCH[key]!(u, op.value)
    } else if (op.op === 'remove') {
      if (!(key in current.properties) && !(key in u.setProperties!)) throw new HttpError(409, `Property ${key} does not exist.`)
      delete u.setProperties![key]
      u.unsetProperties!.push(key)
    } else {
      if (op.op === 'replace' && !(key in current.properties) && !(key in u.setProperties!)) throw new HttpError(409, `Property ${key} does not exist.`)
      u.setProperties![key] = propertyValue(key, op.value)
      u.unsetProperties = u.unsetProperties!.filter((k) => k !== key)
    }
  }
  return u
}

// ------------------------------------------------------------------ listing

interface Sort {
  key: string
  dir: 'asc' | 'desc'
}

function sortOf(q: URLSearchParams): Sort[] {
  const dirOf = (d: string, field: string): 'asc' | 'desc' => {
    if (d !== 'asc' && d !== 'desc') throw new InvalidArgument(`sort direction '${d}' is not asc or desc`, { field })
    return d
  }
  const keyOf = (k: string, field: string) => {
    if (!SORT_KEYS.includes(k)) throw new InvalidArgument(`sort key '${k}' is not one of ${SORT_KEYS.join(', ')}`, { field })
    return k
  }
  const sort = q.get('sort')
  if (sort !== null) {
    if (q.has('sort_key') || q.has('sort_dir')) throw new InvalidArgument('sort cannot be combined with sort_key or sort_dir', { field: 'sort' })
    return sort.split(',').map((s) => {
      const [k = '', d = 'desc'] = s.trim().split(':')
      return { key: keyOf(k, 'sort'), dir: dirOf(d, 'sort') }
    })
  }
  const keys = q.getAll('sort_key')
  const dirs = q.getAll('sort_dir')
  if (dirs.length > Math.max(keys.length, 1)) throw new InvalidArgument('more sort_dir than sort_key values', { field: 'sort_dir' })
  if (keys.length === 0) return dirs.length ? [{ key: 'created_at', dir: dirOf(dirs[0]!, 'sort_dir') }] : []
  return keys.map((k, i) => ({ key: keyOf(k, 'sort_key'), dir: dirOf(dirs[i] ?? dirs[0] ?? 'desc', 'sort_dir') }))
}

function intParam(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name)
  if (v === null) return undefined
  const n = Number(v)
  if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new InvalidArgument(`${name} must be a non-negative integer, got '${v}'`, { field: name })
  return n
}

/** A Glance filter value: `in:a,b` (any of), or one value. */
function matches(value: unknown, filter: string): boolean {
  const s = value === null || value === undefined ? '' : String(value)
  if (typeof value === 'boolean') return s === filter.toLowerCase()
  return filter.startsWith('in:') ? filter.slice(3).split(',').includes(s) : s === filter
}

/** The filters of the query the catalog does not apply, as a test on the shown image. */
function extraFilter(q: URLSearchParams): ((g: Record<string, unknown>) => boolean) | undefined {
  const tests: Array<(g: Record<string, unknown>) => boolean> = []
  const sizeMin = intParam(q, 'size_min')
  const sizeMax = intParam(q, 'size_max')
  if (sizeMin !== undefined) tests.push((g) => typeof g.size === 'number' && g.size >= sizeMin)
  if (sizeMax !== undefined) tests.push((g) => typeof g.size === 'number' && g.size <= sizeMax)
  for (const key of new Set(q.keys())) {
    if (CATALOG_QUERY.has(key) || NOT_FILTERS.has(key) || key === 'size_min' || key === 'size_max') continue
    for (const v of q.getAll(key)) tests.push((g) => matches(g[key], v))
  }
  return tests.length ? (g) => tests.every((t) => t(g)) : undefined
}

/** Ties keep the catalog's order (newest first), as the sort is stable. */
function compare(a: Record<string, unknown>, b: Record<string, unknown>, sort: Sort[]): number {
  for (const { key, dir } of sort) {
    const x = a[key]
    const y = b[key]
    // Glance sorts nulls first ascending.
    const c = x === y ? 0 : x === null || x === undefined ? -1 : y === null || y === undefined ? 1 : x < y ? -1 : 1
    if (c !== 0) return dir === 'asc' ? c : -c
  }
  return 0
}

async function listImages(d: RestDomain, req: RestRequest): Promise<RestResult> {
  const q = req.query
  const v = viewer(req)
  const requested = intParam(q, 'limit')
  const limit = Math.min(requested ?? 25, 1000)
  const marker = q.get('marker') ?? undefined
  const filter = {
    name: q.get('name') ?? undefined,
    status: q.get('status') ?? undefined,
    visibility: q.get('visibility') ?? undefined,
    owner: q.get('owner') ?? undefined,
    tags: q.getAll('tag'),
    memberStatus: q.get('member_status') ?? undefined,
  }
  const sort = sortOf(q)
  const extra = extraFilter(q)
  const hidden = q.get('os_hidden')?.toLowerCase() ?? null
  if (hidden !== null && hidden !== 'true' && hidden !== 'false') throw new InvalidArgument(`os_hidden must be true or false, got '${hidden}'`, { field: 'os_hidden' })
  let page: Array<Record<string, unknown>>
  let next: string | undefined
  if (hidden === 'true' || limit === 0) {
    // No image is hidden.
    page = []
  } else if (!extra && (sort.length === 0 || (sort.length === 1 && sort[0]!.key === 'created_at' && sort[0]!.dir === 'desc'))) {
    // The catalog's own order (newest first): its page is the answer.
    const r = await d.images.list({ ...filter, limit, marker }, v)
    page = r.images.map(glanceImage)
    next = r.nextMarker || undefined
  } else {
    // Filters or orders the catalog does not know: all the caller may see, then filtered, sorted and cut here.
    let all: Array<Record<string, unknown>> = []
    for await (const i of d.images.listAll(filter, v)) all.push(glanceImage(i))
    if (extra) all = all.filter(extra)
    if (sort.length) all.sort((a, b) => compare(a, b, sort))
    let start = 0
    if (marker !== undefined) {
      start = all.findIndex((g) => g.id === marker) + 1
      if (start === 0) throw new InvalidArgument(`marker ${marker} is not an image in this listing`, { field: 'marker' })
    }
    page = all.slice(start, start + limit)
    next = start + limit < all.length ? (page[page.length - 1]!.id as string) : undefined
  }
  const rest = new URLSearchParams(q)
  rest.delete('marker')
  const base = `/v2/images${rest.size ? `?${rest}` : ''}`
  const body: Record<string, unknown> = { images: page, first: base, schema: '/v2/schemas/images' }
  if (next) {
    rest.set('marker', next)
    body.next = `/v2/images?${rest}`
  }
  return { body }
}

// ------------------------------------------------------------------ data

/**
 * The request body as groups of buffers for the catalog's upload: each group
 * is what arrived since the last was taken. Stops reading above a few MiB
 * held (TCP then holds the sender), and throws when the client sends nothing
 * for the idle limit or goes away before the end.
 */
async function* bodyPieces(raw: IncomingMessage, limits: UploadLimits): AsyncGenerator<Buffer[]> {
  const HIGH = 4 * 1024 * 1024
  let queue: Buffer[] = []
  let queued = 0
  let ended = false
  let failed: Error | undefined
  let wake: (() => void) | undefined
  const notify = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  const onData = (c: Buffer) => {
    queue.push(c)
    queued += c.length
    if (queued > HIGH) raw.pause()
    notify()
  }
  const onEnd = () => ((ended = true), notify())
  const onAbort = () => {
    failed ??= new InvalidArgument('the upload ended before its body was complete (cancelled?); nothing was kept', { field: 'body' })
    notify()
  }
  const onClose = () => ended || onAbort()
  // A client that left while waiting for its turn.
  if (raw.destroyed && !raw.complete) onAbort()
  raw.on('data', onData)
  raw.on('end', onEnd)
  raw.on('aborted', onAbort)
  raw.on('error', onAbort)
  raw.on('close', onClose)
  try {
    for (;;) {
      if (queue.length) {
        const group = queue
        queue = []
        queued = 0
        if (raw.isPaused()) raw.resume()
        yield group
        continue
      }
      if (failed) throw failed
      if (ended) return
      let timer: NodeJS.Timeout | undefined
      let idle = false
      await new Promise<void>((resolve) => {
        wake = resolve
        timer = setTimeout(() => ((idle = true), notify()), limits.idleTimeoutMs)
      })
      clearTimeout(timer)
      if (idle) throw new Unavailable(`the upload sent nothing for ${limits.idleTimeoutMs} ms (grpc.uploadIdleTimeoutMs; nothing was kept); it was aborted`)
    }
  } finally {
    raw.off('data', onData)
    raw.off('end', onEnd)
    raw.off('aborted', onAbort)
    raw.off('close', onClose)
    // An 'error' after this must not go unhandled.
  }
}

async function uploadFile(d: RestDomain, uploads: ImageUploads, req: RestRequest): Promise<RestResult> {
  const ct = (header(req.raw, 'content-type') ?? '').split(';')[0]!.trim().toLowerCase()
  if (ct !== 'application/octet-stream') throw new HttpError(415, `the content type '${ct || '(none)'}' is not supported here; send application/octet-stream`)
  const chunked = header(req.raw, 'transfer-encoding') !== undefined
  const announced = chunked ? 0 : Number(header(req.raw, 'content-length') ?? 0)
  let release: (() => void) | undefined
  try {
    release = await uploads.slots.acquire()
    await d.images.upload(req.params.id, bodyPieces(req.raw, uploads.limits), viewer(req), announced)
  } catch (err) {
    // What the client still sends is not read: close the connection rather than drain it.
    if (!req.raw.complete) {
      req.res.setHeader('connection', 'close')
      req.res.once('finish', () => req.raw.destroy())
    }
    throw err
  } finally {
    release?.()
  }
  return { status: 204 }
}

/** `bytes=a-b`, `bytes=a-` or `bytes=-n` within `size`; null for no (or an ignorable) Range. */
function rangeOf(h: string | undefined, size: number): { start: number; end: number } | null {
  const m = h === undefined ? null : /^bytes=(\d*)-(\d*)$/.exec(h.trim())
  if (!m || (m[1] === '' && m[2] === '')) return null
  let start: number
  let end: number
  if (m[1] === '') {
    start = Math.max(0, size - Number(m[2]))
    end = size - 1
  } else {
    start = Number(m[1])
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1)
  }
  if (start > end || start >= size) throw new HttpError(416, `the range ${h} is outside the image's ${size} bytes`, { 'content-range': `bytes */${size}` })
  return { start, end }
}

/** Streams the source into the response from a few reused buffers; closes the source. */
async function sendSource(res: ServerResponse, source: FileSource): Promise<void> {
  const free: Buffer[] = Array.from({ length: POOL }, () => Buffer.allocUnsafeSlow(CHUNK + 4096))
  let wake: (() => void) | undefined
  const notify = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  res.on('close', notify)
  try {
    for (;;) {
      while (free.length === 0 && !res.destroyed) await new Promise<void>((resolve) => (wake = resolve))
      if (res.destroyed) return
      const buf = free.pop()!
      const { offset, length } = await source.read(buf, 0, CHUNK)
      if (length === 0) break
      res.write(buf.subarray(offset, offset + length), () => {
        free.push(buf)
        notify()
      })
    }
    res.end()
  } finally {
    res.off('close', notify)
    source.close()
  }
}

async function downloadFile(d: RestDomain, req: RestRequest): Promise<RestResult> {
  const v = viewer(req)
  const image = await d.images.get({ id: req.params.id }, v)
  // Glance: no data yet is 204; a deactivated image is forbidden to all but admins.
  if (image.status === 'queued' || image.status === 'saving') return { status: 204 }
  if (image.status === 'deactivated' && !v.isAdmin) throw new HttpError(403, `image ${image.id} is deactivated; only admins can download it`)
  const range = rangeOf(header(req.raw, 'range'), image.size)
  const { source } = await d.images.download(image.id, v)
  const res = req.res
  res.setHeader('x-openstack-request-id', req.requestId)
  res.setHeader('content-type', 'application/octet-stream')
  if (range) {
    // A part: read through the page cache from where it starts (the native source reads whole files, front to back).
    source.close()
    res.writeHead(206, { 'content-length': range.end - range.start + 1, 'content-range': `bytes ${range.start}-${range.end}/${image.size}` })
    if (req.method === 'HEAD') {
      res.end()
      return { streamed: true }
    }
    await new Promise<void>((resolve, reject) => createReadStream(source.path, range).on('error', reject).pipe(res).on('finish', resolve).on('close', resolve))
    return { streamed: true }
  }
  res.writeHead(200, { 'content-length': image.size, 'content-md5': image.checksum })
  if (req.method === 'HEAD') {
    source.close()
    res.end()
    return { streamed: true }
  }
  await sendSource(res, source)
  return { streamed: true }
}

// ------------------------------------------------------------------ routes

async function withMember(d: RestDomain, req: RestRequest): Promise<ImageMember> {
  const m = (await d.images.listMembers(req.params.id, viewer(req))).find((x) => x.memberId === req.params.member)
  if (!m) throw new NotFound(`project ${req.params.member} is not a member of image ${req.params.id}`)
  return m
}

/** Glance's delete of the image `:id` (Nova's image proxy deletes through it too): a protected image is 403, as Glance answers. */
export async function deleteImage(d: RestDomain, req: RestRequest): Promise<void> {
  const image = await d.images.get({ id: req.params.id }, viewer(req))
  if (image.protected) throw new HttpError(403, `image ${image.id} is protected and cannot be deleted; unset protected first`)
  await d.images.delete(image.id, viewer(req))
}

/** Glance answers 403 where the catalog's precondition fails for members of a non-shared image. */
async function glanceForbids<T>(p: Promise<T>): Promise<T> {
  try {
    return await p
  } catch (err) {
    if (err instanceof FailedPrecondition) throw new HttpError(403, err.message)
    throw err
  }
}

export function imageRest(d: RestDomain): RestService {
  const images = d.images
  const versions = (req: RestRequest) => ({
    versions: VERSIONS.map((v, i) => ({ id: `v${v}`, status: i === 0 ? 'CURRENT' : 'SUPPORTED', links: [{ rel: 'self', href: `${req.baseUrl}/v2/` }] })),
  })
  const route = (method: Route['method'], path: string, rpc: string, handler: Route['handler'], extra: Partial<Route> = {}): Route => ({
    method, path, policy: rpc === 'public' ? 'public' : `${I}/${rpc}`, handler, ...extra,
  })
  const schema = (name: string, body: unknown) => route('GET', `/v2/schemas/${name}`, 'GetImage', async () => ({ body }))
  return {
    type: 'image',
    prefix: REST_PREFIX.image,
    routes: [
      route('GET', '/', 'public', async (req) => ({ status: 300, body: versions(req) })),
      route('GET', '/versions', 'public', async (req) => ({ body: versions(req) })),
      schema('image', IMAGE_SCHEMA),
      schema('images', IMAGES_SCHEMA),
      schema('member', MEMBER_SCHEMA),
      schema('members', MEMBERS_SCHEMA),
      // Interoperable import (stage, then import) is not served: no methods, so clients and Tempest skip it.
      route('GET', '/v2/info/import', 'GetImage', async () => ({
        body: { 'import-methods': { description: 'Import methods available.', type: 'array', value: [] } },
      })),
      route('POST', '/v2/images', 'CreateImage', async (req) => {
        const body = await req.json()
        if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new InvalidArgument('the request body must be a JSON object (the image)', { field: 'body' })
        const image = await images.create(createRequest(body as Record<string, unknown>, (req as AuthedRequest).auth), viewer(req))
        return { status: 201, body: glanceImage(image), headers: { location: `${req.baseUrl}/v2/images/${image.id}` } }
      }),
      route('GET', '/v2/images', 'ListImages', (req) => listImages(d, req)),
      route('GET', '/v2/images/:id', 'GetImage', async (req) => ({ body: glanceImage(await images.get({ id: req.params.id }, viewer(req))) })),
      route('PATCH', '/v2/images/:id', 'UpdateImage', async (req) => {
        const ops = await req.json()
        const current = await images.get({ id: req.params.id }, viewer(req))
        return { body: glanceImage(await images.update(current.id, updateRequest(ops, current), viewer(req))) }
      }, { accepts: PATCH_TYPES }),
      route('DELETE', '/v2/images/:id', 'DeleteImage', async (req) => (await deleteImage(d, req), {})),
      route('POST', '/v2/images/:id/actions/deactivate', 'DeactivateImage', async (req) => (await glanceForbids(images.setActive(req.params.id, false, viewer(req))), {})),
      route('POST', '/v2/images/:id/actions/reactivate', 'ReactivateImage', async (req) => (await glanceForbids(images.setActive(req.params.id, true, viewer(req))), {})),
      route('PUT', '/v2/images/:id/tags/:tag', 'UpdateImage', async (req) => (await images.update(req.params.id, { addTags: [req.params.tag!] }, viewer(req)), {})),
      route('DELETE', '/v2/images/:id/tags/:tag', 'UpdateImage', async (req) => {
        const image = await images.get({ id: req.params.id }, viewer(req))
        if (!image.tags.includes(req.params.tag!)) throw new NotFound(`image ${image.id} has no tag '${req.params.tag}'`)
        await images.update(image.id, { removeTags: [req.params.tag!] }, viewer(req))
        return {}
      }),
      route('GET', '/v2/images/:id/members', 'ListImageMembers', async (req) => ({
        body: { members: (await images.listMembers(req.params.id, viewer(req))).map(glanceMember), schema: '/v2/schemas/members' },
      })),
      route('POST', '/v2/images/:id/members', 'AddImageMember', async (req) => {
        const body = await req.json()
        const member = (body as { member?: unknown } | undefined)?.member
        if (typeof member !== 'string') throw new InvalidArgument("the request body must be {\"member\": \"<project id>\"}", { field: 'member' })
        return { body: glanceMember(await glanceForbids(images.addMember(req.params.id, member, viewer(req)))) }
      }),
      route('GET', '/v2/images/:id/members/:member', 'ListImageMembers', async (req) => ({ body: glanceMember(await withMember(d, req)) })),
      route('PUT', '/v2/images/:id/members/:member', 'UpdateImageMember', async (req) => {
        const body = await req.json()
        const status = (body as { status?: unknown } | undefined)?.status
        if (typeof status !== 'string') throw new InvalidArgument("the request body must be {\"status\": \"accepted\" | \"rejected\" | \"pending\"}", { field: 'status' })
        await withMember(d, req)
        return { body: glanceMember(await images.updateMember(req.params.id, req.params.member, status, viewer(req))) }
      }),
      route('DELETE', '/v2/images/:id/members/:member', 'DeleteImageMember', async (req) => (await images.deleteMember(req.params.id, req.params.member, viewer(req)), {})),
      route('PUT', '/v2/images/:id/file', 'UploadImage', (req) => uploadFile(d, d.imageUploads, req)),
      route('GET', '/v2/images/:id/file', 'DownloadImage', (req) => downloadFile(d, req)),
    ],
  }
}

// ------------------------------------------------------------------ schemas

const nullable = (type: string) => ({ type: [type, 'null'] })

/** Glance's image schema, for what Strato keeps (glanceclient fetches it and validates against it). */
const IMAGE_SCHEMA = {
  name: 'image',
  additionalProperties: { type: 'string' },
  links: [
    { href: '{self}', rel: 'self' },
    { href: '{file}', rel: 'enclosure' },
    { href: '{schema}', rel: 'describedby' },
  ],
  properties: {
    id: { type: 'string', pattern: '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$', description: 'An identifier for the image' },
    name: { ...nullable('string'), maxLength: 255, description: 'Descriptive name for the image' },
    status: { type: 'string', readOnly: true, enum: ['queued', 'saving', 'active', 'killed', 'deleted', 'uploading', 'importing', 'pending_delete', 'deactivated'], description: 'Status of the image' },
    visibility: { type: 'string', enum: [...VISIBILITIES], description: 'Scope of image accessibility' },
    protected: { type: 'boolean', description: 'If true, image will not be deletable.' },
    os_hidden: { type: 'boolean', description: 'If true, image will not appear in default image list response.' },
    owner: { ...nullable('string'), maxLength: 255, description: 'Owner of the image' },
    checksum: { ...nullable('string'), readOnly: true, maxLength: 32, description: 'md5 hash of image contents.' },
    os_hash_algo: { ...nullable('string'), readOnly: true, maxLength: 64, description: 'Algorithm to calculate the os_hash_value' },
    os_hash_value: { ...nullable('string'), readOnly: true, maxLength: 128, description: 'Hexdigest of the image contents using the algorithm specified by the os_hash_algo' },
    size: { ...nullable('integer'), readOnly: true, description: 'Size of image file in bytes' },
    virtual_size: { ...nullable('integer'), readOnly: true, description: 'Virtual size of image in bytes' },
    container_format: { ...nullable('string'), enum: [null, ...CONTAINER_FORMATS], description: 'Format of the container' },
    disk_format: { ...nullable('string'), enum: [null, ...DISK_FORMATS], description: 'Format of the disk' },
    created_at: { type: 'string', readOnly: true, description: 'Date and time of image registration' },
    updated_at: { type: 'string', readOnly: true, description: 'Date and time of the last image modification' },
    tags: { type: 'array', items: { type: 'string', maxLength: 255 }, description: 'List of strings related to the image' },
    direct_url: { type: 'string', readOnly: true, description: 'URL to access the image file kept in external store' },
    min_ram: { type: 'integer', description: 'Amount of ram (in MB) required to boot image.' },
    min_disk: { type: 'integer', description: 'Amount of disk space (in GB) required to boot image.' },
    self: { type: 'string', readOnly: true, description: 'An image self url' },
    file: { type: 'string', readOnly: true, description: 'An image file url' },
    schema: { type: 'string', readOnly: true, description: 'An image schema url' },
    locations: { type: 'array', items: { type: 'object' }, description: 'A set of URLs to access the image file kept in external store' },
  },
}

const IMAGES_SCHEMA = {
  name: 'images',
  properties: {
    images: { type: 'array', items: IMAGE_SCHEMA },
    schema: { type: 'string' },
    first: { type: 'string' },
    next: { type: 'string' },
  },
  links: [
    { rel: 'first', href: '{first}' },
    { rel: 'next', href: '{next}' },
    { rel: 'describedby', href: '{schema}' },
  ],
}

const MEMBER_SCHEMA = {
  name: 'member',
  properties: {
    created_at: { type: 'string', description: 'Date and time of image member creation' },
    image_id: { type: 'string', description: 'An identifier for the image' },
    member_id: { type: 'string', description: 'An identifier for the image member (project id)' },
    status: { type: 'string', enum: ['pending', 'accepted', 'rejected'], description: 'The status of this image member' },
    updated_at: { type: 'string', description: 'Date and time of last modification of image member' },
    schema: { type: 'string', readOnly: true },
  },
}

const MEMBERS_SCHEMA = {
  name: 'members',
  properties: {
    members: { type: 'array', items: MEMBER_SCHEMA },
    schema: { type: 'string' },
  },
  links: [{ rel: 'describedby', href: '{schema}' }],
}
