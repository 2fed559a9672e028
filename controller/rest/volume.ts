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
import { serverCaller } from '../compute/server-model.js'
import type { SnapshotView, VolumeCaller, VolumeView } from '../volume/model.js'
import { DEFAULT_VOLUME_TYPE_ID, type VolumeTypeView } from '../volume/types.js'
import { HttpError, REST_PREFIX, bodyObject, header, type AuthedRequest, type RestRequest, type RestService, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { bool, int, obj, onlyKeys, str, stringMap } from './body.js'
import { volumeQuotaRoutes } from './volume-quotas.js'

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

function volumeJson(req: RestRequest, v: VolumeView, caller: VolumeCaller): Record<string, unknown> {
  const out: Record<string, unknown> = {
    id: v.id, name: v.name || null, description: v.description || null, size: v.size, status: v.status, availability_zone: v.availabilityZone,
    created_at: stamp(v.createdAt), updated_at: stamp(v.updatedAt), volume_type: v.volumeType || null, snapshot_id: v.snapshotId || null,
    source_volid: v.sourceVolid || null, metadata: v.metadata, bootable: v.bootable ? 'true' : 'false', encrypted: v.encrypted,
    multiattach: v.multiattach, replication_status: null, consistencygroup_id: null, user_id: v.userId,
    // Cinder's attachment summaries (snake_case, as every other field).
    attachments: v.attachments.map((a) => ({ id: a.id, attachment_id: a.attachmentId, volume_id: a.volumeId, server_id: a.serverId, host_name: a.hostName || null, device: a.device, attached_at: a.attachedAt?.toISOString() ?? null })),
    'os-vol-tenant-attr:tenant_id': v.projectId, links: links(req, 'volumes', v.id, v.projectId),
  }
  if (Object.keys(v.volumeImageMetadata).length) out.volume_image_metadata = v.volumeImageMetadata
  if (caller.isAdmin) Object.assign(out, { 'os-vol-host-attr:host': v.host || null, 'os-vol-mig-status-attr:migstat': null, 'os-vol-mig-status-attr:name_id': null })
  return out
}

function snapshotJson(s: SnapshotView): Record<string, unknown> {
  return {
    id: s.id, name: s.name || null, description: s.description || null, volume_id: s.volumeId, size: s.size, status: s.status,
    created_at: stamp(s.createdAt), updated_at: stamp(s.updatedAt), metadata: s.metadata,
    'os-extended-snapshot-attributes:project_id': s.projectId, 'os-extended-snapshot-attributes:progress': s.status === 'available' ? '100%' : '0%',
  }
}

const typeJson = (t: VolumeTypeView) => ({ id: t.id, name: t.name, description: t.description || null, is_public: t.isPublic, 'os-volume-type-access:is_public': t.isPublic, extra_specs: t.extraSpecs })

/** The id in the path: Cinder looks volumes up by id only (the clients find names by listing). */
function idParam(req: RestRequest, what: string): string {
  const id = req.params.id!
  if (!isUuid(id)) throw new NotFound(`${what} ${id} could not be found.`)
  return id
}

/** `{project_id}` in the path must be the token's project (or any, for admins), as Cinder's context check. */
function checkProject(req: RestRequest): void {
  const project = req.params.project
  if (project === undefined) return
  const a = (req as AuthedRequest).auth
  if (project !== a.projectId && !a.isCloudAdmin) throw new PermissionDenied(`the path names project ${project}, but the token is scoped to ${a.projectId ?? 'no project'}`)
}

const ACTION_POLICY: Record<string, string> = {
  'os-extend': `${V}.Volumes/ExtendVolume`, 'os-reset_status': `${V}.Volumes/ResetVolumeState`, 'os-volume_upload_image': `${V}.Volumes/UploadVolumeToImage`,
}

function routes(d: RestDomain): Route[] {
  const { volumes, snapshots, types, uploads } = d.volume
  const project = (req: RestRequest) => (req as AuthedRequest).auth.projectId ?? ''
  const listFilter = (req: RestRequest) => {
    const all = ['1', 'true', 'True'].includes(req.query.get('all_tenants') ?? '')
    return { ...(all ? { allProjects: true } : {}), ...(req.query.get('name') ? { name: req.query.get('name')! } : {}), ...(req.query.get('status') ? { status: req.query.get('status')! } : {}) }
  }
  return [
    {
      method: 'POST', path: '/volumes', policy: `${V}.Volumes/CreateVolume`,
      handler: async (req) => {
        const b = await bodyObject(req, 'volume')
        onlyKeys(b, ['size', 'name', 'description', 'display_name', 'display_description', 'volume_type', 'availability_zone', 'source_volid', 'snapshot_id', 'imageRef', 'metadata', 'multiattach', 'consistencygroup_id', 'backup_id'])
        for (const k of ['multiattach', 'consistencygroup_id', 'backup_id']) if (b[k] !== undefined && b[k] !== null && b[k] !== false) throw new InvalidArgument(`${k}: Strato does not support it`, { field: k })
        const caller = callerOf(req)
        const name = str(b, 'name') ?? str(b, 'display_name')
        const description = str(b, 'description') ?? str(b, 'display_description')
        const v = await volumes.create({
          size: int(b.size, 'size'), ...(name !== undefined ? { name } : {}), ...(description !== undefined ? { description } : {}),
          volumeType: str(b, 'volume_type'), availabilityZone: str(b, 'availability_zone'), sourceVolid: str(b, 'source_volid'), snapshotId: str(b, 'snapshot_id'),
          imageId: str(b, 'imageRef'), metadata: stringMap(b.metadata, 'metadata'),
        }, caller)
        return { status: 202, body: { volume: volumeJson(req, v, caller) } }
      },
    },
    {
      method: 'GET', path: '/volumes', policy: `${V}.Volumes/ListVolumes`,
      handler: async (req) => ({ body: { volumes: (await volumes.list(listFilter(req), callerOf(req))).map((v) => ({ id: v.id, name: v.name || null, links: links(req, 'volumes', v.id, v.projectId) })) } }),
    },
    {
      method: 'GET', path: '/volumes/detail', policy: `${V}.Volumes/ListVolumes`,
      handler: async (req) => {
        const caller = callerOf(req)
        return { body: { volumes: (await volumes.list(listFilter(req), caller)).map((v) => volumeJson(req, v, caller)) } }
      },
    },
    {
      method: 'GET', path: '/volumes/:id', policy: `${V}.Volumes/GetVolume`,
      handler: async (req) => {
        const caller = callerOf(req)
        return { body: { volume: volumeJson(req, await volumes.get(idParam(req, 'Volume'), caller), caller) } }
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
        return { body: { volume: volumeJson(req, v, caller) } }
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
    {
      method: 'POST', path: '/volumes/:id/action', policy: `${V}.Volumes/ExtendVolume`,
      // The action the body names decides which entry governs it (reset_status is for admins).
      policyOf: async (req) => {
        const b = await req.json()
        const name = obj(b) ? Object.keys(b)[0] : undefined
        return ACTION_POLICY[name ?? ''] ?? `${V}.Volumes/ExtendVolume`
      },
      handler: async (req) => {
        const b = await req.json()
        if (!obj(b) || Object.keys(b).length !== 1) throw new InvalidArgument('the body must name one action, e.g. {"os-extend": {"new_size": 2}}', { field: 'body' })
        const [name, arg] = Object.entries(b)[0]!
        const id = idParam(req, 'Volume')
        switch (name) {
          case 'os-extend': {
            if (!obj(arg)) throw new InvalidArgument('os-extend needs {"new_size": N}', { field: 'os-extend' })
            const size = int(arg.new_size, 'new_size')
            if (size === undefined) throw new InvalidArgument("'new_size' is a required property", { field: 'new_size' })
            await volumes.extend(id, size, callerOf(req))
            return { status: 202 }
          }
          case 'os-reset_status': {
            if (!obj(arg) || typeof arg.status !== 'string') throw new InvalidArgument('os-reset_status needs {"status": "available"} (or another status)', { field: 'os-reset_status' })
            await volumes.resetState(id, arg.status, callerOf(req))
            return { status: 202 }
          }
          case 'os-volume_upload_image': {
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
          }
          default:
            throw new InvalidArgument(`There is no such action: ${name}`, { field: name })
        }
      },
    },

    {
      method: 'POST', path: '/snapshots', policy: `${V}.Snapshots/CreateSnapshot`,
      handler: async (req) => {
        const b = await bodyObject(req, 'snapshot')
        onlyKeys(b, ['volume_id', 'name', 'description', 'display_name', 'display_description', 'force', 'metadata'])
        const volumeId = str(b, 'volume_id')
        if (!volumeId) throw new InvalidArgument("'volume_id' is a required property", { field: 'volume_id' })
        const name = str(b, 'name') ?? str(b, 'display_name')
        const description = str(b, 'description') ?? str(b, 'display_description')
        const force = bool(b.force, 'force')
        const s = await snapshots.create({ volumeId, ...(name !== undefined ? { name } : {}), ...(description !== undefined ? { description } : {}), ...(force !== undefined ? { force } : {}), metadata: stringMap(b.metadata, 'metadata') }, callerOf(req))
        return { status: 202, body: { snapshot: snapshotJson(s) } }
      },
    },
    {
      method: 'GET', path: '/snapshots', policy: `${V}.Snapshots/ListSnapshots`,
      handler: async (req) => ({ body: { snapshots: (await snapshots.list({ ...listFilter(req), ...(req.query.get('volume_id') ? { volumeId: req.query.get('volume_id')! } : {}) }, callerOf(req))).map(snapshotJson) } }),
    },
    {
      method: 'GET', path: '/snapshots/detail', policy: `${V}.Snapshots/ListSnapshots`,
      handler: async (req) => ({ body: { snapshots: (await snapshots.list({ ...listFilter(req), ...(req.query.get('volume_id') ? { volumeId: req.query.get('volume_id')! } : {}) }, callerOf(req))).map(snapshotJson) } }),
    },
    { method: 'GET', path: '/snapshots/:id', policy: `${V}.Snapshots/GetSnapshot`, handler: async (req) => ({ body: { snapshot: snapshotJson(await snapshots.get(idParam(req, 'Snapshot'), callerOf(req))) } }) },
    {
      method: 'PUT', path: '/snapshots/:id', policy: `${V}.Snapshots/UpdateSnapshot`,
      handler: async (req) => {
        const b = await bodyObject(req, 'snapshot')
        onlyKeys(b, ['name', 'description', 'display_name', 'display_description'])
        const name = str(b, 'name') ?? str(b, 'display_name')
        const description = str(b, 'description') ?? str(b, 'display_description')
        const s = await snapshots.update({ id: idParam(req, 'Snapshot'), ...(name !== undefined ? { name } : {}), ...(description !== undefined ? { description } : {}) }, callerOf(req))
        return { body: { snapshot: snapshotJson(s) } }
      },
    },
    {
      method: 'DELETE', path: '/snapshots/:id', policy: `${V}.Snapshots/DeleteSnapshot`,
      handler: async (req) => (await snapshots.delete({ id: idParam(req, 'Snapshot') }, callerOf(req)), { status: 202 }),
    },

    {
      method: 'GET', path: '/types', policy: `${V}.VolumeTypes/ListVolumeTypes`,
      handler: async (req) => ({ body: { volume_types: (await types.list(req.query.get('is_public') ?? undefined, callerOf(req))).map(typeJson) } }),
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
        return { body: { volume_type: typeJson(t) } }
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
      method: 'DELETE', path: '/types/:id/extra_specs/:key', policy: `${V}.VolumeTypes/UpdateVolumeType`,
      handler: async (req) => {
        const t = await types.get(req.params.id, callerOf(req))
        if (!(req.params.key! in t.extraSpecs)) throw new NotFound(`Volume Type ${req.params.id} has no extra specs with key ${req.params.key}.`)
        await types.update({ id: req.params.id, unsetExtraSpecs: [req.params.key!] }, callerOf(req))
        return { status: 202 }
      },
    },

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
      { method: 'GET', path: '/v3', policy: 'public', handler: async (req) => ({ body: { version: v3(req) } }) },
      ...versioned,
    ],
    headers: (req): Record<string, string> => (req.path === '/' || req.path === '/v3' ? {} : { 'openstack-api-version': `volume ${VERSION}`, vary: 'OpenStack-API-Version' }),
  }
}
