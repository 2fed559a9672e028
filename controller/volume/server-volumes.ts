/**
 * The volumes a server is created with (Nova's block device mappings on
 * Cinder's attachments; steps 26–28 of the seed's build), from its create
 * to its delete:
 *
 * - create (`recordIn`, in the transaction that records the server): the
 *   volumes it makes are recorded `creating` on the server's host with their
 *   create cast pending (the quota counts them there); the existing ones are
 *   reserved; each gets an attachment `reserved` with its device, its boot
 *   index and whether it goes with the server. A volume made for a server
 *   becomes `reserved`, not available, when its backend made it (`results.ts`).
 * - build (`forBuild`, the conductor): the build spec is handed out only once
 *   every volume is made; until then the host is told to try again
 *   (Unavailable, the server in task block_device_mapping), and a volume that
 *   failed fails the build. Handing it out moves volumes and attachments to
 *   attaching; the build's result makes them in-use and attached (`built`).
 * - a failed build or a delete (`release`): every attachment goes, the
 *   volumes are free again, and those marked delete_on_termination are
 *   deleted (Nova's `_cleanup_volumes`).
 */
import { randomUUID } from 'node:crypto'
import { FailedPrecondition, Unavailable } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import type { VolumeAttachmentTable, VolumeTable } from '../store/schema.js'
import type { QuotaEngine, Trx } from '../quota/quota.js'
import { now, type Log, type ServerCaller } from '../compute/server-model.js'
import type { BlockDevicePlan } from '../compute/server-create-bdm.js'
import type { VolumeBackends } from './backends.js'
import { NO_CAST, pendingCast, volumeWork, type VolumeCasts } from './casts.js'
import { moveAttachment, moveVolume, releaseServerAttachments } from './attachments.js'
import { beginVolumeAction } from './states.js'
import type { VolumeTypeCatalog } from './types.js'
import { newVolumeRow } from './volumes.js'
import type { BuildVolume } from '../../proto/build-spec.js'


/** The statuses a volume the server goes with is deleted from (Cinder's delete, and a create still running). */
const DELETABLE = ['available', 'error', 'error_extending', 'creating', 'downloading']

export class ServerVolumes {
  constructor(
    private readonly db: Db,
    private readonly deps: { quota: QuotaEngine; types: VolumeTypeCatalog; backends: VolumeBackends; casts: VolumeCasts },
    private readonly log: Log,
  ) {}

  /** Checks the quota of the volumes `servers` servers of `plan` make (volumes, gigabytes), inside the recording transaction. */
  async checkQuotaIn(trx: Trx, projectId: string, plan: BlockDevicePlan, servers: number): Promise<void> {
    if (plan.newVolumes) await this.deps.quota.check(trx, { projectId }, { volumes: plan.newVolumes * servers, gigabytes: plan.newGigabytes * servers })
  }

  /**
   * Records one server's volumes (see above) inside `trx`; returns the new
   * volumes, whose creates are to be sent once it committed (`sendCreates`).
   */
  async recordIn(trx: Trx, s: { uuid: string; host: string; zone: string }, plan: BlockDevicePlan, caller: ServerCaller): Promise<VolumeTable[]> {
    const made: VolumeTable[] = []
    const ts = now()
    for (const v of plan.volumes) {
      let volumeId = v.volumeId
      if (v.source === 'volume') {
        const row = await trx.selectFrom('volumes').selectAll().where('id', '=', v.volumeId).executeTakeFirstOrThrow()
        // Checked at the plan; checked again here, where it counts (another request may have taken it).
        await moveVolume(trx, row, beginVolumeAction(row.multiattach === 1 ? 'attach_multi' : 'attach', row))
      } else {
        await this.deps.backends.ensureRoom(trx, s.host, v.sizeGb)
        const type = (await this.deps.types.byId(trx, v.volumeTypeId))!
        const row = newVolumeRow({
          id: randomUUID(), name: '', description: '', size: v.sizeGb, bootable: v.bootable, type, zone: s.zone, host: s.host,
          image: v.image, metadata: {}, sourceVolid: '', snapshotId: v.snapshotId,
        }, caller)
        await trx.insertInto('volumes').values(row).execute()
        made.push(row)
        volumeId = row.id
      }
      const a: VolumeAttachmentTable = {
        id: randomUUID(), volume_id: volumeId, server_id: s.uuid, host: s.host, device: v.device, status: 'reserved', status_reason: '', attach_mode: 'rw',
        server_device: `${s.uuid}/${v.device}`, server_volume: `${s.uuid}/${volumeId}`, attached_at: null, project_id: caller.projectId!, user_id: caller.userId,
        delete_on_termination: v.deleteOnTermination ? 1 : 0, boot_index: v.bootIndex, ...NO_CAST, created_at: ts, updated_at: ts,
      }
      await trx.insertInto('volume_attachments').values(a).execute()
    }
    return made
  }

  /** Casts the creates of volumes recorded by `recordIn` (after its transaction committed). */
  async sendCreates(rows: VolumeTable[]): Promise<void> {
    for (const r of rows) {
      await this.deps.casts.send({ table: 'volumes', id: r.id, host: r.host, work: volumeWork('create', r), castId: r.pending_cast_id, requestId: r.pending_request_id })
      this.log.info({ volume: r.id, host: r.host, size: r.size }, 'volume of a new server: create cast')
    }
  }

  /** Casts the deletes `release` recorded (after its transaction committed). */
  async sendDeletes(rows: VolumeTable[]): Promise<void> {
    for (const r of rows) {
      await this.deps.casts.send({ table: 'volumes', id: r.id, host: r.host, work: volumeWork('delete', r), castId: r.pending_cast_id, requestId: r.pending_request_id })
      this.log.info({ volume: r.id, host: r.host }, 'volume deleted with its server (delete_on_termination): delete cast')
    }
  }
}

/**
 * The volumes of server `uuid` for its build, once they are all made: the
 * reserved ones move to attaching (a build asked again finds them so).
 * @throws Unavailable while one is still being made (the host asks again).
 * @throws FailedPrecondition when one could not be made, or is gone.
 */
export async function volumesForBuild(db: Db, uuid: string): Promise<BuildVolume[]> {
  return db.transaction().execute(async (trx) => {
    const rows = await trx.selectFrom('volume_attachments').selectAll().where('server_id', '=', uuid).where('status', 'in', ['reserved', 'attaching', 'attached']).orderBy('device').execute()
    if (!rows.length) return []
    const vols = new Map((await trx.selectFrom('volumes').select(['id', 'status', 'status_reason', 'host', 'multiattach']).where('id', 'in', rows.map((a) => a.volume_id)).execute()).map((v) => [v.id, v]))
    const waiting: string[] = []
    for (const a of rows) {
      const v = vols.get(a.volume_id)
      if (!v) throw new FailedPrecondition(`volume ${a.volume_id} (/dev/${a.device}) of server ${uuid} is gone`)
      if (v.status === 'creating' || v.status === 'downloading') waiting.push(`${v.id} (/dev/${a.device}, ${v.status})`)
      else if (v.status === 'error') throw new FailedPrecondition(`volume ${v.id} (/dev/${a.device}) of server ${uuid} could not be made: ${v.status_reason || 'its backend failed'}`)
    }
    if (waiting.length) throw new Unavailable(`server ${uuid} waits for its volumes to be made: ${waiting.join(', ')}`)
    for (const a of rows) {
      if (a.status !== 'reserved') continue
      await moveVolume(trx, vols.get(a.volume_id)!, 'attaching')
      await moveAttachment(trx, a, 'attaching')
    }
    return rows.map((a) => {
      const v = vols.get(a.volume_id)!
      return { volumeId: a.volume_id, device: a.device, bootIndex: a.boot_index, attachmentId: a.id, volumeHost: v.host, multiattach: v.multiattach === 1 }
    })
  })
}

/** The server was built: its volumes are in-use, their attachments attached. Inside the result's transaction. */
export async function builtWithVolumes(trx: Trx, uuid: string): Promise<void> {
  const rows = await trx.selectFrom('volume_attachments').selectAll().where('server_id', '=', uuid).where('status', '=', 'attaching').where('pending_cast_id', '=', '').execute()
  const ts = now()
  for (const a of rows) {
    const v = await trx.selectFrom('volumes').select(['id', 'status']).where('id', '=', a.volume_id).executeTakeFirst()
    if (v?.status === 'attaching') await moveVolume(trx, v, 'in-use')
    await moveAttachment(trx, a, 'attached', { attached_at: ts })
  }
}

/**
 * Server `uuid` failed to build or was deleted: every attachment goes, its
 * volumes are free again, and those marked delete_on_termination go to
 * deleting with their delete cast pending. Inside the result's transaction;
 * returns the volumes whose deletes are to be sent (ServerVolumes.sendDeletes).
 * One that cannot be deleted now (it has snapshots) stays, available.
 */
export async function releaseServerVolumes(trx: Trx, uuid: string, log: Log): Promise<VolumeTable[]> {
  const doomed = (await trx.selectFrom('volume_attachments').select('volume_id').where('server_id', '=', uuid).where('delete_on_termination', '=', 1).execute()).map((a) => a.volume_id)
  await releaseServerAttachments(trx, uuid)
  const out: VolumeTable[] = []
  for (const id of doomed) {
    const v = await trx.selectFrom('volumes').selectAll().where('id', '=', id).executeTakeFirst()
    if (!v) continue
    const snaps = await trx.selectFrom('volume_snapshots').select('id').where('volume_id', '=', id).execute()
    if (!DELETABLE.includes(v.status) || snaps.length) {
      log.warn({ volume: id, instance: uuid, status: v.status, snapshots: snaps.length }, 'volume of a deleted server not deleted (delete_on_termination): it has snapshots or is busy')
      continue
    }
    const next: VolumeTable = { ...v, status: 'deleting', status_reason: '', ...pendingCast('delete', v.id, undefined), updated_at: now() }
    await moveVolume(trx, v, 'deleting')
    await trx.updateTable('volumes').set(next).where('id', '=', v.id).execute()
    out.push(next)
  }
  return out
}
