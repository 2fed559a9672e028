/**
 * Volumes (Cinder semantics): create blank, from an image, from a snapshot
 * or from another volume; get, list, update, extend, delete (cascade,
 * force), reset-state. Every status change comes from `states.ts`; the
 * quota check (volumes, gigabytes), the choice of backend host (by
 * capacity, `backends.ts`) and the row with its pending cast are one
 * transaction, so concurrent creates never pass a limit. Backend work goes
 * to the volume's host as a durable cast (`casts.ts`); its result comes back
 * through `results.ts`.
 */
import { randomUUID } from 'node:crypto'
import { FailedPrecondition, InvalidArgument, NotFound, PermissionDenied } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import type { Db } from '../store/db.js'
import type { VolumeTable } from '../store/schema.js'
import type { QuotaEngine, Trx } from '../quota/quota.js'
import type { Image, ImageCatalog } from '../image/catalog.js'
import { checkText } from '../identity/validate.js'
import { checkMetadata, imageViewer } from '../compute/server-create-plan.js'
import { now, type Log } from '../compute/server-model.js'
import { beginVolumeAction, checkSnapshotSource, resetStatus } from './states.js'
import { specIsTrue, typeNameOf, type VolumeTypeCatalog, type VolumeTypeView } from './types.js'
import type { VolumeBackends } from './backends.js'
import { NO_CAST, pendingCast, volumeWork, type VolumeCasts } from './casts.js'
import { checkSize, checkWriter, findRow, imageMetadataOf, renamed, updatedMap, volumeView, type VolumeCaller, type VolumeView } from './model.js'
import type { VolumeOp } from '../../proto/volume-work.js'
import { attachedDisks, attachmentsOfVolumes } from './attachments.js'

const GiB = 1024 ** 3

export interface CreateVolume {
  size?: number
  name?: string
  description?: string
  volumeType?: string
  availabilityZone?: string
  sourceVolid?: string
  snapshotId?: string
  imageId?: string
  metadata?: Record<string, string>
  bootable?: boolean
  /**
   * Multiattach whatever the type says: Cinder's request parameter, deprecated
   * in Queens (3.50 moved it to types) and honoured until 2023.1, which refuses
   * it. Tempest 33 still makes its multiattach volumes this way.
   */
  multiattach?: boolean
}

/**
 * The row of a new volume, `creating` on `host` with its create cast pending
 * (the volume API's creates and the volumes a server makes at its create).
 */
export function newVolumeRow(o: {
  id: string; name: string; description: string; size: number; bootable: boolean; type: VolumeTypeView; zone: string; host: string
  image: Image | undefined; metadata: Record<string, string>; sourceVolid: string; snapshotId: string
  /** The image metadata of the volume it is made from (a snapshot's or a clone's source), as Cinder copies it. */
  sourceImageMetadata?: string
  /** Asked for at create (CreateVolume.multiattach); otherwise the type's `multiattach` spec decides. */
  multiattach?: boolean
}, caller: VolumeCaller): VolumeTable {
  const ts = now()
  return {
    id: o.id, name: o.name, description: o.description, size: o.size, pending_size: 0, status: 'creating', status_reason: '', bootable: o.bootable ? 1 : 0,
    volume_type_id: o.type.id, availability_zone: o.zone, source_volid: o.sourceVolid, snapshot_id: o.snapshotId, image_id: o.image?.id ?? '',
    volume_image_metadata: o.image ? JSON.stringify(imageMetadataOf(o.image)) : o.sourceImageMetadata ?? '{}', multiattach: o.multiattach || specIsTrue(o.type.extraSpecs.multiattach) ? 1 : 0,
    metadata: JSON.stringify(o.metadata), host: o.host, project_id: caller.projectId!, user_id: caller.userId, ...pendingCast('create', o.id, caller.requestId), created_at: ts, updated_at: ts,
  }
}

/** What a new volume takes from the volume or snapshot it is made from. */
interface VolumeSource {
  size: number
  host: string
  zone: string
  bootable: boolean
  /** The source volume's `volume_image_metadata` (JSON). */
  imageMetadata: string
}

export interface VolumeDeps {
  quota: QuotaEngine
  types: VolumeTypeCatalog
  images: ImageCatalog
  backends: VolumeBackends
  casts: VolumeCasts
}

export class VolumeCatalog {
  constructor(
    private readonly db: Db,
    private readonly deps: VolumeDeps,
    private readonly log: Log,
  ) {
    const { quota } = deps
    quota.registerRowCount('volumes', 'volumes')
    quota.registerRowCount('snapshots', 'volume_snapshots')
    // Cinder counts snapshots in gigabytes too; an extend in progress counts at its new size.
    quota.registerCounter('gigabytes', async (trx, o) => {
      const v = await trx.selectFrom('volumes').select(['size', 'pending_size']).where('project_id', '=', o.projectId).execute()
      const s = await trx.selectFrom('volume_snapshots').select((eb) => eb.fn.sum<number>('size').as('gb')).where('project_id', '=', o.projectId).executeTakeFirst()
      return v.reduce((n, r) => n + Math.max(r.size, r.pending_size), 0) + Number(s?.gb ?? 0)
    })
    // Cinder's per-type quotas, counted as the totals above but for the volumes of one type (a snapshot: its volume's).
    quota.registerFamily({
      bases: ['volumes', 'gigabytes', 'snapshots'],
      keys: async (trx) => (await trx.selectFrom('volume_types').select('name').execute()).map((r) => r.name),
      count: async (trx, o, base, typeName) => {
        const vols = trx.selectFrom('volumes').innerJoin('volume_types', 'volume_types.id', 'volumes.volume_type_id').where('volumes.project_id', '=', o.projectId).where('volume_types.name', '=', typeName)
        const snaps = trx.selectFrom('volume_snapshots').innerJoin('volumes', 'volumes.id', 'volume_snapshots.volume_id').innerJoin('volume_types', 'volume_types.id', 'volumes.volume_type_id')
          .where('volume_snapshots.project_id', '=', o.projectId).where('volume_types.name', '=', typeName)
        if (base === 'volumes') return Number((await vols.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst())?.n ?? 0)
        if (base === 'snapshots') return Number((await snaps.select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst())?.n ?? 0)
        const v = await vols.select(['volumes.size', 'volumes.pending_size']).execute()
        const s = await snaps.select((eb) => eb.fn.sum<number>('volume_snapshots.size').as('gb')).executeTakeFirst()
        return v.reduce((n, r) => n + Math.max(r.size, r.pending_size), 0) + Number(s?.gb ?? 0)
      },
    })
  }

  async create(req: CreateVolume, caller: VolumeCaller): Promise<VolumeView> {
    if (!caller.projectId) throw new InvalidArgument('a volume belongs to a project: use a project-scoped token')
    const sources = Object.entries({ source_volid: req.sourceVolid, snapshot_id: req.snapshotId, image_id: req.imageId }).filter(([, v]) => v)
    if (sources.length > 1) throw new InvalidArgument(`a volume has at most one source; got ${sources.map(([k]) => k).join(' and ')}`, { field: sources.map(([k]) => k).join('|') })
    const name = checkText('name', req.name, 255)
    const description = checkText('description', req.description, 255)
    const metadata = checkMetadata(req.metadata)
    const zone = checkText('availability_zone', req.availabilityZone, 255)
    const image = req.imageId ? await this.findImage(req.imageId, caller) : undefined
    const imageGb = image ? Math.max(image.minDisk, Math.ceil(image.virtualSize / GiB)) : 0
    const id = randomUUID()
    const row = await this.db.transaction().execute(async (trx) => {
      const type = await this.deps.types.resolve(trx, req.volumeType, caller)
      let size = req.size ?? 0
      let host = ''
      let hostZone = ''
      let from: { bootable: boolean; imageMetadata: string } | undefined
      if (req.snapshotId || req.sourceVolid) {
        // Copy-on-write and copies happen on the source's backend: the new volume lives there too.
        const src = req.snapshotId ? await this.sourceSnapshot(trx, req.snapshotId, caller) : await this.sourceVolume(trx, req.sourceVolid!, caller)
        size = size || src.size
        if (size < src.size) throw new InvalidArgument(`size ${size} GiB is smaller than the source's ${src.size} GiB`, { field: 'size' })
        host = src.host
        hostZone = src.zone
        from = src
        if (zone && zone !== hostZone) throw new InvalidArgument(`the source is in availability zone ${hostZone}, not ${zone}`, { field: 'availability_zone' })
        if (!host) throw new FailedPrecondition('the source has no backend host (it was never created); it cannot be copied', { field: req.snapshotId ? 'snapshot_id' : 'source_volid' })
      } else if (image) {
        size = size || imageGb
        if (size < imageGb) throw new InvalidArgument(`size ${size} GiB is smaller than image ${image.id} needs (${imageGb} GiB: its virtual size or min_disk)`, { field: 'size' })
      }
      checkSize('size', size, 1)
      await this.deps.quota.check(trx, { projectId: caller.projectId! }, { volumes: 1, gigabytes: size, [`volumes_${type.name}`]: 1, [`gigabytes_${type.name}`]: size })
      if (host) await this.deps.backends.ensureRoom(trx, host, size)
      else {
        host = await this.deps.backends.pick(trx, { sizeGb: size, availabilityZone: zone, backendName: type.extraSpecs.volume_backend_name ?? '' })
        hostZone = (await trx.selectFrom('compute_hosts').select('availability_zone').where('host', '=', host).executeTakeFirstOrThrow()).availability_zone
      }
      const r = newVolumeRow({
        // A copy of a bootable volume (or of its snapshot) is bootable, with its image metadata, as in Cinder.
        id, name, description, size, bootable: req.bootable ?? (from ? from.bootable : Boolean(image)), type, zone: hostZone, host, image, metadata, sourceImageMetadata: from?.imageMetadata, multiattach: req.multiattach,
        sourceVolid: req.sourceVolid ? await this.idOf(trx, 'volumes', req.sourceVolid, caller) : '',
        snapshotId: req.snapshotId ? await this.idOf(trx, 'volume_snapshots', req.snapshotId, caller) : '',
      }, caller)
      await trx.insertInto('volumes').values(r).execute()
      return { r, type }
    })
    await this.cast('create', row.r)
    this.log.info({ volume: id, host: row.r.host, size: row.r.size, project: caller.projectId }, 'volume create cast')
    return volumeView(row.r, row.type.name, caller, [], await this.deps.backends.nameOf(this.db, row.r.host))
  }

  async get(ref: string | undefined, caller: VolumeCaller): Promise<VolumeView> {
    return this.view(this.db, await findRow(this.db, 'volumes', ref, caller), caller)
  }

  async list(f: { allProjects?: boolean; name?: string; status?: string; projectId?: string }, caller: VolumeCaller): Promise<VolumeView[]> {
    if ((f.allProjects || f.projectId) && !caller.isAdmin) throw new PermissionDenied('only cloud admins list the volumes of other projects', { field: f.allProjects ? 'all_projects' : 'project_id' })
    let q = this.db.selectFrom('volumes').selectAll().orderBy('created_at', 'desc').orderBy('id')
    if (f.projectId) q = q.where('project_id', '=', f.projectId)
    else if (!f.allProjects) q = q.where('project_id', '=', caller.projectId ?? '')
    if (f.name) q = q.where('name', '=', f.name)
    if (f.status) q = q.where('status', '=', f.status)
    const rows = await q.execute()
    const types = new Map((await this.db.selectFrom('volume_types').select(['id', 'name']).execute()).map((t) => [t.id, t.name]))
    const attached = await attachmentsOfVolumes(this.db, rows.map((r) => r.id))
    const backends = await this.deps.backends.names()
    return rows.map((r) => volumeView(r, types.get(r.volume_type_id) ?? '', caller, attached.get(r.id), backends.get(r.host)))
  }

  async update(req: { id?: string; name?: string; description?: string; setMetadata?: Record<string, string>; unsetMetadata?: string[]; bootable?: boolean }, caller: VolumeCaller): Promise<VolumeView> {
    return this.db.transaction().execute(async (trx) => {
      const row = await findRow(trx, 'volumes', req.id, caller)
      checkWriter(row, caller, 'volume')
      beginVolumeAction('update', row)
      const next: VolumeTable = {
        ...row,
        ...renamed(req),
        ...(req.bootable !== undefined ? { bootable: req.bootable ? 1 : 0 } : {}),
        metadata: updatedMap(row.metadata, req.setMetadata, req.unsetMetadata),
        updated_at: now(),
      }
      await trx.updateTable('volumes').set(next).where('id', '=', row.id).execute()
      return this.view(trx, next, caller)
    })
  }

  /** Grows a volume (Cinder os-extend): the gigabytes quota is checked for the difference. */
  async extend(ref: string | undefined, newSize: number | undefined, caller: VolumeCaller): Promise<VolumeView> {
    const { next, view, attached } = await this.db.transaction().execute(async (trx) => {
      const row = await findRow(trx, 'volumes', ref, caller)
      checkWriter(row, caller, 'volume')
      const size = checkSize('new_size', newSize, 1)
      if (size <= row.size) throw new InvalidArgument(`new_size must be larger than the volume's size, ${row.size} GiB; got ${size}`, { field: 'new_size' })
      const status = beginVolumeAction('extend', row)
      const type = await typeNameOf(trx, row.volume_type_id)
      await this.deps.quota.check(trx, { projectId: row.project_id }, { gigabytes: size - row.size, [`gigabytes_${type}`]: size - row.size })
      await this.deps.backends.ensureRoom(trx, row.host, size - row.size)
      const next: VolumeTable = { ...row, status, status_reason: '', pending_size: size, ...pendingCast('extend', row.id, caller.requestId), updated_at: now() }
      await trx.updateTable('volumes').set(next).where('id', '=', row.id).execute()
      return { next, view: await this.view(trx, next, caller), attached: await attachedDisks(trx, row.id) }
    })
    await this.deps.casts.send({ table: 'volumes', id: next.id, host: next.host, work: volumeWork('extend', next, attached), castId: next.pending_cast_id, requestId: next.pending_request_id })
    return view
  }

  /**
   * Deletes a volume: refused while it has snapshots unless `cascade`
   * (they go with it), from statuses Cinder refuses unless an admin
   * `force`s it. A volume that never reached a backend goes at once.
   */
  async delete(req: { id?: string; cascade?: boolean; force?: boolean }, caller: VolumeCaller): Promise<VolumeView> {
    if (req.force && !caller.isAdmin) throw new PermissionDenied('only cloud admins force-delete volumes', { field: 'force' })
    const r = await this.db.transaction().execute(async (trx) => {
      const row = await findRow(trx, 'volumes', req.id, caller)
      checkWriter(row, caller, 'volume')
      const status = beginVolumeAction(req.force ? 'force_delete' : 'delete', row)
      const snaps = await trx.selectFrom('volume_snapshots').select(['id', 'status']).where('volume_id', '=', row.id).execute()
      if (snaps.length && !req.cascade) throw new FailedPrecondition(`volume ${row.id} has ${snaps.length} snapshot${snaps.length > 1 ? 's' : ''} (${snaps.map((s) => s.id).join(', ')}); delete them first, or delete with cascade`)
      const busy = snaps.find((s) => !['available', 'error'].includes(s.status) && !req.force)
      if (busy) throw new FailedPrecondition(`cannot cascade-delete volume ${row.id}: its snapshot ${busy.id} is ${busy.status}; wait for it to be available or error`)
      const ts = now()
      if (snaps.length) await trx.updateTable('volume_snapshots').set({ status: 'deleting', ...NO_CAST, updated_at: ts }).where('volume_id', '=', row.id).execute()
      if (!row.host) {
        await trx.deleteFrom('volume_attachments').where('volume_id', '=', row.id).execute()
        await trx.deleteFrom('volume_snapshots').where('volume_id', '=', row.id).execute()
        await trx.deleteFrom('volumes').where('id', '=', row.id).execute()
        return { next: { ...row, status }, local: true }
      }
      const next: VolumeTable = { ...row, status, status_reason: '', ...pendingCast('delete', row.id, caller.requestId), updated_at: ts }
      await trx.updateTable('volumes').set(next).where('id', '=', row.id).execute()
      return { next, local: false }
    })
    if (!r.local) await this.cast('delete', r.next)
    this.log.info({ volume: r.next.id, host: r.next.host, cascade: Boolean(req.cascade), force: Boolean(req.force) }, r.local ? 'volume deleted (it had no backend)' : 'volume delete cast')
    return this.view(this.db, r.next, caller)
  }

  /** An admin's os-reset_status: only the database changes; pending work is forgotten (its result will be ignored). */
  async resetState(ref: string | undefined, status: string | undefined, caller: VolumeCaller): Promise<VolumeView> {
    const to = resetStatus(status)
    const row = await findRow(this.db, 'volumes', ref, caller)
    const next: VolumeTable = { ...row, status: to, status_reason: '', pending_size: 0, ...NO_CAST, updated_at: now() }
    await this.db.updateTable('volumes').set(next).where('id', '=', row.id).execute()
    this.log.warn({ volume: row.id, from: row.status, to, user: caller.userId }, 'volume status reset by an admin')
    return this.view(this.db, next, caller)
  }

  private async cast(op: VolumeOp, r: VolumeTable): Promise<void> {
    await this.deps.casts.send({ table: 'volumes', id: r.id, host: r.host, work: volumeWork(op, r), castId: r.pending_cast_id, requestId: r.pending_request_id })
  }

  private async view(db: Trx, r: VolumeTable, caller: VolumeCaller): Promise<VolumeView> {
    const type: VolumeTypeView | undefined = await this.deps.types.byId(db, r.volume_type_id)
    return volumeView(r, type?.name ?? '', caller, (await attachmentsOfVolumes(db, [r.id])).get(r.id), await this.deps.backends.nameOf(db, r.host))
  }

  private async findImage(ref: string, caller: VolumeCaller): Promise<Image> {
    const image = await this.deps.images.get(isUuid(ref) ? { id: ref } : { name: ref }, imageViewer(caller)).catch((err) => {
      throw err instanceof NotFound ? new NotFound(`image '${ref}' not found (by id or name); see strato image list`, { field: 'image_id', cause: err }) : err
    })
    if (image.status !== 'active') throw new FailedPrecondition(`image ${image.id} is ${image.status}, not active`, { field: 'image_id' })
    if (image.diskFormat !== 'qcow2' && image.diskFormat !== 'raw') throw new FailedPrecondition(`image ${image.id} is ${image.diskFormat}; volumes are made from qcow2 and raw images`, { field: 'image_id' })
    return image
  }

  private async sourceSnapshot(trx: Trx, ref: string, caller: VolumeCaller): Promise<VolumeSource> {
    const s = await findRow(trx, 'volume_snapshots', ref, caller, 'snapshot_id')
    checkSnapshotSource(s)
    const v = await trx.selectFrom('volumes').select(['host', 'availability_zone', 'bootable', 'volume_image_metadata']).where('id', '=', s.volume_id).executeTakeFirstOrThrow()
    return { size: s.size, host: v.host, zone: v.availability_zone, bootable: v.bootable === 1, imageMetadata: v.volume_image_metadata }
  }

  private async sourceVolume(trx: Trx, ref: string, caller: VolumeCaller): Promise<VolumeSource> {
    const v = await findRow(trx, 'volumes', ref, caller, 'source_volid')
    beginVolumeAction('clone', v)
    return { size: v.size, host: v.host, zone: v.availability_zone, bootable: v.bootable === 1, imageMetadata: v.volume_image_metadata }
  }

  private async idOf(trx: Trx, table: 'volumes' | 'volume_snapshots', ref: string, caller: VolumeCaller): Promise<string> {
    return (await findRow(trx, table, ref, caller)).id
  }
}
