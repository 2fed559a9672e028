/**
 * Volume work a cast carries to a host's volume backend (agent.v1
 * `VolumeWork`), and the cast ids that name it: the one place the controller
 * and the agent agree on both. Plain objects in ts-proto's shape.
 */

/** Backend operations (cinder-volume's RPC casts); upload_image is Cinder's copy_volume_to_image. */
export type VolumeOp = 'create' | 'delete' | 'extend' | 'create_snapshot' | 'delete_snapshot' | 'upload_image'
export const VOLUME_OPS: readonly VolumeOp[] = ['create', 'delete', 'extend', 'create_snapshot', 'delete_snapshot', 'upload_image']

export function isVolumeOp(s: string): s is VolumeOp {
  return (VOLUME_OPS as readonly string[]).includes(s)
}

/** One piece of volume work, as sent (every field set; empty strings for none). */
export interface VolumeWork {
  op: VolumeOp
  volumeId: string
  snapshotId: string
  /** GiB: the size to create, or to extend to. */
  sizeGb: number
  sourceVolid: string
  sourceSnapshotId: string
  /** create: the source image; upload_image: the image the data goes to. */
  imageId: string
  /**
   * extend, create_snapshot: the servers of the volume's host it is attached
   * to (their hypervisor learns the new size; their running guests move to
   * the volume's new file). delete_snapshot: the servers of the volume's host
   * that have a volume resting on the snapshot attached (their running guests
   * pull the snapshot's data into that volume's file).
   */
  attached: Array<{ instanceUuid: string; device: string; volumeId: string }>
}

/** The same, as received (decoded protobuf: any field may be missing). */
export interface ReceivedVolumeWork {
  op?: string
  volumeId?: string
  snapshotId?: string
  sizeGb?: number
  sourceVolid?: string
  sourceSnapshotId?: string
  imageId?: string
  attached?: Array<{ instanceUuid?: string; device?: string; volumeId?: string }>
}

/** Whether `op` is snapshot work: its cast is pending on the snapshot's row (the others' on the volume's). */
export function isSnapshotOp(op: VolumeOp): boolean {
  return op === 'create_snapshot' || op === 'delete_snapshot'
}

/** A received piece of work with every field filled in. @throws Error when its op is unknown. */
export function volumeWorkOf(w: ReceivedVolumeWork): VolumeWork {
  const op = w.op ?? ''
  if (!isVolumeOp(op)) throw new Error(`unknown volume op '${op}'`)
  return {
    op, volumeId: w.volumeId ?? '', snapshotId: w.snapshotId ?? '', sizeGb: w.sizeGb ?? 0, sourceVolid: w.sourceVolid ?? '', sourceSnapshotId: w.sourceSnapshotId ?? '', imageId: w.imageId ?? '',
    attached: (w.attached ?? []).map((a) => ({ instanceUuid: a.instanceUuid ?? '', device: a.device ?? '', volumeId: a.volumeId ?? '' })),
  }
}

/** The action name a cast result reports for volume work (`volume_create`, …). */
export function volumeAction(op: VolumeOp): string {
  return `volume_${op}`
}

/**
 * Cast ids of volume work: `volume_<op>.<volume or snapshot id>.<nonce>`. The
 * id a result comes back under says which pending cast it ends.
 */
export function volumeCastId(op: VolumeOp, id: string, nonce: string): string {
  return `volume_${op}.${id}.${nonce}`
}

/** The cast id of the upload of volume `volumeId` to image `imageId` (the image names the cast: one upload per image). */
export function uploadCastId(volumeId: string, imageId: string): string {
  return volumeCastId('upload_image', volumeId, imageId)
}

/** The image an upload cast goes to, or undefined when `castId` is no upload. */
export function uploadImageOf(castId: string): string | undefined {
  const [kind, , imageId] = castId.split('.')
  return kind === 'volume_upload_image' && imageId ? imageId : undefined
}

/**
 * Whether a volume-role cast (volume or snapshot work, an attach, detach or
 * extend_volume) is still the one its row waits for on the host that asks
 * (agent.v1 `VolumeCastState`); a cast that is not is acked and not run.
 */
export interface CastState {
  current: boolean
  /** Why the cast is no longer current (empty when it is). */
  reason: string
}

export function parseVolumeCastId(castId: string): { op: VolumeOp; id: string } | undefined {
  const [kind, id] = castId.split('.')
  if (!kind?.startsWith('volume_') || !id) return undefined
  const op = kind.slice('volume_'.length)
  return isVolumeOp(op) ? { op, id } : undefined
}
