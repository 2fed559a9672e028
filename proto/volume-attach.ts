/**
 * Attaching volumes to servers (Nova's attach_volume / detach_volume casts
 * to the server's host, agent.v1 `VolumeAttach`), telling a server's host
 * that a volume it attaches over the network grew (extend_volume, Nova's
 * volume-extended event), and the cast ids that name them: the one place the
 * controller and the agent agree on both. Plain objects in ts-proto's shape.
 */

export type AttachOp = 'attach_volume' | 'detach_volume' | 'extend_volume'
export const ATTACH_OPS: readonly AttachOp[] = ['attach_volume', 'detach_volume', 'extend_volume']

export function isAttachOp(s: string): s is AttachOp {
  return (ATTACH_OPS as readonly string[]).includes(s)
}

/** One attach or detach, as sent (every field set). */
export interface VolumeAttachWork {
  op: AttachOp
  attachmentId: string
  instanceUuid: string
  volumeId: string
  /** The guest's device: vdb…vdz (no /dev/). */
  device: string
  /** The host whose volume backend keeps the volume: the server's own (its file) or another (a network export). */
  volumeHost: string
  /** extend_volume: the volume's size now, GiB (0 for the others). */
  sizeGb: number
  /**
   * attach_volume: a multiattach volume, attached over its host's NBD export
   * even from that host, as a shareable disk (false from an older controller).
   */
  multiattach: boolean
}

/** The same, as received (decoded protobuf: any field may be missing). */
export interface ReceivedVolumeAttach {
  op?: string
  attachmentId?: string
  instanceUuid?: string
  volumeId?: string
  device?: string
  volumeHost?: string
  sizeGb?: number
  multiattach?: boolean
}

/** A received attach or detach with every field filled in. @throws Error when its op is unknown. */
export function volumeAttachOf(w: ReceivedVolumeAttach): VolumeAttachWork {
  const op = w.op ?? ''
  if (!isAttachOp(op)) throw new Error(`unknown attachment op '${op}'`)
  return { op, attachmentId: w.attachmentId ?? '', instanceUuid: w.instanceUuid ?? '', volumeId: w.volumeId ?? '', device: w.device ?? '', volumeHost: w.volumeHost ?? '', sizeGb: w.sizeGb ?? 0, multiattach: w.multiattach ?? false }
}

/**
 * Cast ids of attachment work: `<op>.<attachment id>.<nonce>`. The id a
 * result comes back under says which pending cast it ends.
 */
export function attachCastId(op: AttachOp, attachmentId: string, nonce: string): string {
  return `${op}.${attachmentId}.${nonce}`
}

export function parseAttachCastId(castId: string): { op: AttachOp; attachmentId: string } | undefined {
  const [op, id] = castId.split('.')
  return op && id && isAttachOp(op) ? { op, attachmentId: id } : undefined
}

/** The serial a volume's disk shows the guest (Nova's: the volume id, which QEMU cuts to 20 characters for virtio-blk). */
export function volumeSerial(volumeId: string): string {
  return volumeId.slice(0, 20)
}
