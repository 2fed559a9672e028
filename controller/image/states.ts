/** Image status transitions (Glance v2), checked in one place. */
import { FailedPrecondition } from '../../proto/errors.js'

export type ImageStatus = 'queued' | 'saving' | 'active' | 'deactivated' | 'deleted'

const allowed: Record<ImageStatus, readonly ImageStatus[]> = {
  queued: ['saving', 'deleted'],
  // A failed or aborted v2 upload returns to queued (v1's "killed" is gone).
  saving: ['active', 'queued', 'deleted'],
  active: ['deactivated', 'deleted'],
  deactivated: ['active', 'deleted'],
  deleted: [],
}

export function checkTransition(from: string, to: ImageStatus, what: string): void {
  if (!(allowed[from as ImageStatus] ?? []).includes(to)) {
    throw new FailedPrecondition(`cannot ${what} an image that is ${from}${from === 'saving' ? ' (an upload is in progress)' : ''}`)
  }
}

export const DISK_FORMATS = ['raw', 'vhd', 'vhdx', 'vmdk', 'vdi', 'iso', 'ploop', 'qcow2', 'aki', 'ari', 'ami'] as const
export const CONTAINER_FORMATS = ['bare', 'ovf', 'aki', 'ari', 'ami', 'ova', 'docker', 'compressed'] as const
export const VISIBILITIES = ['public', 'community', 'shared', 'private'] as const

/**
 * What the content inspector must find for each declared disk format. Kernel
 * and ramdisk formats (aki, ari, ami) and ploop are opaque to the inspector
 * and must at least not look like any known disk format.
 */
export const DETECTED_AS: Record<(typeof DISK_FORMATS)[number], string> = {
  raw: 'raw',
  qcow2: 'qcow2',
  vmdk: 'vmdk',
  vhd: 'vhd',
  vhdx: 'vhdx',
  vdi: 'vdi',
  iso: 'iso',
  ploop: 'raw',
  aki: 'raw',
  ari: 'raw',
  ami: 'raw',
}
