/** Policy entries for strato.volume.v1 (the mechanism is in identity/policy.ts); owners are checked by the catalogs (Cinder's admin_or_owner). */
import type { PolicyEntry, Target } from '../identity/policy.js'
import type { AuthContext } from '../identity/model.js'

const V = 'strato.volume.v1'
/** The caller's own project. */
const ownScope = (_req: unknown, c: AuthContext): Target => (c.projectId ? { projectId: c.projectId } : {})
const reader = { allow: ['cloud_admin', 'project_reader'], target: ownScope } satisfies PolicyEntry
const member = { allow: ['cloud_admin', 'project_member'], target: ownScope } satisfies PolicyEntry

export const volumePolicy: Record<string, PolicyEntry> = {
  [`${V}.Volumes/CreateVolume`]: member,
  [`${V}.Volumes/GetVolume`]: reader,
  [`${V}.Volumes/ListVolumes`]: reader,
  [`${V}.Volumes/UpdateVolume`]: member,
  [`${V}.Volumes/DeleteVolume`]: member,
  [`${V}.Volumes/ExtendVolume`]: member,
  // Cinder: volume_extension:volume_actions:upload_image is admin_or_owner.
  [`${V}.Volumes/UploadVolumeToImage`]: member,
  // Cinder: volume_extension:volume_admin_actions:reset_status is admin only.
  [`${V}.Volumes/ResetVolumeState`]: { allow: ['cloud_admin'] },

  [`${V}.Snapshots/CreateSnapshot`]: member,
  [`${V}.Snapshots/GetSnapshot`]: reader,
  [`${V}.Snapshots/ListSnapshots`]: reader,
  [`${V}.Snapshots/UpdateSnapshot`]: member,
  [`${V}.Snapshots/DeleteSnapshot`]: member,

  [`${V}.Attachments/CreateAttachment`]: member,
  [`${V}.Attachments/GetAttachment`]: reader,
  [`${V}.Attachments/ListAttachments`]: reader,
  [`${V}.Attachments/DeleteAttachment`]: member,

  [`${V}.VolumeTypes/CreateVolumeType`]: { allow: ['cloud_admin'] },
  [`${V}.VolumeTypes/GetVolumeType`]: { allow: ['authenticated'] },
  [`${V}.VolumeTypes/ListVolumeTypes`]: { allow: ['authenticated'] },
  [`${V}.VolumeTypes/UpdateVolumeType`]: { allow: ['cloud_admin'] },
  [`${V}.VolumeTypes/DeleteVolumeType`]: { allow: ['cloud_admin'] },
}
