/**
 * Volume snapshots (Cinder): of an available volume (of an in-use one with
 * `force`), kept on the volume's backend (copy-on-write where the backend's
 * format allows). Quotas `snapshots` and `gigabytes` are checked in the
 * creating transaction. Deleting a snapshot that volumes were made from is
 * the backend's to make safe (it flattens them first: no data is lost),
 * refused while a running guest or an export has one of them open.
 */
import { randomUUID } from 'node:crypto'
import { FailedPrecondition, InvalidArgument, PermissionDenied } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import type { Trx } from '../quota/quota.js'
import type { VolumeSnapshotTable } from '../store/schema.js'
import type { QuotaEngine } from '../quota/quota.js'
import { typeNameOf } from './types.js'
import { checkText } from '../identity/validate.js'
import { checkMetadata } from '../compute/server-create-plan.js'
import { now, type Log } from '../compute/server-model.js'
import { beginSnapshotDelete, beginVolumeAction, SNAPSHOT_STATUSES, type SnapshotStatus } from './states.js'
import { NO_CAST, pendingCast, snapshotWork, type VolumeCasts } from './casts.js'
import type { VolumeBackends } from './backends.js'
import { checkWriter, findRow, renamed, snapshotView, updatedMap, type SnapshotView, type VolumeCaller } from './model.js'
import type { VolumeOp, VolumeWork } from '../../proto/volume-work.js'
import { attachedDisks, snapshotDependentDisks } from './attachments.js'

export class SnapshotCatalog {
  constructor(
    private readonly db: Db,
    private readonly deps: { quota: QuotaEngine; casts: VolumeCasts; backends: VolumeBackends },
    private readonly log: Log,
  ) {}

  async create(req: { volumeId?: string; name?: string; description?: string; force?: boolean; metadata?: Record<string, string> }, caller: VolumeCaller): Promise<SnapshotView> {
    const name = checkText('name', req.name, 255)
    const description = checkText('description', req.description, 255)
    const metadata = checkMetadata(req.metadata)
    const { row, host, attached } = await this.db.transaction().execute(async (trx) => {
      const vol = await findRow(trx, 'volumes', req.volumeId, caller, 'volume_id')
      checkWriter(vol, caller, 'volume')
      beginVolumeAction(req.force ? 'snapshot_force' : 'snapshot', vol)
      const type = await typeNameOf(trx, vol.volume_type_id)
      await this.deps.quota.check(trx, { projectId: vol.project_id }, { snapshots: 1, gigabytes: vol.size, [`snapshots_${type}`]: 1, [`gigabytes_${type}`]: vol.size })
      await this.deps.backends.ensureRoom(trx, vol.host, vol.size)
      const id = randomUUID()
      const ts = now()
      const row: VolumeSnapshotTable = {
        id, name, description, volume_id: vol.id, size: vol.size, status: 'creating', status_reason: '', metadata: JSON.stringify(metadata),
        project_id: vol.project_id, user_id: caller.userId, ...pendingCast('create_snapshot', id, caller.requestId), created_at: ts, updated_at: ts,
      }
      await trx.insertInto('volume_snapshots').values(row).execute()
      // Whatever has the file open moves onto a new active file, the old one frozen as the snapshot's: a
      // running guest of the volume's host (libvirt disk-only external snapshot), the NBD export serving a
      // server on another host (QMP blockdev-snapshot); otherwise the file becomes the snapshot under a new
      // overlay. Where the volume's file is, the backend says (export) at each attach or start.
      return { row, host: vol.host, attached: await attachedDisks(trx, vol.id) }
    })
    await this.cast('create_snapshot', row, host, attached)
    return snapshotView(row)
  }

  async get(ref: string | undefined, caller: VolumeCaller): Promise<SnapshotView> {
    return snapshotView(await findRow(this.db, 'volume_snapshots', ref, caller))
  }

  async list(f: { allProjects?: boolean; projectId?: string; volumeId?: string; status?: string; name?: string }, caller: VolumeCaller): Promise<SnapshotView[]> {
    if ((f.allProjects || f.projectId) && !caller.isAdmin) throw new PermissionDenied('only cloud admins list the snapshots of other projects', { field: f.allProjects ? 'all_projects' : 'project_id' })
    let q = this.db.selectFrom('volume_snapshots').selectAll().orderBy('created_at', 'desc').orderBy('id')
    if (f.projectId) q = q.where('project_id', '=', f.projectId)
    else if (!f.allProjects) q = q.where('project_id', '=', caller.projectId ?? '')
    if (f.volumeId) q = q.where('volume_id', '=', (await findRow(this.db, 'volumes', f.volumeId, caller, 'volume_id')).id)
    if (f.status) q = q.where('status', '=', f.status)
    if (f.name) q = q.where('name', '=', f.name)
    return (await q.execute()).map(snapshotView)
  }

  async update(req: { id?: string; name?: string; description?: string; setMetadata?: Record<string, string>; unsetMetadata?: string[] }, caller: VolumeCaller): Promise<SnapshotView> {
    return this.db.transaction().execute(async (trx) => {
      const row = await findRow(trx, 'volume_snapshots', req.id, caller)
      checkWriter(row, caller, 'snapshot')
      const next: VolumeSnapshotTable = { ...row, ...renamed(req), metadata: updatedMap(row.metadata, req.setMetadata, req.unsetMetadata), updated_at: now() }
      await trx.updateTable('volume_snapshots').set(next).where('id', '=', row.id).execute()
      return snapshotView(next)
    })
  }

  /**
   * An admin's reset of a snapshot's status (Cinder's snapshot os-reset_status): the row only, any cast it
   * waited for forgotten (its result, if it comes, is not applied).
   */
  async resetState(ref: string | undefined, status: string | undefined, caller: VolumeCaller): Promise<SnapshotView> {
    if (!caller.isAdmin) throw new PermissionDenied('only cloud admins reset a snapshot\'s status', { field: 'status' })
    if (!SNAPSHOT_STATUSES.includes(status as SnapshotStatus)) throw new InvalidArgument(`status must be one of ${SNAPSHOT_STATUSES.join(', ')}, got '${status ?? ''}'`, { field: 'status' })
    const row = await findRow(this.db, 'volume_snapshots', ref, caller)
    const next: VolumeSnapshotTable = { ...row, status: status as SnapshotStatus, status_reason: '', ...NO_CAST, updated_at: now() }
    await this.db.updateTable('volume_snapshots').set(next).where('id', '=', row.id).execute()
    this.log.warn({ snapshot: row.id, from: row.status, to: status, user: caller.userId }, 'snapshot status reset by an admin')
    return snapshotView(next)
  }

  async delete(req: { id?: string; force?: boolean }, caller: VolumeCaller): Promise<SnapshotView> {
    if (req.force && !caller.isAdmin) throw new PermissionDenied('only cloud admins force-delete snapshots', { field: 'force' })
    const { next, host, attached } = await this.db.transaction().execute(async (trx) => {
      const row = await findRow(trx, 'volume_snapshots', req.id, caller)
      checkWriter(row, caller, 'snapshot')
      const status = beginSnapshotDelete(row, Boolean(req.force))
      const vol = await trx.selectFrom('volumes').select(['id', 'host', 'status']).where('id', '=', row.volume_id).executeTakeFirstOrThrow()
      if (vol.status === 'deleting') throw new InvalidArgument(`snapshot ${row.id} goes with its volume ${row.volume_id}, which is being deleted`)
      const next: VolumeSnapshotTable = { ...row, status, status_reason: '', ...pendingCast('delete_snapshot', row.id, caller.requestId), updated_at: now() }
      await trx.updateTable('volume_snapshots').set(next).where('id', '=', row.id).execute()
      // Files resting on it that are open are merged into live on the volume's host: by the running
      // guests of that host named here, or by the export's daemon serving another host's server.
      return { next, host: vol.host, attached: await snapshotDependentDisks(trx, row) }
    })
    await this.cast('delete_snapshot', next, host, attached)
    this.log.info({ snapshot: next.id, volume: next.volume_id, host }, 'snapshot delete cast')
    return snapshotView(next)
  }

  private async cast(op: VolumeOp, s: VolumeSnapshotTable, host: string, attached: VolumeWork['attached'] = []): Promise<void> {
    await this.deps.casts.send({ table: 'volume_snapshots', id: s.id, host, work: snapshotWork(op, s, attached), castId: s.pending_cast_id, requestId: s.pending_request_id })
  }
}

