/**
 * Block Storage v3 (Cinder) over REST, for what the volume service offers:
 * volumes (with detail, `os-extend`, `os-reset_status`,
 * `os-volume_upload_image`), snapshots, volume
 * types and their extra specs, limits, and the versions document at
 * `/volume/`. Paths as Cinder lays them out, `/v3/{project_id}/…`, and
 * without the project (Cinder ≥ 3.67; the catalog names `/volume/v3`, so
 * the clients take that form). Handlers call the catalogs the gRPC adapters
 * (`api/volumes.ts`) call, under the same policy entries; errors are Cinder's
 * (`{"itemNotFound": {...}}`, `badRequest`, `overLimit` 413 for quota).
 * Answers name microversion 3.0 (Cinder's base): Strato shows no field a
 * later version adds.
 */
import { InvalidArgument, NotFound, PermissionDenied } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import { cinderVolumeHost } from '../../proto/volume-host.js'
import { serverCaller } from '../compute/server-model.js'
import type { SnapshotView, VolumeCaller, VolumeView } from '../volume/model.js'
import { DEFAULT_VOLUME_TYPE_ID, type VolumeTypeView } from '../volume/types.js'
import { HttpError, REST_PREFIX, bodyObject, header, type AuthedRequest, type RestRequest, type RestResult, type RestService, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { bool, int, obj, onlyKeys, str, stringMap } from './body.js'
import { volumeQuotaRoutes } from './volume-quotas.js'
import { intParam, nextLink } from './compute-common.js'

const V = 'strato.volume.v1'
/** The version this API answers: Cinder's 3.0, the base every client can take. */
const VERSION = '3.0'

const callerOf = (req: RestRequest): VolumeCaller => serverCaller((req as AuthedRequest).auth, req.requestId)

/** Cinder's timestamps: microseconds, no zone. */
const stamp = (d: Date) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000')

function links(req: RestRequest, collection: string, id: string, project: string) {
  return [
    { rel: 'self', href: `${req.baseUrl}/v3/${project}/${collection}/${id}` },
    { rel: 'bookmark', href: `${req.baseUrl}/${project}/${collection}/${id}` },
  ]
}

/**
 * Cinder's volume view. Its API extensions (the project, the backend host, image metadata) add their
 * attributes to what GET shows (`show`, `detail`), not to the answers of create and update: `plain`.
 */
function volumeJson(req: RestRequest, v: VolumeView, caller: VolumeCaller, o: { plain?: boolean } = {}): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: v.id, name: v.name || null, description: v.description || null, size: v.size, status: v.status, availability_zone: v.availabilityZone,
    created_at: stamp(v.createdAt), updated_at: stamp(v.updatedAt), volume_type: v.volumeType || null, snapshot_id: v.snapshotId || null,
    source_volid: v.sourceVolid || null, metadata: v.metadata, bootable: v.bootable ? 'true' : 'false', encrypted: v.encrypted,
    multiattach: v.multiattach, replication_status: null, consistencygroup_id: null, user_id: v.userId,
    // Cinder's attachment summaries (snake_case, as every other field).
    attachments: v.attachments.map((a) => ({ id: a.id, attachment_id: a.attachmentId, volume_id: a.volumeId, server_id: a.serverId, host_name: a.hostName || null, device: a.device, attached_at: a.attachedAt?.toISOString() ?? null })),
    links: links(req, 'volumes', v.id, v.projectId),
  }
  if (o.plain) return out
  out['os-vol-tenant-attr:tenant_id'] = v.projectId
  if (Object.keys(v.volumeImageMetadata).length) out.volume_image_metadata = v.volumeImageMetadata
  if (caller.isAdmin) Object.assign(out, { 'os-vol-host-attr:host': cinderVolumeHost(v.host, v.backendName) || null, 'os-vol-mig-status-attr:migstat': null, 'os-vol-mig-status-attr:name_id': null })
  return out
}

/** Cinder's snapshot view; `plain`: create's and update's answers, without the extended-attributes extension's. */
function snapshotJson(s: SnapshotView, o: { plain?: boolean } = {}): Record<string, unknown> {
  return {
    id: s.id, name: s.name || null, description: s.description || null, volume_id: s.volumeId, size: s.size, status: s.status,
    created_at: stamp(s.createdAt), updated_at: stamp(s.updatedAt), metadata: s.metadata,
    ...(o.plain ? {} : { 'os-extended-snapshot-attributes:project_id': s.projectId, 'os-extended-snapshot-attributes:progress': s.status === 'available' ? '100%' : '0%' }),
  }
}

/** Cinder's volume type view; `plain`: update's answer, without the type-access extension's attribute. */
const typeJson = (t: VolumeTypeView, o: { plain?: boolean } = {}) => ({ id: t.id, name: t.name, description: t.description || null, is_public: t.isPublic, ...(o.plain ? {} : { 'os-volume-type-access:is_public': t.isPublic }), extra_specs: t.extraSpecs })

/** The id in the path: Cinder looks volumes up by id only (the clients find names by listing). */
function idParam(req: RestRequest, what: string): string {
  const id = req.params.id!
  if (!isUuid(id)) throw new NotFound(`${what} ${id} could not be found.`)
  return id
}

/** What a listing can be sorted by (Cinder's `sort_key`, `sort=key:dir`), for volumes and snapshots. */
const VOLUME_SORT: Record<string, (v: VolumeView) => string | number> = {
  id: (v) => v.id, name: (v) => v.name, display_name: (v) => v.name, status: (v) => v.status, size: (v) => v.size, availability_zone: (v) => v.availabilityZone,
  bootable: (v) => Number(v.bootable), created_at: (v) => v.createdAt.getTime(), updated_at: (v) => v.updatedAt.getTime(),
}
const SNAPSHOT_SORT: Record<string, (s: SnapshotView) => string | number> = {
  id: (s) => s.id, name: (s) => s.name, display_name: (s) => s.name, status: (s) => s.status, size: (s) => s.size, volume_id: (s) => s.volumeId,
  created_at: (s) => s.createdAt.getTime(), updated_at: (s) => s.updatedAt.getTime(),
}

/**
 * Cinder's paging of a listing: sorted by `sort` (`key[:dir],…`) or
 * `sort_key`/`sort_dir` (default: newest first, then id), then the items
 * after `marker` (an id in the listing; 404 when it is not), `offset`
 * skipped and at most `limit` given — with a `next` link when the page is
 * full, as Cinder's `_get_collection_links`.
 */
function paged<T extends { id: string }>(req: RestRequest, all: T[], sortable: Record<string, (x: T) => string | number>): { items: T[]; links: Array<{ rel: string; href: string }> | undefined } {
  const keys: Array<[string, 'asc' | 'desc']> = []
  const sort = req.query.get('sort')
  if (sort !== null) {
    if (req.query.get('sort_key') !== null || req.query.get('sort_dir') !== null) throw new InvalidArgument('Invalid input received: the sort parameter cannot be used with sort_key or sort_dir', { field: 'sort' })
    for (const part of sort.split(',')) {
      const [key = '', dir = 'asc'] = part.trim().split(':')
      keys.push([key, dir as 'asc' | 'desc'])
    }
  } else {
    const sortKeys = req.query.get('sort_key')?.split(',') ?? []
    const dirs = req.query.get('sort_dir')?.split(',') ?? []
    sortKeys.forEach((k, i) => keys.push([k.trim(), (dirs[i] ?? dirs[0] ?? 'desc').trim() as 'asc' | 'desc']))
    if (!sortKeys.length && dirs.length) keys.push(['created_at', dirs[0]!.trim() as 'asc' | 'desc'])
  }
  for (const [key, dir] of keys) {
    if (!(key in sortable)) throw new InvalidArgument(`Invalid input received: '${key}' is not a sort key (${Object.keys(sortable).join(', ')})`, { field: 'sort_key' })
    if (dir !== 'asc' && dir !== 'desc') throw new InvalidArgument(`Invalid input received: sort direction '${dir}' is neither asc nor desc`, { field: 'sort_dir' })
  }
  if (!keys.some(([k]) => k === 'created_at')) keys.push(['created_at', 'desc'])
  if (!keys.some(([k]) => k === 'id')) keys.push(['id', keys[0]![1]])
  const items = [...all].sort((a, b) => {
    for (const [key, dir] of keys) {
      const [x, y] = [sortable[key]!(a), sortable[key]!(b)]
      if (x !== y) return (x < y ? -1 : 1) * (dir === 'asc' ? 1 : -1)
    }
    return 0
  })
  const limit = intParam(req, 'limit')
  const offset = intParam(req, 'offset') ?? 0
  const marker = req.query.get('marker')
  let start = 0
  if (marker !== null) {
    const i = items.findIndex((x) => x.id === marker)
    if (i < 0) throw new NotFound(`Marker ${marker} could not be found.`)
    start = i + 1
  }
  const page = items.slice(start + offset, limit === undefined ? undefined : start + offset + limit)
  // The marker already stands where the offset led: the next page skips nothing more.
  return { items: page, links: nextLink(req, page, limit, (x) => x.id, ['offset']) }
}

/** Cinder's `metadata` filter: a dict, as the clients send it (JSON, or the Python literal of one). */
function metadataFilter(req: RestRequest): Record<string, string> | undefined {
  const v = req.query.get('metadata')
  if (v === null) return undefined
  for (const text of [v, v.replace(/'/g, '"')]) {
    try {
      const m = JSON.parse(text) as unknown
      if (obj(m)) return Object.fromEntries(Object.entries(m).map(([k, x]) => [k, String(x)]))
    } catch {
      // the next form
    }
  }
  throw new InvalidArgument(`Invalid input received: metadata filter '${v}' is not a dict`, { field: 'metadata' })
}

/** `{project_id}` in the path must be the token's project (or any, for admins), as Cinder's context check. */
function checkProject(req: RestRequest): void {
  const project = req.params.project
  if (project === undefined) return
  const a = (req as AuthedRequest).auth
  if (project !== a.projectId && !a.isCloudAdmin) throw new PermissionDenied(`the path names project ${project}, but the token is scoped to ${a.projectId ?? 'no project'}`)
}

/** The Cinder API extensions whose routes and attributes Strato serves (GET /extensions): alias, name, description. */
export const EXTENSIONS: Array<[alias: string, name: string, description: string]> = [
  ['os-availability-zone', 'AvailabilityZones', 'Describe Availability Zones.'],
  ['os-extended-snapshot-attributes', 'ExtendedSnapshotAttributes', 'Extended SnapshotAttributes support.'],
  ['os-quota-sets', 'Quotas', 'Quota management support.'],
  ['os-types-extra-specs', 'TypesExtraSpecs', 'Type extra specs support.'],
  ['os-types-manage', 'TypesManage', 'Types manage support.'],
  ['os-vol-host-attr', 'VolumeHostAttribute', 'Expose host as an attribute of a volume.'],
  ['os-vol-image-meta', 'VolumeImageMetadata', 'Show image metadata associated with the volume.'],
  ['os-vol-tenant-attr', 'VolumeTenantAttribute', 'Expose the internal project_id as an attribute of a volume.'],
  ['os-volume-actions', 'VolumeActions', 'Enable volume actions.'],
  ['os-admin-actions', 'AdminActions', 'Enable admin actions.'],
]

/**
 * Cinder's metadata routes of a volume or snapshot (`/{collection}/{id}/metadata[/{key}]`): GET the set, POST
 * merges into it, PUT replaces it, and one key read, set (`{"meta": {key: value}}`, the key the path names) or
 * deleted — each answered with what the resource has after it.
 */
function metadataRoutes(collection: string, what: string, policy: { get: string; update: string }, o: {
  get: (req: RestRequest, id: string) => Promise<Record<string, string>>
  update: (req: RestRequest, id: string, set: Record<string, string>, unset: string[]) => Promise<Record<string, string>>
}): Route[] {
  const idOf = (req: RestRequest) => idParam(req, what)
  const keyOf = async (req: RestRequest): Promise<[string, string]> => {
    const meta = stringMap(await bodyObject(req, 'meta'), 'meta')!
    const keys = Object.keys(meta)
    if (keys.length !== 1 || keys[0] !== req.params.key) throw new InvalidArgument(`Request body and URI mismatch: the path names key '${req.params.key}', the body ${keys.length ? keys.map((k) => `'${k}'`).join(', ') : 'none'}`, { field: 'meta' })
    return [keys[0]!, meta[keys[0]!]!]
  }
  const read = async (req: RestRequest) => {
    const m = await o.get(req, idOf(req))
    if (!(req.params.key! in m)) throw new NotFound(`Metadata item was not found: ${what} ${req.params.id} has no key ${req.params.key}`)
    return m
  }
  const path = `/${collection}/:id/metadata`
  return [
    { method: 'GET', path, policy: policy.get, handler: async (req) => ({ body: { metadata: await o.get(req, idOf(req)) } }) },
    { method: 'POST', path, policy: policy.update, handler: async (req) => ({ body: { metadata: await o.update(req, idOf(req), stringMap(await bodyObject(req, 'metadata'), 'metadata')!, []) } }) },
    {
      method: 'PUT', path, policy: policy.update,
      handler: async (req) => {
        const set = stringMap(await bodyObject(req, 'metadata'), 'metadata')!
        const id = idOf(req)
        return { body: { metadata: await o.update(req, id, set, Object.keys(await o.get(req, id)).filter((k) => !(k in set))) } }
      },
    },
    { method: 'GET', path: `${path}/:key`, policy: policy.get, handler: async (req) => ({ body: { meta: { [req.params.key!]: (await read(req))[req.params.key!] } } }) },
    {
      method: 'PUT', path: `${path}/:key`, policy: policy.update,
      handler: async (req) => {
        const [key, value] = await keyOf(req)
        return { body: { meta: { [key]: (await o.update(req, idOf(req), { [key]: value }, []))[key] } } }
      },
    },
    { method: 'DELETE', path: `${path}/:key`, policy: policy.update, handler: async (req) => (await read(req), await o.update(req, idOf(req), {}, [req.params.key!]), { status: 200 }) },
  ]
}

/** The status an `os-reset_status` action names (volumes and snapshots alike). */
function statusArg(arg: unknown): string {
  if (!obj(arg) || typeof arg.status !== 'string') throw new InvalidArgument('os-reset_status needs {"status": "available"} (or another status)', { field: 'os-reset_status' })
  return arg.status
}

/** One action of Cinder's `POST /{collection}/{id}/action`: the policy entry that governs it, and what it does. */
interface Action {
  policy: string
  run: (req: RestRequest, id: string, arg: unknown) => Promise<RestResult>
}

/**
 * Cinder's action route of a collection: the body names one action (`{"os-extend": {…}}`), which decides
 * the policy entry (`policy` lists the route) and what is done; an unknown one is 400 naming it.
 */
function actionRoute(collection: string, what: string, example: string, policy: string, actions: Record<string, Action>): Route {
  return {
    method: 'POST', path: `/${collection}/:id/action`, policy,
    policyOf: async (req) => {
      const b = await req.json()
      return (obj(b) ? actions[Object.keys(b)[0] ?? ''] : undefined)?.policy ?? policy
    },
    handler: async (req) => {
      const b = await req.json()
      if (!obj(b) || Object.keys(b).length !== 1) throw new InvalidArgument(`the body must name one action, e.g. ${example}`, { field: 'body' })
      const [name, arg] = Object.entries(b)[0]!
      const id = idParam(req, what)
      const action = Object.hasOwn(actions, name) ? actions[name] : undefined
      if (!action) throw new InvalidArgument(`There is no such action: ${name}`, { field: name })
      return action.run(req, id, arg)
    },
  }
}

function routes(d: RestDomain): Route[] {
  const { volumes, snapshots, types, uploads } = d.volume
  const project = (req: RestRequest) => (req as AuthedRequest).auth.projectId ?? ''
  const listFilter = (req: RestRequest) => {
    const all = ['1', 'true', 'True'].includes(req.query.get('all_tenants') ?? '')
    // project_id narrows an admin's all_tenants listing to one project, as Cinder's.
    const projectId = all ? req.query.get('project_id') : null
    return { ...(projectId ? { projectId } : all ? { allProjects: true } : {}), ...(req.query.get('name') ? { name: req.query.get('name')! } : {}), ...(req.query.get('status') ? { status: req.query.get('status')! } : {}) }
  }
  /** A page of the caller's volumes, filtered as Cinder's listing filters them (name, status, bootable, availability_zone, metadata). */
  const volumeList = async (req: RestRequest) => {
    const bootable = req.query.get('bootable')
    if (bootable !== null && !['true', 'false', 'True', 'False', '1', '0'].includes(bootable)) throw new InvalidArgument(`Invalid input received: bootable must be true or false, not '${bootable}'`, { field: 'bootable' })
    const zone = req.query.get('availability_zone')
    const metadata = metadataFilter(req)
    const all = (await volumes.list(listFilter(req), callerOf(req))).filter((v) => (bootable === null || v.bootable === ['true', 'True', '1'].includes(bootable))
      && (zone === null || v.availabilityZone === zone)
      && (!metadata || Object.entries(metadata).every(([k, x]) => v.metadata[k] === x)))
    return paged(req, all, VOLUME_SORT)
  }
  const snapshotList = async (req: RestRequest) => {
    const all = await snapshots.list({ ...listFilter(req), ...(req.query.get('volume_id') ? { volumeId: req.query.get('volume_id')! } : {}) }, callerOf(req))
    return paged(req, all, SNAPSHOT_SORT)
  }
  return [
    {
      method: 'POST', path: '/volumes', policy: `${V}.Volumes/CreateVolume`,
      handler: async (req) => {
        const b = await bodyObject(req, 'volume')
        onlyKeys(b, ['size', 'name', 'description', 'display_name', 'display_description', 'volume_type', 'availability_zone', 'source_volid', 'snapshot_id', 'imageRef', 'metadata', 'multiattach', 'consistencygroup_id', 'backup_id'])
        for (const k of ['consistencygroup_id', 'backup_id']) if (b[k] !== undefined && b[k] !== null && b[k] !== false) throw new InvalidArgument(`${k}: Strato does not support it`, { field: k })
        const caller = callerOf(req)
        const name = str(b, 'name') ?? str(b, 'display_name')
        const description = str(b, 'description') ?? str(b, 'display_description')
        const v = await volumes.create({
          size: int(b.size, 'size'), ...(name !== undefined ? { name } : {}), ...(description !== undefined ? { description } : {}),
          volumeType: str(b, 'volume_type'), availabilityZone: str(b, 'availability_zone'), sourceVolid: str(b, 'source_volid'), snapshotId: str(b, 'snapshot_id'),
          imageId: str(b, 'imageRef'), metadata: stringMap(b.metadata, 'metadata'), multiattach: bool(b.multiattach, 'multiattach'),
        }, caller)
        return { status: 202, body: { volume: volumeJson(req, v, caller, { plain: true }) } }
      },
    },
    {
      method: 'GET', path: '/volumes', policy: `${V}.Volumes/ListVolumes`,
      handler: async (req) => {
        const p = await volumeList(req)
        return { body: { volumes: p.items.map((v) => ({ id: v.id, name: v.name || null, links: links(req, 'volumes', v.id, v.projectId) })), ...(p.links ? { volumes_links: p.links } : {}) } }
      },
    },
    {
      method: 'GET', path: '/volumes/detail', policy: `${V}.Volumes/ListVolumes`,
      handler: async (req) => {
        const caller = callerOf(req)
        const p = await volumeList(req)
        return { body: { volumes: p.items.map((v) => volumeJson(req, v, caller)), ...(p.links ? { volumes_links: p.links } : {}) } }
      },
    },
    {
      method: 'GET', path: '/volumes/:id', policy: `${V}.Volumes/GetVolume`,
      handler: async (req) => {
        const caller = callerOf(req)
        const v = await volumes.get(idParam(req, 'Volume'), caller)
        return { body: { volume: volumeJson(req, v, caller) } }
      },
    },
    {
      method: 'PUT', path: '/volumes/:id', policy: `${V}.Volumes/UpdateVolume`,
      handler: async (req) => {
        const b = await bodyObject(req, 'volume')
        onlyKeys(b, ['name', 'description', 'display_name', 'display_description', 'metadata'])
        const caller = callerOf(req)
        const name = str(b, 'name') ?? str(b, 'display_name')
        const description = str(b, 'description') ?? str(b, 'display_description')
        const metadata = stringMap(b.metadata, 'metadata')
        const id = idParam(req, 'Volume')
        const current = metadata ? await volumes.get(id, caller) : undefined
        const v = await volumes.update({
          id, ...(name !== undefined ? { name } : {}), ...(description !== undefined ? { description } : {}),
          // PUT's metadata replaces the whole set, as Cinder's update does.
          ...(metadata ? { setMetadata: metadata, unsetMetadata: Object.keys(current!.metadata).filter((k) => !(k in metadata)) } : {}),
        }, caller)
        return { body: { volume: volumeJson(req, v, caller, { plain: true }) } }
      },
    },
    {
      method: 'DELETE', path: '/volumes/:id', policy: `${V}.Volumes/DeleteVolume`,
      handler: async (req) => {
        const cascade = ['true', 'True', '1'].includes(req.query.get('cascade') ?? '')
        await volumes.delete({ id: idParam(req, 'Volume'), cascade }, callerOf(req))
        return { status: 202 }
      },
    },
    actionRoute('volumes', 'Volume', '{"os-extend": {"new_size": 2}}', `${V}.Volumes/ExtendVolume`, {
      'os-extend': {
        policy: `${V}.Volumes/ExtendVolume`,
        run: async (req, id, arg) => {
          if (!obj(arg)) throw new InvalidArgument('os-extend needs {"new_size": N}', { field: 'os-extend' })
          const size = int(arg.new_size, 'new_size')
          if (size === undefined) throw new InvalidArgument("'new_size' is a required property", { field: 'new_size' })
          await volumes.extend(id, size, callerOf(req))
          return { status: 202 }
        },
      },
      // Admins only (the catalog checks): from any status but attached or in transition; not with snapshots (as Cinder's).
      'os-force_delete': { policy: `${V}.Volumes/DeleteVolume`, run: async (req, id) => (await volumes.delete({ id, force: true }, callerOf(req)), { status: 202 }) },
      'os-set_bootable': {
        policy: `${V}.Volumes/UpdateVolume`,
        run: async (req, id, arg) => {
          if (!obj(arg) || arg.bootable === undefined) throw new InvalidArgument('os-set_bootable needs {"bootable": true} (or false)', { field: 'os-set_bootable' })
          const bootable = typeof arg.bootable === 'string' && ['true', 'false', 'True', 'False'].includes(arg.bootable) ? arg.bootable.toLowerCase() === 'true' : bool(arg.bootable, 'bootable')
          await volumes.update({ id, bootable }, callerOf(req))
          return { status: 200 }
        },
      },
      'os-reset_status': {
        policy: `${V}.Volumes/ResetVolumeState`,
        run: async (req, id, arg) => {
          await volumes.resetState(id, statusArg(arg), callerOf(req))
          return { status: 202 }
        },
      },
      'os-volume_upload_image': {
        policy: `${V}.Volumes/UploadVolumeToImage`,
        run: async (req, id, arg) => {
          if (!obj(arg)) throw new InvalidArgument('os-volume_upload_image needs {"image_name": "…"} (and disk_format, container_format, force)', { field: 'os-volume_upload_image' })
          onlyKeys(arg, ['image_name', 'disk_format', 'container_format', 'force', 'visibility', 'protected'])
          const imageName = str(arg, 'image_name')
          if (imageName === undefined) throw new InvalidArgument("'image_name' is a required property", { field: 'image_name' })
          const caller = callerOf(req)
          const force = bool(arg.force, 'force')
          const isProtected = bool(arg.protected, 'protected')
          const u = await uploads.upload({
            id, imageName, diskFormat: str(arg, 'disk_format'), containerFormat: str(arg, 'container_format'), visibility: str(arg, 'visibility'),
            ...(force !== undefined ? { force } : {}), ...(isProtected !== undefined ? { protected: isProtected } : {}),
          }, caller)
          const type = u.volume.volumeTypeId ? await types.get(u.volume.volumeTypeId, caller).catch(() => undefined) : undefined
          return {
            status: 202,
            body: {
              'os-volume_upload_image': {
                id: u.volume.id, updated_at: stamp(u.volume.updatedAt), status: u.volume.status, display_description: u.volume.description || null, size: u.volume.size,
                volume_type: type ? typeJson(type) : null, image_id: u.imageId, container_format: u.containerFormat, disk_format: u.diskFormat, image_name: u.imageName,
                visibility: u.visibility, protected: u.protected,
              },
            },
          }
        },
      },
    }),

    {
      method: 'POST', path: '/snapshots', policy: `${V}.Snapshots/CreateSnapshot`,
      handler: async (req) => {
        const b = await bodyObject(req, 'snapshot')
        onlyKeys(b, ['volume_id', 'name', 'description', 'display_name', 'display_description', 'force', 'metadata'])
        if (!('volume_id' in b)) throw new InvalidArgument("'volume_id' is a required property", { field: 'volume_id' })
        // Cinder looks a null volume_id up as it does any other, and finds no such volume.
        const volumeId = str(b, 'volume_id')
        if (!volumeId) throw new NotFound(`Volume ${String(b.volume_id)} could not be found.`)
        const name = str(b, 'name') ?? str(b, 'display_name')
        const description = str(b, 'description') ?? str(b, 'display_description')
        const force = bool(b.force, 'force')
        const s = await snapshots.create({ volumeId, ...(name !== undefined ? { name } : {}), ...(description !== undefined ? { description } : {}), ...(force !== undefined ? { force } : {}), metadata: stringMap(b.metadata, 'metadata') }, callerOf(req))
        return { status: 202, body: { snapshot: snapshotJson(s, { plain: true }) } }
      },
    },
    ...(['/snapshots', '/snapshots/detail'] as const).map((path): Route => ({
      method: 'GET', path, policy: `${V}.Snapshots/ListSnapshots`,
      handler: async (req) => {
        const p = await snapshotList(req)
        // The extended attributes are the detailed listing's (and show's), as Cinder's extension adds them.
        return { body: { snapshots: p.items.map((x) => snapshotJson(x, { plain: path === '/snapshots' })), ...(p.links ? { snapshots_links: p.links } : {}) } }
      },
    })),
    // Both are for admins (the catalog checks); reset_status under the volume reset's entry.
    actionRoute('snapshots', 'Snapshot', '{"os-reset_status": {"status": "available"}}', `${V}.Snapshots/DeleteSnapshot`, {
      'os-reset_status': {
        policy: `${V}.Volumes/ResetVolumeState`,
        run: async (req, id, arg) => {
          await snapshots.resetState(id, statusArg(arg), callerOf(req))
          return { status: 202 }
        },
      },
      'os-force_delete': { policy: `${V}.Snapshots/DeleteSnapshot`, run: async (req, id) => (await snapshots.delete({ id, force: true }, callerOf(req)), { status: 202 }) },
    }),
    { method: 'GET', path: '/snapshots/:id', policy: `${V}.Snapshots/GetSnapshot`, handler: async (req) => ({ body: { snapshot: snapshotJson(await snapshots.get(idParam(req, 'Snapshot'), callerOf(req))) } }) },
    {
      method: 'PUT', path: '/snapshots/:id', policy: `${V}.Snapshots/UpdateSnapshot`,
      handler: async (req) => {
        const b = await bodyObject(req, 'snapshot')
        onlyKeys(b, ['name', 'description', 'display_name', 'display_description'])
        const name = str(b, 'name') ?? str(b, 'display_name')
        const description = str(b, 'description') ?? str(b, 'display_description')
        const s = await snapshots.update({ id: idParam(req, 'Snapshot'), ...(name !== undefined ? { name } : {}), ...(description !== undefined ? { description } : {}) }, callerOf(req))
        return { body: { snapshot: snapshotJson(s, { plain: true }) } }
      },
    },
    {
      method: 'DELETE', path: '/snapshots/:id', policy: `${V}.Snapshots/DeleteSnapshot`,
      handler: async (req) => (await snapshots.delete({ id: idParam(req, 'Snapshot') }, callerOf(req)), { status: 202 }),
    },

    {
      method: 'GET', path: '/types', policy: `${V}.VolumeTypes/ListVolumeTypes`,
      handler: async (req) => ({ body: { volume_types: (await types.list(req.query.get('is_public') ?? undefined, callerOf(req))).map((t) => typeJson(t)) } }),
    },
    { method: 'GET', path: '/types/default', policy: `${V}.VolumeTypes/GetVolumeType`, handler: async (req) => ({ body: { volume_type: typeJson(await types.get(DEFAULT_VOLUME_TYPE_ID, callerOf(req))) } }) },
    { method: 'GET', path: '/types/:id', policy: `${V}.VolumeTypes/GetVolumeType`, handler: async (req) => ({ body: { volume_type: typeJson(await types.get(req.params.id, callerOf(req))) } }) },
    {
      method: 'POST', path: '/types', policy: `${V}.VolumeTypes/CreateVolumeType`,
      handler: async (req) => {
        const b = await bodyObject(req, 'volume_type')
        onlyKeys(b, ['name', 'description', 'os-volume-type-access:is_public', 'extra_specs'])
        const isPublic = bool(b['os-volume-type-access:is_public'], 'os-volume-type-access:is_public')
        const t = await types.create({ name: str(b, 'name'), description: str(b, 'description'), ...(isPublic !== undefined ? { isPublic } : {}), extraSpecs: stringMap(b.extra_specs, 'extra_specs') })
        return { body: { volume_type: typeJson(t) } }
      },
    },
    {
      method: 'PUT', path: '/types/:id', policy: `${V}.VolumeTypes/UpdateVolumeType`,
      handler: async (req) => {
        const b = await bodyObject(req, 'volume_type')
        onlyKeys(b, ['name', 'description', 'is_public'])
        const isPublic = bool(b.is_public, 'is_public')
        const t = await types.update({ id: req.params.id, name: str(b, 'name'), description: str(b, 'description'), ...(isPublic !== undefined ? { isPublic } : {}) }, callerOf(req))
        return { body: { volume_type: typeJson(t, { plain: true }) } }
      },
    },
    { method: 'DELETE', path: '/types/:id', policy: `${V}.VolumeTypes/DeleteVolumeType`, handler: async (req) => (await types.delete(req.params.id, callerOf(req)), { status: 202 }) },
    { method: 'GET', path: '/types/:id/extra_specs', policy: `${V}.VolumeTypes/GetVolumeType`, handler: async (req) => ({ body: { extra_specs: (await types.get(req.params.id, callerOf(req))).extraSpecs } }) },
    {
      method: 'GET', path: '/types/:id/extra_specs/:key', policy: `${V}.VolumeTypes/GetVolumeType`,
      handler: async (req) => {
        const specs = (await types.get(req.params.id, callerOf(req))).extraSpecs
        const key = req.params.key!
        if (!(key in specs)) throw new NotFound(`Volume Type ${req.params.id} has no extra specs with key ${key}.`)
        return { body: { [key]: specs[key] } }
      },
    },
    {
      method: 'POST', path: '/types/:id/extra_specs', policy: `${V}.VolumeTypes/UpdateVolumeType`,
      handler: async (req) => {
        const specs = stringMap(await bodyObject(req, 'extra_specs'), 'extra_specs')!
        const t = await types.update({ id: req.params.id, setExtraSpecs: specs }, callerOf(req))
        return { body: { extra_specs: Object.fromEntries(Object.keys(specs).map((k) => [k, t.extraSpecs[k]])) } }
      },
    },
    {
      // One extra spec set by its key: the body names that key, and only it (Cinder: "Request body and URI mismatch").
      method: 'PUT', path: '/types/:id/extra_specs/:key', policy: `${V}.VolumeTypes/UpdateVolumeType`,
      handler: async (req) => {
        const key = req.params.key!
        const b = await req.json()
        if (!obj(b)) throw new InvalidArgument(`the request body must be a JSON object {"${key}": value}`, { field: key })
        const keys = Object.keys(b)
        if (keys.length !== 1 || keys[0] !== key) throw new InvalidArgument(`Request body and URI mismatch: the path names extra spec '${key}', the body ${keys.length ? keys.map((k) => `'${k}'`).join(', ') : 'none'}`, { field: key })
        const specs = stringMap(b, 'extra_specs')!
        const t = await types.update({ id: req.params.id, setExtraSpecs: specs }, callerOf(req))
        return { body: { [key]: t.extraSpecs[key] } }
      },
    },
    {
      method: 'DELETE', path: '/types/:id/extra_specs/:key', policy: `${V}.VolumeTypes/UpdateVolumeType`,
      handler: async (req) => {
        const t = await types.get(req.params.id, callerOf(req))
        if (!(req.params.key! in t.extraSpecs)) throw new NotFound(`Volume Type ${req.params.id} has no extra specs with key ${req.params.key}.`)
        await types.update({ id: req.params.id, unsetExtraSpecs: [req.params.key!] }, callerOf(req))
        return { status: 202 }
      },
    },

    ...metadataRoutes('volumes', 'Volume', { get: `${V}.Volumes/GetVolume`, update: `${V}.Volumes/UpdateVolume` }, {
      get: async (req, id) => (await volumes.get(id, callerOf(req))).metadata,
      update: async (req, id, setMetadata, unsetMetadata) => (await volumes.update({ id, setMetadata, unsetMetadata }, callerOf(req))).metadata,
    }),
    ...metadataRoutes('snapshots', 'Snapshot', { get: `${V}.Snapshots/GetSnapshot`, update: `${V}.Snapshots/UpdateSnapshot` }, {
      get: async (req, id) => (await snapshots.get(id, callerOf(req))).metadata,
      update: async (req, id, setMetadata, unsetMetadata) => (await snapshots.update({ id, setMetadata, unsetMetadata }, callerOf(req))).metadata,
    }),
    {
      // Cinder's zones: those of the hosts running the volume role (no hosts shown).
      method: 'GET', path: '/os-availability-zone', policy: 'strato.compute.v1.AvailabilityZones/ListAvailabilityZones',
      handler: async () => ({ body: { availabilityZoneInfo: (await d.volume.backends.zones()).map((z) => ({ zoneName: z.name, zoneState: { available: z.available } })) } }),
    },
    { method: 'GET', path: '/extensions', policy: `${V}.Volumes/ListVolumes`, handler: async () => ({ body: { extensions: EXTENSIONS.map(([alias, name, description]) => ({ alias, name, description, links: [], updated: '2013-01-01T00:00:00+00:00' })) } }) },
    {
      method: 'GET', path: '/limits', policy: `${V}.Volumes/ListVolumes`,
      handler: async (req) => {
        const projectId = project(req)
        const items = new Map((await d.quota.report(projectId)).map((i) => [i.resource, i]))
        const max = (r: string) => items.get(r)?.limit ?? -1
        const used = (r: string) => items.get(r)?.inUse ?? 0
        return {
          body: {
            limits: {
              rate: [],
              absolute: {
                maxTotalVolumes: max('volumes'), maxTotalSnapshots: max('snapshots'), maxTotalVolumeGigabytes: max('gigabytes'),
                maxTotalBackups: 0, maxTotalBackupGigabytes: 0,
                totalVolumesUsed: used('volumes'), totalSnapshotsUsed: used('snapshots'), totalGigabytesUsed: used('gigabytes'),
                totalBackupsUsed: 0, totalBackupGigabytesUsed: 0,
              },
            },
          },
        }
      },
    },
  ]
}

/** Cinder's v3 version document, as GET / and GET /v3 show it. */
function v3(req: RestRequest) {
  return {
    id: 'v3.0', status: 'CURRENT', version: VERSION, min_version: VERSION, updated: '2016-02-08T12:20:21Z',
    links: [{ rel: 'describedby', type: 'text/html', href: 'https://docs.openstack.org/' }, { rel: 'self', href: `${req.baseUrl}/v3/` }],
    'media-types': [{ base: 'application/json', type: 'application/vnd.openstack.volume+json;version=3' }],
  }
}

/** The version a request asks for (`OpenStack-API-Version: volume 3.x`): only 3.0 is answered; none means 3.0. */
function checkVersion(req: RestRequest): void {
  const asked = header(req.raw, 'openstack-api-version')
  if (!asked) return
  for (const part of asked.split(',')) {
    const [service, version] = part.trim().split(/\s+/)
    if (service?.toLowerCase() !== 'volume' || !version || version.toLowerCase() === 'latest') continue
    if (!/^3\.(0|[1-9]\d*)$/.test(version)) throw new HttpError(version.startsWith('3.') ? 400 : 406, `Version ${version} is not supported by the API. Minimum is ${VERSION} and maximum is ${VERSION}.`)
    // Clients that negotiate ask for no more than the versions document says; a later one gets 3.0's answer, as Cinder would refuse it.
    if (version !== VERSION) throw new HttpError(406, `Version ${version} is not supported by the API. Minimum is ${VERSION} and maximum is ${VERSION}.`)
  }
}

export function volumeRest(d: RestDomain): RestService {
  const versioned = [...routes(d), ...volumeQuotaRoutes(d)].flatMap((r): Route[] => {
    const handler = (req: RestRequest) => (checkVersion(req), checkProject(req), r.handler(req))
    // With the project in the path (Cinder's classic form) and without (3.67's).
    return [{ ...r, path: `/v3${r.path}`, handler }, { ...r, path: `/v3/:project${r.path}`, handler }]
  })
  return {
    type: 'volume',
    prefix: REST_PREFIX.volume,
    routes: [
      { method: 'GET', path: '/', policy: 'public', handler: async (req) => ({ status: 300, body: { versions: [v3(req)] } }) },
      // Cinder answers its major version's document as a list of one, as GET / lists them all.
      { method: 'GET', path: '/v3', policy: 'public', handler: async (req) => ({ body: { versions: [v3(req)] } }) },
      ...versioned,
    ],
    headers: (req): Record<string, string> => (req.path === '/' || req.path === '/v3' ? {} : { 'openstack-api-version': `volume ${VERSION}`, vary: 'OpenStack-API-Version' }),
  }
}
