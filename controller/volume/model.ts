/** The shapes the volume code shares: what callers see of volumes and snapshots, and how rows are found. */
import { InvalidArgument, NotFound, PermissionDenied, Conflict } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import type { VolumeSnapshotTable, VolumeTable } from '../store/schema.js'
import type { Trx } from '../quota/quota.js'
import { json, type ServerCaller } from '../compute/server-model.js'
import { checkMetadata } from '../compute/server-create-plan.js'
import { checkText } from '../identity/validate.js'

export type VolumeCaller = ServerCaller

export interface VolumeView {
  id: string
  name: string
  description: string
  size: number
  status: string
  statusReason: string
  bootable: boolean
  volumeType: string
  volumeTypeId: string
  availabilityZone: string
  sourceVolid: string
  snapshotId: string
  imageId: string
  volumeImageMetadata: Record<string, string>
  attachments: VolumeAttachmentView[]
  multiattach: boolean
  encrypted: boolean
  metadata: Record<string, string>
  createdAt: Date
  updatedAt: Date
  userId: string
  projectId: string
  /** Shown to admins only ('' for others). */
  host: string
  /** The backend's name on `host` (Cinder's host@backend#pool); admins only, as `host`. */
  backendName: string
}

export interface SnapshotView {
  id: string
  name: string
  description: string
  volumeId: string
  size: number
  status: string
  statusReason: string
  metadata: Record<string, string>
  createdAt: Date
  updatedAt: Date
  userId: string
  projectId: string
}

/** A volume's entry in its `attachments` (the live attachments, `attachments.ts`). */
export interface VolumeAttachmentView {
  id: string
  attachmentId: string
  volumeId: string
  serverId: string
  hostName: string
  device: string
  attachedAt: Date | undefined
}

export function volumeView(r: VolumeTable, typeName: string, caller: VolumeCaller, attachments: VolumeAttachmentView[] = [], backendName = ''): VolumeView {
  return {
    id: r.id, name: r.name, description: r.description, size: r.size, status: r.status, statusReason: r.status_reason, bootable: r.bootable === 1,
    volumeType: typeName, volumeTypeId: r.volume_type_id, availabilityZone: r.availability_zone, sourceVolid: r.source_volid, snapshotId: r.snapshot_id,
    imageId: r.image_id, volumeImageMetadata: json<Record<string, string>>(r.volume_image_metadata, {}),
    // Hosts are for admins (as the volume's own host and Nova's OS-EXT-SRV-ATTR:host).
    attachments: caller.isAdmin ? attachments : attachments.map((a) => ({ ...a, hostName: '' })), multiattach: r.multiattach === 1, encrypted: false,
    metadata: json<Record<string, string>>(r.metadata, {}), createdAt: new Date(r.created_at), updatedAt: new Date(r.updated_at), userId: r.user_id, projectId: r.project_id,
    host: caller.isAdmin ? r.host : '', backendName: caller.isAdmin ? backendName : '',
  }
}

export function snapshotView(r: VolumeSnapshotTable): SnapshotView {
  return {
    id: r.id, name: r.name, description: r.description, volumeId: r.volume_id, size: r.size, status: r.status, statusReason: r.status_reason,
    metadata: json<Record<string, string>>(r.metadata, {}), createdAt: new Date(r.created_at), updatedAt: new Date(r.updated_at), userId: r.user_id, projectId: r.project_id,
  }
}

/**
 * The volume or snapshot `ref` names (id, or a name unique in what the caller
 * sees): the caller's project's, or any for admins.
 */
export async function findRow<T extends 'volumes' | 'volume_snapshots'>(db: Trx, table: T, ref: string | undefined, caller: VolumeCaller, field = 'id'): Promise<T extends 'volumes' ? VolumeTable : VolumeSnapshotTable> {
  const what = table === 'volumes' ? 'volume' : 'snapshot'
  if (!ref) throw new InvalidArgument(`a ${what} id or name is required`, { field })
  let q = db.selectFrom(table as 'volumes').selectAll()
  q = isUuid(ref) ? q.where('id', '=', ref) : q.where('name', '=', ref)
  if (!caller.isAdmin) q = q.where('project_id', '=', caller.projectId ?? '')
  const rows = await q.limit(2).execute()
  if (rows.length > 1) throw new Conflict(`several ${what}s are named '${ref}'; use the id`, { field })
  if (!rows[0]) throw new NotFound(`${what} '${ref}' not found`, { field })
  return rows[0] as never
}

/** Writes need a member of the owning project, or an admin (readers only read). */
export function checkWriter(row: { id: string; project_id: string }, caller: VolumeCaller, what: string): void {
  if (caller.isAdmin) return
  if (!caller.canWrite || row.project_id !== caller.projectId) throw new PermissionDenied(`${what} ${row.id} can be changed only by members of its project or a cloud admin`)
}

/** A whole number of GiB ≥ `min`. */
export function checkSize(field: string, size: number | undefined, min: number): number {
  const n = size ?? 0
  if (!Number.isInteger(n) || n < min) throw new InvalidArgument(`${field} must be a whole number of GiB ≥ ${min}, got ${n}`, { field })
  return n
}

/** The properties of an image a volume made from it shows (Cinder's volume_image_metadata). */
export function imageMetadataOf(image: { id: string; name: string; diskFormat: string; containerFormat: string; checksum: string; minDisk: number; minRam: number; size: number; properties: Record<string, string> }): Record<string, string> {
  return {
    ...image.properties,
    image_id: image.id, image_name: image.name, disk_format: image.diskFormat, container_format: image.containerFormat,
    checksum: image.checksum, min_disk: String(image.minDisk), min_ram: String(image.minRam), size: String(image.size),
  }
}

/** A metadata (or extra specs) map, stored as JSON, after an update: `unset` keys removed, then `set` ones written; checked. */
export function updatedMap(text: string, set: Record<string, string> | undefined, unset: string[] | undefined): string {
  const m = json<Record<string, string>>(text, {})
  for (const k of unset ?? []) delete m[k]
  Object.assign(m, set ?? {})
  return JSON.stringify(checkMetadata(m))
}

/** The name and description an update gives (each only when asked for), checked. */
export function renamed(req: { name?: string; description?: string }): { name?: string; description?: string } {
  return {
    ...(req.name !== undefined ? { name: checkText('name', req.name, 255) } : {}),
    ...(req.description !== undefined ? { description: checkText('description', req.description, 255) } : {}),
  }
}
