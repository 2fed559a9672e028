/** Block storage tables (migration 0013). Maps are JSON text; booleans 0/1. */

/** The durable cast outbox's columns, and timestamps, of volumes and snapshots. */
export interface PendingCastColumns {
  pending_cast_id: string
  pending_request_id: string
  cast_sent_at: string | null
  /** The cast a controller is handing to the bus, and since when (its lease; PostgreSQL, see compute/cast-outbox.ts); null when none. Optional: the outbox alone writes them. */
  cast_claim_id?: string | null
  cast_claimed_at?: string | null
  created_at: string
  updated_at: string
}

export interface VolumeTypeTable {
  id: string
  name: string
  description: string
  is_public: number
  extra_specs: string
  created_at: string
  updated_at: string
}

export interface VolumeTable extends PendingCastColumns {
  id: string
  name: string
  description: string
  size: number
  pending_size: number
  status: string
  status_reason: string
  bootable: number
  volume_type_id: string
  availability_zone: string
  source_volid: string
  snapshot_id: string
  image_id: string
  volume_image_metadata: string
  multiattach: number
  metadata: string
  host: string
  project_id: string
  user_id: string
}

export interface VolumeSnapshotTable extends PendingCastColumns {
  id: string
  name: string
  description: string
  volume_id: string
  size: number
  status: string
  status_reason: string
  metadata: string
  project_id: string
  user_id: string
}

export interface VolumeBackendTable {
  host: string
  backend_name: string
  total_gb: number
  free_gb: number
  updated_at: string
}

/** A volume attached (or being attached) to a server (migration 0015). */
export interface VolumeAttachmentTable extends PendingCastColumns {
  id: string
  volume_id: string
  server_id: string
  host: string
  device: string
  status: string
  status_reason: string
  attach_mode: string
  /** `<server>/<device>` while live, null once failed (unique). */
  server_device: string | null
  /** `<server>/<volume>` while live, null once failed (unique). */
  server_volume: string | null
  attached_at: string | null
  project_id: string
  user_id: string
  /** 1: the volume is deleted with its server (migration 0016). */
  delete_on_termination: number
  /** 0: the server's boot disk (vda); -1: not bootable (migration 0016). */
  boot_index: number
}

export interface VolumeTables {
  volume_types: VolumeTypeTable
  volumes: VolumeTable
  volume_snapshots: VolumeSnapshotTable
  volume_backends: VolumeBackendTable
  volume_attachments: VolumeAttachmentTable
}
