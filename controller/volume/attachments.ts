/**
 * Volume attachments: Cinder's attachment records and Nova's
 * os-volume_attachments on top of them. An attachment has its own status
 * (`states.ts`: reserved → attaching → attached → detaching → gone; error
 * when the host could not attach) and moves its volume through the volume
 * table (available → reserved → attaching → in-use → detaching → available;
 * a multiattach volume is reserved again from in-use). Each check and write
 * happens in one transaction; the attach or detach is then cast to the host
 * of the server (the durable outbox of `casts.ts`), and the host's result
 * completes it here: the volume in-use or available again, a failure kept
 * on the attachment and as the server's fault.
 *
 * Where the data is: a server of the host the volume's backend runs on
 * attaches the backend's file; a server of another host attaches it over
 * the network (the attach cast names the volume's host; the server's agent
 * asks the conductor, which checks the attachment and has the volume's host
 * export it: `exportHost`, NBD over TLS). The volume host's start-up sync
 * ends exports no attachment needs (`unwantedExports`); the sweep ends the
 * export of an attach it gives up on at once.
 * Availability zones: Nova's `cross_az_attach` is True by default, so zones
 * are not compared.
 */
import { randomUUID } from 'node:crypto'
import { AlreadyExists, Conflict, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import { forUpdate } from '../store/engine.js'
import { parseAttachCastId, volumeSerial } from '../../proto/volume-attach.js'
import { parseVolumeCastId, type VolumeWork } from '../../proto/volume-work.js'
import type { VolumeAttachWork } from '../../proto/volume-attach.js'
import type { ExportRef } from '../../proto/volume-export.js'
import type { Db } from '../store/db.js'
import type { ServerTable, VolumeAttachmentTable, VolumeTable } from '../store/schema.js'
import type { Trx } from '../quota/quota.js'
import type { CastResultEvent } from '../compute/transport.js'
import { checkVolumeAction } from '../compute/server-states.js'
import { now, type Log } from '../compute/server-model.js'
import { LIVE_ATTACHMENT, attachOutcome, beginVolumeAction, checkAttachmentTransition, checkVolumeTransition, type AttachmentStatus, type VolumeStatus } from './states.js'
import { NO_CAST, attachWork, pendingAttachCast, volumeHostOf, volumeWork, type AttachmentCasts } from './casts.js'
import { checkWriter, findRow, type VolumeAttachmentView, type VolumeCaller } from './model.js'

/** An attachment as the Attachments service shows it. */
export interface AttachmentView {
  id: string
  volumeId: string
  serverId: string
  status: string
  /** /dev/vdX */
  device: string
  hostName: string
  attachMode: string
  statusReason: string
  attachedAt: Date | undefined
  createdAt: Date
  updatedAt: Date
  projectId: string
}


/** A server's volume (Nova's volumeAttachment). */
export interface ServerVolumeView {
  id: string
  serverId: string
  volumeId: string
  device: string
  attachmentId: string
  status: string
  /** Whether deleting the server deletes the volume (Nova's BDM delete_on_termination). */
  deleteOnTermination: boolean
}

/** A volume disk of a guest, as an agent reports it (and, when returned to detach, the volume its serial names or ''). */
export interface HostVolumeDisk {
  instanceUuid: string
  device: string
  serial: string
  volumeId: string
}

/** Work pending on a host, to resume (a cast as the outbox sends it). */
export interface PendingHostCast {
  id: string
  requestId: string
  volumeAttach?: VolumeAttachWork
  volume?: VolumeWork
}

/** vdb…vdz: vda is the root disk (the config drive is a CD-ROM, hdd or sda, never vdX). */
const VOLUME_DEVICES = Array.from({ length: 25 }, (_, i) => `vd${String.fromCharCode(98 + i)}`)

const devPath = (device: string) => `/dev/${device}`

/** `/dev/vdX` or `vdX` → `vdX`. @throws InvalidArgument for anything else (or vda, the root disk). */
export function checkDevice(given: string): string {
  const d = given.startsWith('/dev/') ? given.slice('/dev/'.length) : given
  if (d === 'vda') throw new InvalidArgument(`device ${given} is the server's root disk; volumes attach as /dev/vdb to /dev/vdz`, { field: 'device' })
  if (!VOLUME_DEVICES.includes(d)) throw new InvalidArgument(`device must be /dev/vdb to /dev/vdz (virtio disks), got '${given}'`, { field: 'device' })
  return d
}

export function attachmentView(a: VolumeAttachmentTable, caller: VolumeCaller): AttachmentView {
  return {
    id: a.id, volumeId: a.volume_id, serverId: a.server_id, status: a.status, device: devPath(a.device), hostName: caller.isAdmin ? a.host : '', attachMode: a.attach_mode,
    statusReason: a.status_reason, attachedAt: a.attached_at ? new Date(a.attached_at) : undefined, createdAt: new Date(a.created_at), updatedAt: new Date(a.updated_at), projectId: a.project_id,
  }
}

function serverVolumeView(a: VolumeAttachmentTable): ServerVolumeView {
  return { id: a.volume_id, serverId: a.server_id, volumeId: a.volume_id, device: devPath(a.device), attachmentId: a.id, status: a.status, deleteOnTermination: a.delete_on_termination === 1 }
}

/**
 * The attached attachments of these volumes, by volume (for volume views): as
 * in Cinder's view, a reservation or an attach under way is not shown yet, so
 * a client that waits for its server in a volume's `attachments` (Tempest's
 * multiattach tests) then finds the volume in-use, ready to attach again.
 */
export async function attachmentsOfVolumes(db: Trx, volumeIds: string[]): Promise<Map<string, VolumeAttachmentView[]>> {
  const out = new Map<string, VolumeAttachmentView[]>()
  if (!volumeIds.length) return out
  const rows = await db.selectFrom('volume_attachments').selectAll().where('volume_id', 'in', volumeIds).where('status', '=', 'attached').orderBy('created_at').execute()
  for (const a of rows) {
    const list = out.get(a.volume_id) ?? []
    list.push({ id: a.volume_id, attachmentId: a.id, volumeId: a.volume_id, serverId: a.server_id, hostName: a.host, device: devPath(a.device), attachedAt: a.attached_at ? new Date(a.attached_at) : undefined })
    out.set(a.volume_id, list)
  }
  return out
}

/** How many live attachments the volume has. */
export function liveAttachments(trx: Trx, volumeId: string): Promise<number> {
  return othersLive(trx, volumeId, '')
}

/** The servers an extend of the volume must tell the new size: its attached ones. */
export async function attachedDisks(trx: Trx, volumeId: string): Promise<Array<{ instanceUuid: string; device: string; volumeId: string }>> {
  // Servers of other hosts attach it over the network: they learn the size from an extend_volume cast once the backend grew it.
  const rows = await trx.selectFrom('volume_attachments').innerJoin('volumes', 'volumes.id', 'volume_attachments.volume_id').select(['volume_attachments.server_id', 'volume_attachments.device'])
    .where('volume_attachments.volume_id', '=', volumeId).whereRef('volume_attachments.host', '=', 'volumes.host').where('volume_attachments.status', 'in', ['attached', 'attaching', 'detaching']).execute()
  return rows.map((r) => ({ instanceUuid: r.server_id, device: r.device, volumeId }))
}

/**
 * What a delete of snapshot `snap` must tell the volume's host: the servers
 * of that host attached to the volumes that may rest on it (the snapshotted
 * volume, and those made from it), with the volume each has; the host's
 * files show which ones do.
 */
export async function snapshotDependentDisks(trx: Trx, snap: { id: string; volume_id: string }): Promise<Array<{ instanceUuid: string; device: string; volumeId: string }>> {
  const made = await trx.selectFrom('volumes').select('id').where('snapshot_id', '=', snap.id).execute()
  const out = []
  for (const id of [snap.volume_id, ...made.map((v) => v.id)]) out.push(...(await attachedDisks(trx, id)))
  return out
}

/** How many live attachments the volume has besides `except`. */
async function othersLive(trx: Trx, volumeId: string, except: string): Promise<number> {
  const r = await trx.selectFrom('volume_attachments').select((eb) => eb.fn.countAll<number>().as('n')).where('volume_id', '=', volumeId).where('id', '!=', except).where('status', 'in', [...LIVE_ATTACHMENT]).executeTakeFirst()
  return Number(r?.n ?? 0)
}

/** Moves a volume to `to` (checked against the table) if it still has status `from`. */
export async function moveVolume(trx: Trx, v: { id: string; status: string }, to: VolumeStatus): Promise<void> {
  if (v.status === to) return
  checkVolumeTransition(v.status, to)
  const r = await trx.updateTable('volumes').set({ status: to, status_reason: '', updated_at: now() }).where('id', '=', v.id).where('status', '=', v.status).executeTakeFirst()
  if (Number(r.numUpdatedRows) !== 1) throw new Conflict(`volume ${v.id} changed while this request ran; try again`)
}

/** An attachment's row with its status moved (checked) and the given fields. */
export async function moveAttachment(trx: Trx, a: VolumeAttachmentTable, to: AttachmentStatus, set: Partial<VolumeAttachmentTable> = {}): Promise<VolumeAttachmentTable> {
  checkAttachmentTransition(a.status, to)
  const next: VolumeAttachmentTable = { ...a, status: to, ...set, updated_at: now() }
  await trx.updateTable('volume_attachments').set(next).where('id', '=', a.id).execute()
  return next
}

/**
 * A deleted server's attachments go with it (Nova's local cleanup of its
 * block device mappings): every one is removed and each volume is available
 * again, or stays in-use when another server still has it (multiattach).
 * Called in the transaction that marks the server deleted. Returns the
 * volumes freed.
 */
export async function releaseServerAttachments(trx: Trx, serverUuid: string): Promise<string[]> {
  const rows = await trx.selectFrom('volume_attachments').selectAll().where('server_id', '=', serverUuid).execute()
  if (!rows.length) return []
  await trx.deleteFrom('volume_attachments').where('server_id', '=', serverUuid).execute()
  const freed: string[] = []
  for (const volumeId of new Set(rows.filter((a) => (LIVE_ATTACHMENT as readonly string[]).includes(a.status)).map((a) => a.volume_id))) {
    const v = await trx.selectFrom('volumes').select(['id', 'status']).where('id', '=', volumeId).executeTakeFirst()
    // An extend or an admin's state in between keeps its status; the extend's result looks at attachments again.
    if (!v || !['reserved', 'attaching', 'in-use', 'detaching'].includes(v.status)) continue
    const to: VolumeStatus = (await othersLive(trx, volumeId, '')) > 0 ? 'in-use' : 'available'
    await moveVolume(trx, v, to)
    freed.push(volumeId)
  }
  return freed
}

export interface AttachmentDeps {
  casts: AttachmentCasts
  /**
   * Ends the network export of volume `volumeId` for `host` on the volume's
   * host `volumeHost` (its agent's request subject). Absent (no bus): exports
   * end at the volume host's next start-up sync.
   */
  unexport?: (volumeHost: string, volumeId: string, host: string) => Promise<void>
}

export class AttachmentCatalog {
  constructor(
    private readonly db: Db,
    private readonly deps: AttachmentDeps,
    private readonly log: Log,
  ) {}

  // ------------------------------------------------------------ Cinder's side

  /** Cinder attachment_create without a connector: the volume is reserved for the server, nothing is cast. */
  async reserve(req: { volumeId?: string; serverId?: string; device?: string }, caller: VolumeCaller): Promise<AttachmentView> {
    const a = await this.db.transaction().execute((trx) => this.reserveIn(trx, req, caller))
    this.log.info({ attachment: a.id, volume: a.volume_id, instance: a.server_id, device: a.device }, 'volume reserved for a server')
    return attachmentView(a, caller)
  }

  async get(id: string | undefined, caller: VolumeCaller): Promise<AttachmentView> {
    return attachmentView(await this.findAttachment(this.db, id, caller), caller)
  }

  async list(f: { allProjects?: boolean; volumeId?: string; serverId?: string }, caller: VolumeCaller): Promise<AttachmentView[]> {
    if (f.allProjects && !caller.isAdmin) throw new PermissionDenied('only cloud admins list the attachments of every project', { field: 'all_projects' })
    let q = this.db.selectFrom('volume_attachments').selectAll().orderBy('created_at').orderBy('id')
    if (!f.allProjects) q = q.where('project_id', '=', caller.projectId ?? '')
    if (f.volumeId) q = q.where('volume_id', '=', (await findRow(this.db, 'volumes', f.volumeId, caller, 'volume_id')).id)
    if (f.serverId) q = q.where('server_id', '=', f.serverId)
    return (await q.execute()).map((a) => attachmentView(a, caller))
  }

  /**
   * Cinder attachment_delete: a reservation or a failed attachment goes at
   * once; an attached one is detached from its server first (never only
   * forgotten: the hypervisor and the API must not disagree).
   */
  async remove(id: string | undefined, caller: VolumeCaller): Promise<AttachmentView> {
    const r = await this.db.transaction().execute(async (trx) => {
      const a = await this.findAttachment(trx, id, caller)
      checkWriter(a, caller, 'attachment')
      if (a.status === 'reserved' || a.status === 'error') {
        await this.dropIn(trx, a)
        return { a, cast: false }
      }
      if (a.status !== 'attached') throw new FailedPrecondition(`attachment ${a.id} is ${a.status}; wait until it is attached or in error`)
      return { a: await this.beginDetachIn(trx, a, caller), cast: true }
    })
    if (r.cast) await this.deps.casts.send(r.a)
    this.log.info({ attachment: r.a.id, volume: r.a.volume_id, instance: r.a.server_id }, r.cast ? 'attachment delete: detach cast' : 'attachment deleted')
    return attachmentView(r.cast ? r.a : { ...r.a, updated_at: now() }, caller)
  }

  // ------------------------------------------------------------ Nova's side

  /**
   * Nova attach_volume: reserves the volume, picks the device, casts attach_volume to the server's host.
   * `multiattach: false` refuses a multiattach volume (Nova before compute API 2.60).
   */
  async attach(req: { serverId?: string; volumeId?: string; device?: string; deleteOnTermination?: boolean; multiattach?: boolean }, caller: VolumeCaller): Promise<ServerVolumeView> {
    const a = await this.db.transaction().execute(async (trx) => {
      const reserved = await this.reserveIn(trx, req, caller)
      const v = await trx.selectFrom('volumes').select(['id', 'status', 'multiattach']).where('id', '=', reserved.volume_id).executeTakeFirstOrThrow()
      if (v.multiattach === 1 && req.multiattach === false) throw new FailedPrecondition(`volume ${v.id} is a multiattach volume: those are attached from compute API microversion 2.60 on`, { field: 'volume_id' })
      await moveVolume(trx, v, 'attaching')
      return moveAttachment(trx, reserved, 'attaching', pendingAttachCast('attach_volume', reserved.id, caller.requestId))
    })
    await this.deps.casts.send(a)
    this.log.info({ attachment: a.id, volume: a.volume_id, instance: a.server_id, host: a.host, device: a.device }, 'attach_volume cast')
    return serverVolumeView(a)
  }

  /** Nova detach_volume: the volume detaching, detach_volume cast to the server's host. */
  async detach(req: { serverId?: string; volumeId?: string }, caller: VolumeCaller): Promise<void> {
    const r = await this.db.transaction().execute(async (trx) => {
      const server = await this.findServer(trx, req.serverId, caller)
      const volume = await findRow(trx, 'volumes', req.volumeId, caller, 'volume_id')
      const a = await trx.selectFrom('volume_attachments').selectAll().where('server_volume', '=', `${server.uuid}/${volume.id}`).executeTakeFirst()
      if (!a) throw new NotFound(`volume ${volume.id} is not attached to server ${server.uuid}`, { field: 'volume_id' })
      // Nova: "Can't detach root device volume".
      if (a.boot_index === 0) throw new FailedPrecondition(`volume ${volume.id} is the root disk (/dev/${a.device}) of server ${server.uuid}, which boots from it; a root volume is not detached, it goes when the server is deleted`, { field: 'volume_id' })
      if (a.status === 'reserved') {
        await this.dropIn(trx, a)
        return { a, cast: false }
      }
      if (a.status !== 'attached') throw new FailedPrecondition(`volume ${volume.id} is ${a.status === 'attaching' ? 'still being attached to' : 'being detached from'} server ${server.uuid}; wait for that to finish`, { field: 'volume_id' })
      return { a: await this.beginDetachIn(trx, a, caller, server), cast: true }
    })
    if (r.cast) await this.deps.casts.send(r.a)
    this.log.info({ attachment: r.a.id, volume: r.a.volume_id, instance: r.a.server_id, host: r.a.host }, r.cast ? 'detach_volume cast' : 'volume reservation dropped')
  }

  /**
   * Nova's PUT os-volume_attachments/{volume} (2.85): whether deleting the
   * server deletes the volume. Any live attachment may change it, the root
   * volume's too (Nova's BDM); the server's view shows it at once.
   */
  async setDeleteOnTermination(req: { serverId?: string; volumeId?: string; deleteOnTermination: boolean }, caller: VolumeCaller): Promise<ServerVolumeView> {
    const a = await this.db.transaction().execute(async (trx) => {
      const server = await this.findServer(trx, req.serverId, caller)
      if (!caller.isAdmin && !(caller.canWrite && server.project_id === caller.projectId)) throw new PermissionDenied(`server ${server.uuid} can be changed only by members of its project or a cloud admin`)
      const a = await trx.selectFrom('volume_attachments').selectAll().where('server_volume', '=', `${server.uuid}/${req.volumeId}`).where('status', 'in', [...LIVE_ATTACHMENT]).executeTakeFirst()
      if (!a) throw new NotFound(`volume ${req.volumeId} is not attached to server ${server.uuid}`, { field: 'volume_id' })
      const flag = req.deleteOnTermination ? 1 : 0
      if (a.delete_on_termination === flag) return a
      const updated_at = now()
      await trx.updateTable('volume_attachments').set({ delete_on_termination: flag, updated_at }).where('id', '=', a.id).execute()
      return { ...a, delete_on_termination: flag, updated_at }
    })
    this.log.info({ attachment: a.id, volume: a.volume_id, instance: a.server_id, deleteOnTermination: req.deleteOnTermination }, 'attachment delete_on_termination set')
    return serverVolumeView(a)
  }

  /** Nova's os-volume_attachments list: the server's live attachments. */
  async serverVolumes(serverRef: string | undefined, caller: VolumeCaller): Promise<ServerVolumeView[]> {
    const server = await this.findServer(this.db, serverRef, caller)
    const rows = await this.db.selectFrom('volume_attachments').selectAll().where('server_id', '=', server.uuid).where('status', 'in', [...LIVE_ATTACHMENT]).orderBy('device').execute()
    return rows.map(serverVolumeView)
  }

  // ------------------------------------------------------------ results

  /**
   * A host's result of an attach or detach (true when `r` was one): applied
   * only to the attachment still waiting for that cast, from its server's
   * host; anything else is stale or forged and ignored.
   */
  async apply(r: CastResultEvent): Promise<boolean> {
    const p = parseAttachCastId(r.castId)
    if (!p) return false
    const reason = r.ok ? '' : `${r.errorCode || 'INTERNAL'}: ${r.message || 'the host failed'}`
    const applied = await this.db.transaction().execute(async (trx) => {
      const a = await forUpdate(trx, trx.selectFrom('volume_attachments').selectAll().where('id', '=', p.attachmentId)).executeTakeFirst()
      if (!a || a.pending_cast_id !== r.castId) {
        this.log.debug({ cast: r.castId, waitingFor: a?.pending_cast_id }, 'stale attachment cast result ignored')
        return false
      }
      if (a.host !== r.host) {
        this.log.warn({ cast: r.castId, host: r.host, serverHost: a.host }, `attachment cast result ignored: host '${r.host}' reported on a server of '${a.host}'`)
        return false
      }
      if (p.op === 'extend_volume') {
        // As Nova's volume-extended event: the volume is extended either way; a guest that did not
        // learn the size says so in its server's fault (it sees the size when it next starts).
        await trx.updateTable('volume_attachments').set({ ...NO_CAST, updated_at: now() }).where('id', '=', a.id).execute()
        if (!r.ok) await trx.updateTable('servers').set({ fault_code: r.errorCode || 'INTERNAL', fault_message: `the guest did not learn the new size of volume ${a.volume_id}: ${r.message || 'the host failed'}`, fault_at: now() }).where('uuid', '=', a.server_id).execute()
        return true
      }
      const o = attachOutcome(p.op, r.ok, (await othersLive(trx, a.volume_id, a.id)) > 0)
      if (a.status !== o.while) return false
      const ts = now()
      if (o.attachment === 'deleted') await trx.deleteFrom('volume_attachments').where('id', '=', a.id).execute()
      else {
        await moveAttachment(trx, a, o.attachment, {
          ...NO_CAST, status_reason: reason,
          ...(o.attachment === 'attached' && p.op === 'attach_volume' ? { attached_at: ts } : {}),
          // A failed attachment holds neither the device nor the volume.
          ...(o.attachment === 'error' ? { server_device: null, server_volume: null } : {}),
        })
      }
      const v = await trx.selectFrom('volumes').select(['id', 'status']).where('id', '=', a.volume_id).executeTakeFirst()
      // A reset-state in between wins over this result for the volume.
      if (v && v.status === (p.op === 'attach_volume' ? 'attaching' : 'detaching')) await moveVolume(trx, v, o.volume)
      // Nova records a failed attach or detach as an instance fault; the server's state stays.
      if (!r.ok) await trx.updateTable('servers').set({ fault_code: r.errorCode || 'INTERNAL', fault_message: `${p.op === 'attach_volume' ? 'attaching' : 'detaching'} volume ${a.volume_id} failed: ${r.message || 'the host failed'}`, fault_at: ts }).where('uuid', '=', a.server_id).execute()
      return true
    })
    if (applied) this.log.info({ attachment: p.attachmentId, volume: r.volumeId, instance: r.instanceUuid, host: r.host, ok: r.ok, ...(r.ok ? {} : { reason }) }, `${p.op} ${r.ok ? 'done' : 'failed'}`)
    return true
  }

  /**
   * An attach or detach cast to a server's host that is down (`isUp` false)
   * and pending since before `before` ends as that cast's failure, with a
   * reason naming the host (Nova's fault on the server, the attachment in
   * error or attached again): no attachment or volume waits forever in
   * attaching or detaching for an agent that does not come back. When the
   * agent does, its start-up sync makes libvirt and these records agree.
   * An attach given up on also ends its network export at once (`endExport`).
   * Returns how many it ended.
   */
  async sweep(before: string, isUp: (host: string) => boolean, stuckAfterMs: number): Promise<number> {
    const rows = await this.db.selectFrom('volume_attachments').select(['id', 'host', 'server_id', 'volume_id', 'pending_cast_id'])
      .where('pending_cast_id', '!=', '').where('updated_at', '<', before).execute()
    let ended = 0
    for (const a of rows) {
      if (!a.host || isUp(a.host)) continue
      const op = parseAttachCastId(a.pending_cast_id)?.op
      // The news of an extend waits for the host as long as it takes (a durable cast, as Nova's event to a compute that is down).
      if (!op || op === 'extend_volume') continue
      this.log.warn({ attachment: a.id, volume: a.volume_id, instance: a.server_id, host: a.host, cast: a.pending_cast_id }, `${op} stuck on a host that is down: ended as failed`)
      await this.apply({
        castId: a.pending_cast_id, host: a.host, ok: false, errorCode: 'UNAVAILABLE', powerState: 0, instanceUuid: a.server_id, action: op, volumeId: a.volume_id, snapshotId: '',
        message: `host '${a.host}' is down and did not finish ${op === 'attach_volume' ? 'the attach' : 'the detach'} within ${Math.round(stuckAfterMs / 1000)} s; its agent will not be waited for`,
      })
      ended++
      if (op === 'attach_volume') await this.endExport(a.host, a.volume_id, isUp)
    }
    return ended
  }

  /**
   * An attach given up on may have had its export made (the server's agent
   * asked, then died): the volume host ends it now, so nothing reaches a
   * volume the API says is available (the host's start-up sync would, but
   * only when it starts). Nothing when another attachment on `host` still
   * needs it, the volume is the host's own, or the volume host is down too.
   */
  private async endExport(host: string, volumeId: string, isUp: (host: string) => boolean): Promise<void> {
    if (!this.deps.unexport) return
    const volumeHost = await this.exportHost(host, volumeId, true)
    if (!volumeHost || volumeHost === host || !isUp(volumeHost)) return
    try {
      await this.deps.unexport(volumeHost, volumeId, host)
      this.log.info({ volume: volumeId, host: volumeHost, for: host }, 'attach given up on: its network export ended')
    } catch (err) {
      this.log.warn({ volume: volumeId, host: volumeHost, for: host, err }, 'attach given up on: its network export could not be ended now; the volume host\'s start-up sync ends it')
    }
  }

  /**
   * An agent's start-up sync (`disks`: the volume disks libvirt has on the
   * guests `seen` of `host`). Libvirt is the truth for what is attached: an
   * attachment recorded attached (nothing pending) whose disk is not in its
   * guest is removed, its volume available again (or in-use when another
   * server still holds it), with the server's fault saying so. A disk that no
   * live attachment asks for (the API gave up on its attach, or never made
   * it) is returned to be detached. The attach, detach and volume work
   * pending on the host is returned to be resumed at once.
   */
  async syncHost(host: string, seen: string[], disks: HostVolumeDisk[]): Promise<{ detach: HostVolumeDisk[]; resume: PendingHostCast[] }> {
    const guests = new Set(seen)
    const r = await this.db.transaction().execute(async (trx) => {
      const rows = await trx.selectFrom('volume_attachments').selectAll().where('host', '=', host).execute()
      const onDisk = (a: VolumeAttachmentTable) => disks.some((d) => d.instanceUuid === a.server_id && d.serial === volumeSerial(a.volume_id))
      const lost: VolumeAttachmentTable[] = []
      for (const a of rows) {
        if (a.status !== 'attached' || a.pending_cast_id || !guests.has(a.server_id) || onDisk(a)) continue
        checkAttachmentTransition(a.status, 'deleted')
        await trx.deleteFrom('volume_attachments').where('id', '=', a.id).execute()
        const v = await trx.selectFrom('volumes').select(['id', 'status']).where('id', '=', a.volume_id).executeTakeFirst()
        if (v?.status === 'in-use') await moveVolume(trx, v, (await othersLive(trx, v.id, a.id)) > 0 ? 'in-use' : 'available')
        await trx.updateTable('servers').set({ fault_code: 'NOT_FOUND', fault_message: `volume ${a.volume_id} was not attached to the guest on host '${host}' when its agent started (libvirt has no such disk on ${devPath(a.device)}); the attachment was removed`, fault_at: now() }).where('uuid', '=', a.server_id).execute()
        lost.push(a)
      }
      const detach: HostVolumeDisk[] = []
      for (const d of disks) {
        const a = rows.find((x) => x.server_id === d.instanceUuid && volumeSerial(x.volume_id) === d.serial && (['attached', 'attaching', 'detaching'] as string[]).includes(x.status))
        if (a) continue
        const v = /^[0-9a-f-]{20}$/.test(d.serial) ? await trx.selectFrom('volumes').select('id').where('id', 'like', `${d.serial}%`).limit(2).execute() : []
        detach.push({ ...d, volumeId: v.length === 1 ? v[0]!.id : '' })
      }
      const resume: PendingHostCast[] = []
      for (const a of rows) {
        const p = a.pending_cast_id && (['attaching', 'detaching', 'attached'] as string[]).includes(a.status) ? parseAttachCastId(a.pending_cast_id) : undefined
        if (p) resume.push({ id: a.pending_cast_id, requestId: a.pending_request_id, volumeAttach: attachWork(p.op, a, await volumeHostOf(trx, a.volume_id)) })
      }
      const vols = await trx.selectFrom('volumes').selectAll().where('host', '=', host).where('pending_cast_id', '!=', '').execute()
      for (const v of vols) {
        const p = parseVolumeCastId(v.pending_cast_id)
        if (p) resume.push({ id: v.pending_cast_id, requestId: v.pending_request_id, volume: volumeWork(p.op, v, p.op === 'extend' ? await attachedDisks(trx, v.id) : []) })
      }
      return { lost, detach, resume }
    })
    for (const a of r.lost) this.log.warn({ attachment: a.id, volume: a.volume_id, instance: a.server_id, host }, 'attachment removed: its disk is not in the guest (agent start-up sync)')
    if (r.detach.length) this.log.warn({ host, disks: r.detach }, 'volume disks no attachment asks for: the agent detaches them')
    return { detach: r.detach, resume: r.resume }
  }

  /**
   * Whether `host` may have volume `volumeId` exported to it, or (`unexport`)
   * have that export ended; returns the host of the volume's backend, which
   * does it ('' for an unexport another attachment on `host` still needs:
   * nothing to do). An export needs an attachment of the volume to a server
   * of `host` being attached or attached; an unexport, none left in those
   * states (one being detached is what asks).
   * @throws NotFound naming the volume when no attachment on `host` needs it.
   */
  async exportHost(host: string, volumeId: string, unexport: boolean): Promise<string> {
    const v = isUuid(volumeId) ? await this.db.selectFrom('volumes').select(['id', 'host']).where('id', '=', volumeId).executeTakeFirst() : undefined
    if (!v || !v.host) {
      if (unexport) return ''
      throw new NotFound(`volume ${volumeId} not found, or it has no host`, { field: 'volume_id' })
    }
    // A server being deleted no longer needs its volumes (its host ends their exports as it goes).
    const using = await this.db.selectFrom('volume_attachments').innerJoin('servers', 'servers.uuid', 'volume_attachments.server_id')
      .select(['volume_attachments.id']).where('volume_attachments.volume_id', '=', v.id).where('volume_attachments.host', '=', host)
      .where('volume_attachments.status', 'in', ['attaching', 'attached']).where('servers.deleted', '=', 0).where('servers.task_state', '!=', 'deleting').execute()
    if (unexport) return using.length ? '' : v.host
    if (!using.length) throw new NotFound(`no server of host '${host}' is being attached volume ${volumeId}, so it is not exported to that host`, { field: 'volume_id' })
    return v.host
  }

  /**
   * An agent's start-up sync of the network exports its volume backend
   * serves (`exports`): those no attachment needs any more (its server is
   * deleted, detached, or its attach failed while a host was down) are
   * returned, to be ended.
   */
  async unwantedExports(volumeHost: string, exports: ExportRef[]): Promise<ExportRef[]> {
    if (!exports.length) return []
    const live = await this.db.selectFrom('volume_attachments').innerJoin('volumes', 'volumes.id', 'volume_attachments.volume_id')
      .select(['volume_attachments.volume_id as volumeId', 'volume_attachments.host as host'])
      .where('volumes.host', '=', volumeHost).where('volume_attachments.status', 'in', ['reserved', 'attaching', 'attached', 'detaching']).execute()
    const wanted = new Set(live.map((a) => `${a.volumeId}/${a.host}`))
    const unwanted = exports.filter((e) => !wanted.has(`${e.volumeId}/${e.host}`))
    if (unwanted.length) this.log.warn({ host: volumeHost, exports: unwanted }, 'volume exports no attachment needs: the volume host ends them')
    return unwanted
  }

  /**
   * Volume `volumeId` of host `volumeHost` has grown (its extend is done,
   * inside `trx`): each server of another host that has it attached is
   * told, by an extend_volume cast recorded on its attachment (Nova's
   * volume-extended event to the server's compute host), so that its QEMU,
   * which reads the volume over the network, learns the new size. Returns
   * the attachments to send the casts of once `trx` commits ({@link sendCasts}).
   */
  async extendedIn(trx: Trx, volumeId: string, volumeHost: string, requestId: string): Promise<VolumeAttachmentTable[]> {
    const rows = await trx.selectFrom('volume_attachments').selectAll().where('volume_id', '=', volumeId).where('status', '=', 'attached').where('host', '!=', volumeHost).where('host', '!=', '').execute()
    const told: VolumeAttachmentTable[] = []
    for (const a of rows) {
      const next = { ...a, ...pendingAttachCast('extend_volume', a.id, requestId), updated_at: now() }
      await trx.updateTable('volume_attachments').set(next).where('id', '=', a.id).execute()
      told.push(next)
    }
    return told
  }

  /** Sends the pending casts of `rows` (on failure they stay pending: the outbox sends them again). */
  async sendCasts(rows: VolumeAttachmentTable[]): Promise<void> {
    for (const a of rows) await this.deps.casts.send(a)
  }

  // ------------------------------------------------------------ internals

  /**
   * Checks everything an attachment needs and records it reserved (the
   * volume reserved too), inside `trx`.
   */
  private async reserveIn(trx: Trx, req: { volumeId?: string; serverId?: string; device?: string; deleteOnTermination?: boolean }, caller: VolumeCaller): Promise<VolumeAttachmentTable> {
    const asked = req.device ? checkDevice(req.device) : undefined
    const server = await this.findServer(trx, req.serverId, caller)
    if (!caller.isAdmin && !(caller.canWrite && server.project_id === caller.projectId)) throw new PermissionDenied(`server ${server.uuid} can be changed only by members of its project or a cloud admin`)
    const volume = await findRow(trx, 'volumes', req.volumeId, caller, 'volume_id')
    checkWriter(volume, caller, 'volume')
    if (volume.project_id !== server.project_id) {
      throw new FailedPrecondition(`volume ${volume.id} belongs to project ${volume.project_id} and server ${server.uuid} to project ${server.project_id}; a volume attaches only to servers of its own project`)
    }
    checkVolumeAction('attach_volume', server)
    const twice = await trx.selectFrom('volume_attachments').select(['device', 'status']).where('server_volume', '=', `${server.uuid}/${volume.id}`).executeTakeFirst()
    if (twice) throw new AlreadyExists(`volume ${volume.id} is already attached to server ${server.uuid} as ${devPath(twice.device)} (${twice.status})`, { field: 'volume_id' })
    const reservedStatus = await this.checkVolumeFree(trx, volume)
    // A volume of another host than the server's is attached over the network (its host exports it).
    if (!volume.host) throw new FailedPrecondition(`volume ${volume.id} has no host (no volume backend made it), so there is nothing to attach`, { field: 'volume_id' })
    const taken = new Set((await trx.selectFrom('volume_attachments').select('device').where('server_id', '=', server.uuid).where('status', 'in', [...LIVE_ATTACHMENT]).execute()).map((r) => r.device))
    let device: string
    if (asked) {
      device = asked
      if (taken.has(device)) throw new AlreadyExists(`device ${devPath(device)} of server ${server.uuid} is taken by another volume; pick another or leave it out`, { field: 'device' })
    } else {
      const free = VOLUME_DEVICES.find((d) => !taken.has(d))
      if (!free) throw new ResourceExhausted(`server ${server.uuid} has a volume on every device /dev/vdb to /dev/vdz; detach one first`)
      device = free
    }
    const ts = now()
    const a: VolumeAttachmentTable = {
      id: randomUUID(), volume_id: volume.id, server_id: server.uuid, host: server.host ?? '', device, status: 'reserved', status_reason: '', attach_mode: 'rw', delete_on_termination: req.deleteOnTermination ? 1 : 0, boot_index: -1,
      server_device: `${server.uuid}/${device}`, server_volume: `${server.uuid}/${volume.id}`, attached_at: null,
      project_id: server.project_id, user_id: caller.userId, ...NO_CAST, created_at: ts, updated_at: ts,
    }
    await moveVolume(trx, volume, reservedStatus)
    try {
      await trx.insertInto('volume_attachments').values(a).execute()
    } catch (err) {
      // The unique slots: a concurrent request took the device or attached the volume first.
      if (/unique|duplicate/i.test((err as Error).message)) throw new AlreadyExists(`volume ${volume.id} or device ${devPath(device)} of server ${server.uuid} was just taken by another request`, { cause: err })
      throw err
    }
    return a
  }

  /** @throws FailedPrecondition naming the volume's status (and its server, when attached and not multiattach). */
  private async checkVolumeFree(trx: Trx, volume: VolumeTable): Promise<VolumeStatus> {
    if (volume.status === 'in-use' && volume.multiattach !== 1) {
      const other = await trx.selectFrom('volume_attachments').select('server_id').where('volume_id', '=', volume.id).where('status', 'in', [...LIVE_ATTACHMENT]).executeTakeFirst()
      throw new FailedPrecondition(`cannot attach volume ${volume.id} while its status is in-use${other ? ` (attached to server ${other.server_id})` : ''}; its type does not allow multiattach, so it must be available`, { field: 'volume_id' })
    }
    return beginVolumeAction(volume.multiattach === 1 ? 'attach_multi' : 'attach', volume, 'volume_id')
  }

  /** Attached → detaching, the volume too, with the detach_volume cast pending. */
  private async beginDetachIn(trx: Trx, a: VolumeAttachmentTable, caller: VolumeCaller, server?: ServerTable): Promise<VolumeAttachmentTable> {
    const s = server ?? (await trx.selectFrom('servers').selectAll().where('uuid', '=', a.server_id).executeTakeFirst())
    if (s) checkVolumeAction('detach_volume', s)
    const v = await trx.selectFrom('volumes').select(['id', 'status']).where('id', '=', a.volume_id).executeTakeFirstOrThrow()
    if (v.status !== 'in-use') throw new FailedPrecondition(`cannot detach volume ${v.id} while its status is ${v.status}; detach needs status in-use`, { field: 'volume_id' })
    await moveVolume(trx, v, 'detaching')
    return moveAttachment(trx, a, 'detaching', pendingAttachCast('detach_volume', a.id, caller.requestId))
  }

  /** Removes a reservation or a failed attachment; a reservation gives its volume back. */
  private async dropIn(trx: Trx, a: VolumeAttachmentTable): Promise<void> {
    checkAttachmentTransition(a.status, 'deleted')
    await trx.deleteFrom('volume_attachments').where('id', '=', a.id).execute()
    if (a.status !== 'reserved') return
    const v = await trx.selectFrom('volumes').select(['id', 'status']).where('id', '=', a.volume_id).executeTakeFirstOrThrow()
    if (v.status === 'reserved') await moveVolume(trx, v, (await othersLive(trx, v.id, a.id)) > 0 ? 'in-use' : 'available')
  }

  private async findAttachment(db: Trx, id: string | undefined, caller: VolumeCaller): Promise<VolumeAttachmentTable> {
    if (!id) throw new InvalidArgument('an attachment id is required', { field: 'id' })
    const a = isUuid(id) ? await db.selectFrom('volume_attachments').selectAll().where('id', '=', id).executeTakeFirst() : undefined
    if (!a || (!caller.isAdmin && a.project_id !== caller.projectId)) throw new NotFound(`attachment '${id}' not found`, { field: 'id' })
    return a
  }

  /** The server `ref` names (id, or a name unique among what the caller sees); deleted servers are gone. */
  private async findServer(db: Trx, ref: string | undefined, caller: VolumeCaller): Promise<ServerTable> {
    if (!ref) throw new InvalidArgument('give the server id or name', { field: 'server_id' })
    let q = db.selectFrom('servers').selectAll().where('deleted', '=', 0)
    q = isUuid(ref) ? q.where('uuid', '=', ref) : q.where('name', '=', ref)
    if (!caller.isAdmin) q = q.where('project_id', '=', caller.projectId ?? '')
    const rows = await q.limit(2).execute()
    if (rows.length > 1) throw new Conflict(`several servers are named '${ref}'; use the id`, { field: 'server_id' })
    if (!rows[0]) throw new NotFound(`server ${ref} not found`, { field: 'server_id' })
    return rows[0]
  }
}
