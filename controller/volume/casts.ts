/**
 * The volume cast outbox (as `compute/cast-outbox.ts` for servers): a volume's
 * or snapshot's pending backend work is recorded on its row
 * (`pending_cast_id`, with the API call's request id) in the transaction that
 * changes its status; once JetStream has the cast, `cast_sent_at` is set. A
 * cast the bus did not take stays pending and `resend()` sends it again, on a
 * timer and at start-up (the shared `Outbox`); the work is rebuilt from the
 * row and the cast id.
 */
import { randomBytes } from 'node:crypto'
import { InvalidArgument } from '../../proto/errors.js'
import type { VolumeAttachmentTable, VolumeSnapshotTable, VolumeTable } from '../store/schema.js'
import type { Db } from '../store/db.js'
import { Outbox, type Claim } from '../compute/cast-outbox.js'
import { attachedDisks, snapshotDependentDisks } from './attachments.js'
import { isSnapshotOp, parseVolumeCastId, uploadImageOf, volumeCastId, type CastState, type VolumeOp, type VolumeWork } from '../../proto/volume-work.js'
import { attachCastId, parseAttachCastId, type AttachOp, type VolumeAttachWork } from '../../proto/volume-attach.js'

/** The row fields that record a new pending cast of `op` on volume or snapshot `id`. */
export function pendingCast(op: VolumeOp, id: string, requestId: string | undefined): { pending_cast_id: string; pending_request_id: string; cast_sent_at: null } {
  return { pending_cast_id: volumeCastId(op, id, randomBytes(4).toString('hex')), pending_request_id: requestId ?? '', cast_sent_at: null }
}

/** The row fields of a volume or snapshot with no work pending. */
export const NO_CAST = { pending_cast_id: '', pending_request_id: '', cast_sent_at: null } as const

/**
 * The work a volume's pending cast carries; `attached`: the servers an extend
 * tells the new size. An upload's image is the one its cast id names.
 */
export function volumeWork(op: VolumeOp, v: Pick<VolumeTable, 'id' | 'size' | 'pending_size' | 'source_volid' | 'snapshot_id' | 'image_id' | 'pending_cast_id'>, attached: VolumeWork['attached'] = []): VolumeWork {
  return {
    op, volumeId: v.id, snapshotId: '', sizeGb: op === 'extend' ? v.pending_size : v.size,
    sourceVolid: op === 'create' ? v.source_volid : '', sourceSnapshotId: op === 'create' ? v.snapshot_id : '',
    imageId: op === 'create' ? v.image_id : op === 'upload_image' ? uploadImageOf(v.pending_cast_id) ?? '' : '',
    attached: op === 'extend' ? attached : [],
  }
}

/**
 * The work a snapshot's pending cast carries; `attached`: the servers whose
 * running guests a create moves to the volume's new file, or a delete has
 * pull the snapshot's data into the files they have open.
 */
export function snapshotWork(op: VolumeOp, s: Pick<VolumeSnapshotTable, 'id' | 'volume_id' | 'size'>, attached: VolumeWork['attached'] = []): VolumeWork {
  return { op, volumeId: s.volume_id, snapshotId: s.id, sizeGb: s.size, sourceVolid: '', sourceSnapshotId: '', imageId: '', attached: isSnapshotOp(op) ? attached : [] }
}

export interface OutgoingVolumeCast {
  table: 'volumes' | 'volume_snapshots'
  /** The volume's or snapshot's id (the row the cast is pending on). */
  id: string
  host: string
  work: VolumeWork
  castId: string
  requestId: string
}

export class VolumeCasts extends Outbox {
  protected readonly what = 'volume casts'

  /** Queues a cast; on failure it stays pending and `resend()` tries again. */
  async send(c: OutgoingVolumeCast, claim: Claim = 'wait'): Promise<void> {
    await this.queue(c.host, { volume: c.work }, c.castId, c.requestId, { volume: c.work.volumeId }, { table: c.table, id: c.id }, claim)
  }

  protected async resendPending(): Promise<void> {
    const vols = await this.db.selectFrom('volumes').selectAll().where('pending_cast_id', '!=', '').where('cast_sent_at', 'is', null).execute()
    for (const v of vols) {
      const p = parseVolumeCastId(v.pending_cast_id)
      if (p && v.host) await this.send({ table: 'volumes', id: v.id, host: v.host, work: volumeWork(p.op, v, p.op === 'extend' ? await attachedDisks(this.db, v.id) : []), castId: v.pending_cast_id, requestId: v.pending_request_id }, 'skip')
    }
    const snaps = await this.db.selectFrom('volume_snapshots').innerJoin('volumes', 'volumes.id', 'volume_snapshots.volume_id')
      .select(['volume_snapshots.id', 'volume_snapshots.volume_id', 'volume_snapshots.size', 'volume_snapshots.pending_cast_id', 'volume_snapshots.pending_request_id', 'volumes.host'])
      .where('volume_snapshots.pending_cast_id', '!=', '').where('volume_snapshots.cast_sent_at', 'is', null).execute()
    for (const s of snaps) {
      const p = parseVolumeCastId(s.pending_cast_id)
      const attached = p?.op === 'create_snapshot' ? await attachedDisks(this.db, s.volume_id) : p?.op === 'delete_snapshot' ? await snapshotDependentDisks(this.db, s) : []
      if (p && s.host) await this.send({ table: 'volume_snapshots', id: s.id, host: s.host, work: snapshotWork(p.op, s, attached), castId: s.pending_cast_id, requestId: s.pending_request_id }, 'skip')
    }
  }
}

/** The row a volume-role cast is pending on, by its cast id: an attachment's, a snapshot's or a volume's. */
function castRowOf(castId: string): { table: 'volumes' | 'volume_snapshots' | 'volume_attachments'; kind: string; id: string } | undefined {
  const a = parseAttachCastId(castId)
  if (a) return { table: 'volume_attachments', kind: 'attachment', id: a.attachmentId }
  const v = parseVolumeCastId(castId)
  if (!v) return undefined
  return isSnapshotOp(v.op) ? { table: 'volume_snapshots', kind: 'snapshot', id: v.id } : { table: 'volumes', kind: 'volume', id: v.id }
}

/**
 * Whether `castId` — volume or snapshot work, an attach, a detach or an
 * extend_volume — is still the cast its row (the cast id names the
 * volume, snapshot or attachment) waits for on `host`. One that is not must
 * not run now: its result was applied already (JetStream redelivers a cast
 * whose ack was lost), newer work replaced it, the controller gave up on it
 * (the stuck sweep), or an admin reset the status. A row that is gone is
 * done with: volumes and snapshots go only when their delete's result says
 * the backend deleted them (or they never had one), attachments once
 * detached or dropped; so a delete whose row is gone has nothing left to do,
 * and one in progress (its row waits for it) runs.
 * @throws InvalidArgument when `castId` names no volume-role cast.
 */
export async function castState(db: Pick<Db, 'selectFrom'>, host: string, castId: string): Promise<CastState> {
  const row = castRowOf(castId)
  if (!row) throw new InvalidArgument(`'${castId}' is not a volume, snapshot or attachment cast id (volume_<op>.<id>.<nonce>, attach_volume, detach_volume, extend_volume)`, { field: 'cast_id' })
  const found = row.table === 'volume_snapshots'
    ? await db.selectFrom('volume_snapshots').innerJoin('volumes', 'volumes.id', 'volume_snapshots.volume_id').select(['volumes.host', 'volume_snapshots.pending_cast_id']).where('volume_snapshots.id', '=', row.id).executeTakeFirst()
    : await db.selectFrom(row.table).select(['host', 'pending_cast_id']).where('id', '=', row.id).executeTakeFirst()
  const what = `${row.kind} ${row.id}`
  if (!found) return { current: false, reason: `${what} no longer exists` }
  if (found.host !== host) return { current: false, reason: `${what} is on host '${found.host}', not '${host}'` }
  if (found.pending_cast_id !== castId) {
    return { current: false, reason: found.pending_cast_id ? `${what} waits for cast ${found.pending_cast_id} now` : `${what} waits for no cast (this one's result was applied, or the controller gave up on it)` }
  }
  return { current: true, reason: '' }
}

/** The row fields that record a new pending attach or detach cast on attachment `id`. */
export function pendingAttachCast(op: AttachOp, id: string, requestId: string | undefined): { pending_cast_id: string; pending_request_id: string; cast_sent_at: null } {
  return { pending_cast_id: attachCastId(op, id, randomBytes(4).toString('hex')), pending_request_id: requestId ?? '', cast_sent_at: null }
}

/** The work an attachment's pending cast carries (`volume`: the host of the volume's backend, and the volume's size). */
export function attachWork(op: AttachOp, a: Pick<VolumeAttachmentTable, 'id' | 'server_id' | 'volume_id' | 'device'>, volume: { host: string; size: number; multiattach: number }): VolumeAttachWork {
  return { op, attachmentId: a.id, instanceUuid: a.server_id, volumeId: a.volume_id, device: a.device, volumeHost: volume.host, sizeGb: op === 'extend_volume' ? volume.size : 0, multiattach: volume.multiattach === 1 }
}

/** The host of a volume's backend, its size and whether it is multiattach (host '' when the volume is gone). */
export async function volumeHostOf(db: Pick<Db, 'selectFrom'>, volumeId: string): Promise<{ host: string; size: number; multiattach: number }> {
  return (await db.selectFrom('volumes').select(['host', 'size', 'multiattach']).where('id', '=', volumeId).executeTakeFirst()) ?? { host: '', size: 0, multiattach: 0 }
}

/**
 * The outbox of attachments (as volumes'): an attach, a detach or the news
 * of an extend is recorded on the attachment's row and cast to the host of
 * its server.
 */
export class AttachmentCasts extends Outbox {
  protected readonly what = 'attachment casts'

  /** Queues the attachment's pending cast; on failure it stays pending and `resend()` tries again. */
  async send(a: Pick<VolumeAttachmentTable, 'id' | 'server_id' | 'volume_id' | 'device' | 'host' | 'pending_cast_id' | 'pending_request_id'>, claim: Claim = 'wait'): Promise<void> {
    const p = parseAttachCastId(a.pending_cast_id)
    if (!p || !a.host) return
    await this.queue(a.host, { volumeAttach: attachWork(p.op, a, await volumeHostOf(this.db, a.volume_id)) }, a.pending_cast_id, a.pending_request_id, { volume: a.volume_id, instance: a.server_id }, { table: 'volume_attachments', id: a.id }, claim)
  }

  protected async resendPending(): Promise<void> {
    const rows = await this.db.selectFrom('volume_attachments').selectAll().where('pending_cast_id', '!=', '').where('cast_sent_at', 'is', null).execute()
    for (const a of rows) await this.send(a, 'skip')
  }
}
