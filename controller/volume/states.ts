/**
 * Volume and snapshot statuses as Cinder keeps them, as one table of allowed
 * transitions (`TRANSITIONS`) and the actions that use it (`ACTIONS`): which
 * statuses an action is allowed from (Cinder's `expected` status sets in
 * `volume/api.py`), the status it moves the volume to, and what the
 * backend's result makes of it. Every status the controller writes to a
 * volume or snapshot comes from here, checked before anything is cast to a
 * host; the one exception is an admin's reset-state, which (as Cinder's
 * os-reset_status) only checks that the status is one of the table's.
 */
import { FailedPrecondition, InvalidArgument } from '../../proto/errors.js'
import type { VolumeOp } from '../../proto/volume-work.js'

export const VOLUME_STATUSES = [
  'creating', 'available', 'reserved', 'attaching', 'in-use', 'detaching', 'extending', 'deleting',
  'error', 'error_deleting', 'error_extending', 'downloading', 'uploading', 'maintenance',
] as const
export type VolumeStatus = (typeof VOLUME_STATUSES)[number]

/** Gone: the row is removed (Cinder's soft-deleted `deleted` status). */
type Terminal = 'deleted'

/** Every move a volume's status may make; anything else is a bug or a refused action. */
export const TRANSITIONS: Record<VolumeStatus, ReadonlyArray<VolumeStatus | Terminal>> = {
  // reserved: a volume made for a new server (boot from volume) is promised to it once made.
  creating: ['available', 'reserved', 'error', 'downloading', 'deleting'],
  downloading: ['available', 'reserved', 'error', 'deleting'],
  available: ['reserved', 'attaching', 'extending', 'deleting', 'uploading', 'maintenance', 'error'],
  // in-use: a multiattach volume's reservation for a server that was deleted, while another holds it.
  reserved: ['attaching', 'available', 'in-use', 'error', 'deleting'],
  attaching: ['in-use', 'available', 'error'],
  // reserved: another attachment of a multiattach volume; available: its last server was deleted.
  'in-use': ['detaching', 'reserved', 'extending', 'uploading', 'maintenance', 'error', 'available'],
  detaching: ['available', 'in-use', 'error'],
  extending: ['available', 'in-use', 'error_extending'],
  deleting: ['deleted', 'error_deleting'],
  error: ['deleting', 'available'],
  error_deleting: ['deleting'],
  error_extending: ['deleting', 'available'],
  uploading: ['available', 'in-use', 'error', 'deleting'],
  maintenance: ['available', 'in-use', 'error', 'deleting'],
}

/** What users (and the controller) do to a volume. */
export type VolumeAction = 'delete' | 'force_delete' | 'extend' | 'snapshot' | 'snapshot_force' | 'clone' | 'update' | 'attach' | 'attach_multi' | 'upload' | 'upload_force'

interface ActionRule {
  /** The statuses the action is allowed from. */
  from: readonly VolumeStatus[]
  /** The status while the action runs; undefined: the volume's status does not change. */
  to?: VolumeStatus
  /** How a refusal names the action. */
  verb: string
}

const ACTIONS: Record<VolumeAction, ActionRule> = {
  // cinder volume/api.py delete: available, error, error_restoring, error_extending, error_managing.
  delete: { from: ['available', 'error', 'error_extending'], to: 'deleting', verb: 'delete' },
  // An admin's force delete ignores the status, but never pulls a volume out from under a server.
  force_delete: { from: VOLUME_STATUSES.filter((s) => !['in-use', 'reserved', 'attaching', 'detaching', 'deleting'].includes(s)), to: 'deleting', verb: 'force-delete' },
  // Cinder 3.42: an attached volume is extended too (the hypervisor is told the new size).
  extend: { from: ['available', 'in-use'], to: 'extending', verb: 'extend' },
  // Cinder: a snapshot of an available volume, of an in-use one with force.
  snapshot: { from: ['available'], verb: 'snapshot' },
  snapshot_force: { from: ['available', 'in-use'], verb: 'snapshot' },
  // The source of a new volume (Cinder: the source volume must be available).
  clone: { from: ['available'], verb: 'clone' },
  update: { from: VOLUME_STATUSES.filter((s) => s !== 'maintenance' && s !== 'deleting'), verb: 'update' },
  // Cinder attachment_create: available; a multiattach volume also while in-use.
  attach: { from: ['available'], to: 'reserved', verb: 'attach' },
  attach_multi: { from: ['available', 'in-use'], to: 'reserved', verb: 'attach' },
  // Cinder copy_volume_to_image: available; an in-use volume with force (its data as it is then).
  upload: { from: ['available'], to: 'uploading', verb: 'upload' },
  upload_force: { from: ['available', 'in-use'], to: 'uploading', verb: 'upload' },
}

function refuse(rule: ActionRule, id: string, status: string, field: string | undefined): never {
  throw new FailedPrecondition(`cannot ${rule.verb} volume ${id} while its status is ${status}; ${rule.verb} needs status ${rule.from.join(' or ')}`, field === undefined ? {} : { field })
}

/**
 * Checks that `action` is allowed on a volume now and returns the status the
 * volume takes while it runs (its current one when the action changes none).
 * `field`: the request's field that named the volume, where the refusal
 * should say so (Nova answers a volume's refusal apart from its server's).
 * @throws FailedPrecondition naming the volume's status and what would be allowed.
 */
export function beginVolumeAction(action: VolumeAction, v: { id: string; status: string }, field?: string): VolumeStatus {
  const rule = ACTIONS[action]
  if (!rule.from.includes(v.status as VolumeStatus)) refuse(rule, v.id, v.status, field)
  if (!rule.to) return v.status as VolumeStatus
  checkVolumeTransition(v.status, rule.to)
  return rule.to
}

/** @throws FailedPrecondition unless the table allows `from` → `to`. */
export function checkVolumeTransition(from: string, to: VolumeStatus | Terminal): void {
  if (!(TRANSITIONS[from as VolumeStatus] ?? []).includes(to)) throw new FailedPrecondition(`a volume cannot go from status ${from} to ${to}`)
}

/** The status an admin's reset-state writes (any of the table's; only the database changes). */
export function resetStatus(status: string | undefined): VolumeStatus {
  if (!VOLUME_STATUSES.includes(status as VolumeStatus)) throw new InvalidArgument(`status must be one of ${VOLUME_STATUSES.join(', ')}, got '${status ?? ''}'`, { field: 'status' })
  return status as VolumeStatus
}


/**
 * What a volume's status becomes when its backend reports on `op`; the
 * status it must still have (a reset or force delete in between wins), and
 * `deleted` when the row goes.
 */
const VOLUME_OUTCOMES: Outcomes<VolumeStatus> = {
  create: { while: 'creating', ok: 'available', error: 'error' },
  delete: { while: 'deleting', ok: 'deleted', error: 'error_deleting' },
  extend: { while: 'extending', ok: 'available', error: 'error_extending' },
  // Done or not, the volume is as before (Cinder's volume_update_status_based_on_attachment):
  // available, or in-use when attached (results.ts); a failure's reason is kept.
  upload_image: { while: 'uploading', ok: 'available', error: 'available' },
}

type Outcomes<S extends string> = Partial<Record<VolumeOp, { while: S; ok: S | Terminal; error: S }>>

/** The row of `outcomes` for `op`, checked against its transition table. */
function outcomeIn<S extends string>(outcomes: Outcomes<S>, check: (from: string, to: S | Terminal) => void, op: VolumeOp, ok: boolean): { while: S; to: S | Terminal } | undefined {
  const o = outcomes[op]
  if (!o) return undefined
  const to = ok ? o.ok : o.error
  check(o.while, to)
  return { while: o.while, to }
}

export function volumeOutcome(op: VolumeOp, ok: boolean): { while: VolumeStatus; to: VolumeStatus | Terminal } | undefined {
  return outcomeIn(VOLUME_OUTCOMES, checkVolumeTransition, op, ok)
}

// ---------------------------------------------------------------- snapshots

export const SNAPSHOT_STATUSES = ['creating', 'available', 'deleting', 'error', 'error_deleting'] as const
export type SnapshotStatus = (typeof SNAPSHOT_STATUSES)[number]

export const SNAPSHOT_TRANSITIONS: Record<SnapshotStatus, ReadonlyArray<SnapshotStatus | Terminal>> = {
  creating: ['available', 'error', 'deleting'],
  available: ['deleting'],
  // deleting → deleting: an admin's force delete sends the delete again (the one it waited for is then stale).
  deleting: ['deleted', 'error_deleting', 'deleting'],
  error: ['deleting'],
  error_deleting: ['deleting'],
}

/** Cinder snapshot delete: available or error; forced (admins) from any status, a delete under way sent again. */
export function beginSnapshotDelete(s: { id: string; status: string }, force: boolean): SnapshotStatus {
  const from: readonly string[] = force ? ['available', 'error', 'creating', 'error_deleting', 'deleting'] : ['available', 'error']
  if (!from.includes(s.status)) throw new FailedPrecondition(`cannot delete snapshot ${s.id} while its status is ${s.status}; delete needs status ${from.join(' or ')}`)
  checkSnapshotTransition(s.status, 'deleting')
  return 'deleting'
}

/** A snapshot as the source of a new volume must be available. */
export function checkSnapshotSource(s: { id: string; status: string }): void {
  if (s.status !== 'available') throw new FailedPrecondition(`cannot create a volume from snapshot ${s.id} while its status is ${s.status}; it must be available`)
}

export function checkSnapshotTransition(from: string, to: SnapshotStatus | Terminal): void {
  if (!(SNAPSHOT_TRANSITIONS[from as SnapshotStatus] ?? []).includes(to)) throw new FailedPrecondition(`a snapshot cannot go from status ${from} to ${to}`)
}

const SNAPSHOT_OUTCOMES: Outcomes<SnapshotStatus> = {
  create_snapshot: { while: 'creating', ok: 'available', error: 'error' },
  delete_snapshot: { while: 'deleting', ok: 'deleted', error: 'error_deleting' },
}

export function snapshotOutcome(op: VolumeOp, ok: boolean): { while: SnapshotStatus; to: SnapshotStatus | Terminal } | undefined {
  return outcomeIn(SNAPSHOT_OUTCOMES, checkSnapshotTransition, op, ok)
}

// ---------------------------------------------------------------- attachments

/**
 * An attachment's statuses (Cinder's attach_status): reserved (the volume is
 * promised to the server), attaching (cast to the server's host), attached,
 * detaching, error (the host failed to attach it; the volume is free again).
 */
export const ATTACHMENT_STATUSES = ['reserved', 'attaching', 'attached', 'detaching', 'error'] as const
export type AttachmentStatus = (typeof ATTACHMENT_STATUSES)[number]

/** The live ones: they hold the volume and the server's device (the volume's `attachments` show the attached ones). */
export const LIVE_ATTACHMENT: readonly AttachmentStatus[] = ['reserved', 'attaching', 'attached', 'detaching']

/**
 * Every move an attachment may make; `deleted`: the row goes (a detach done,
 * a reservation or failed attachment deleted, its server deleted).
 */
export const ATTACHMENT_TRANSITIONS: Record<AttachmentStatus, ReadonlyArray<AttachmentStatus | Terminal>> = {
  reserved: ['attaching', 'error', 'deleted'],
  attaching: ['attached', 'error', 'deleted'],
  attached: ['detaching', 'deleted'],
  // A detach the host failed leaves the volume attached (Cinder's roll_detaching).
  detaching: ['deleted', 'attached', 'error'],
  error: ['deleted'],
}

export function checkAttachmentTransition(from: string, to: AttachmentStatus | Terminal): void {
  if (!(ATTACHMENT_TRANSITIONS[from as AttachmentStatus] ?? []).includes(to)) throw new FailedPrecondition(`an attachment cannot go from status ${from} to ${to}`)
}

/** What an attachment and its volume become when the host reports on an attach or detach (the volume's is for its last live attachment). */
const ATTACH_OUTCOMES = {
  attach_volume: {
    while: 'attaching', volumeWhile: 'attaching',
    ok: { attachment: 'attached', volume: 'in-use' }, error: { attachment: 'error', volume: 'available' },
  },
  detach_volume: {
    while: 'detaching', volumeWhile: 'detaching',
    ok: { attachment: 'deleted', volume: 'available' }, error: { attachment: 'attached', volume: 'in-use' },
  },
} as const satisfies Record<string, { while: AttachmentStatus; volumeWhile: VolumeStatus; ok: { attachment: AttachmentStatus | Terminal; volume: VolumeStatus }; error: { attachment: AttachmentStatus | Terminal; volume: VolumeStatus } }>

/**
 * The outcome of an attach or detach, checked against both tables. The
 * volume's status is `volume` when this was its last live attachment, else
 * in-use (a multiattach volume another server still holds).
 */
export function attachOutcome(op: 'attach_volume' | 'detach_volume', ok: boolean, othersLive: boolean): { while: AttachmentStatus; attachment: AttachmentStatus | Terminal; volume: VolumeStatus } {
  const o = ATTACH_OUTCOMES[op]
  const r = ok ? o.ok : o.error
  const volume: VolumeStatus = othersLive && r.volume === 'available' ? 'in-use' : r.volume
  checkAttachmentTransition(o.while, r.attachment)
  checkVolumeTransition(o.volumeWhile, volume)
  return { while: o.while, attachment: r.attachment, volume }
}
