/**
 * The volume backend contract of a Strato agent (after cinder
 * `volume/driver.py`): what an agent with the volume role does with the
 * data of volumes and snapshots. Two implementations: `FileVolumeDriver`
 * (`file.ts`, files of the native engine in a directory) and
 * `FakeVolumeDriver` (`fake.ts`, in memory). One contract test suite
 * (`test/unit/agent/volume/contract.ts`) runs against both.
 *
 * Rules every implementation follows:
 *
 * - **Work is idempotent.** A cast may come again (the agent died before it
 *   acked): creating a volume or snapshot that exists with the same size
 *   succeeds and changes nothing; deleting one that is gone succeeds;
 *   extending to the size a volume has succeeds.
 * - **A failed create leaves nothing behind**: no file, no record; the
 *   volume can be created again under the same id.
 * - **No data is lost to a delete.** Deleting a snapshot that other volumes
 *   (or later snapshots) were made from copy-on-write first makes them
 *   independent of it (flattens them); deleting a volume deletes its
 *   snapshots the same way. What the contract suite reads back after a
 *   delete is what was written before it.
 * - **Sizes are GiB**, as Cinder's; a volume's virtual size is exactly its
 *   size. Shrinking is refused (InvalidArgument).
 * - **Errors come from the closed set in `proto/errors.ts`:** NotFound for an
 *   unknown volume or snapshot (a source, or the volume to extend),
 *   InvalidArgument for a bad id or size, ResourceExhausted when the backend
 *   has no room, FailedPrecondition when the state forbids the work,
 *   Internal for anything else.
 * - **Deleting a volume ends its exports**: no export outlives its volume.
 * - Volumes and snapshots are addressed by uuid; the agent's volume manager
 *   serialises work on one volume, different volumes run concurrently.
 */
import { InvalidArgument } from '../../proto/errors.js'
import type { ExportRef, VolumeExport } from '../../proto/volume-export.js'
import { isUuid } from '../../proto/ids.js'

/** Where a new volume's data comes from. */
export type VolumeSource =
  | { kind: 'blank' }
  /** A local image file (the agent's image cache), converted by the native engine. */
  | { kind: 'image'; path: string; format: 'qcow2' | 'raw' }
  | { kind: 'snapshot'; snapshotId: string }
  | { kind: 'volume'; volumeId: string }

/** A server of this host a volume is attached to, and the disk it has there. */
export interface AttachedDisk {
  instanceUuid: string
  /** `vdb`, … */
  device: string
  /** The volume attached there (a snapshot delete's dependents; empty: the volume worked on). */
  volumeId?: string
}

/**
 * The hypervisor's side of a snapshot of a volume a running guest has open,
 * and of a snapshot deleted under it (the agent's virt driver:
 * `VirtDriver.snapshotDisk`, `diskSource`, `pullDisk`, `settleDiskPull`).
 */
export interface GuestDisks {
  /**
   * Moves the guest's writes on `device` onto `overlay` (an empty qcow2 file
   * whose backing file is the one the disk has open, with a name of its
   * own), the old file frozen under its name (`VirtDriver.snapshotDisk`);
   * false, doing nothing, when the guest does not run.
   */
  snapshot(instanceUuid: string, device: string, overlay: string): Promise<boolean>
  /** The file the guest's disk `device` has (live when it runs, else its definition's); undefined: no such guest or disk. */
  source(instanceUuid: string, device: string): Promise<string | undefined>
  /**
   * Merges the whole backing chain of the file the guest has open on
   * `device` into that file, live (`VirtDriver.pullDisk`); returns once it
   * stands alone. False, doing nothing, when the guest does not run.
   */
  pull(instanceUuid: string, device: string): Promise<boolean>
  /** After a crash: waits for a pull still running on the guest's `device` to end (`VirtDriver.settleDiskPull`). */
  settlePull(instanceUuid: string, device: string): Promise<void>
}

export interface VolumeInfo {
  id: string
  sizeGb: number
  /** The on-disk format of the volume (what an attach tells the hypervisor). */
  format: 'qcow2' | 'raw'
}

export interface SnapshotInfo {
  id: string
  volumeId: string
  sizeGb: number
}

/** How a host reaches a volume (a file of its own host, or an NBD export): `proto/volume-export.ts`. */
export type { ExportRef, VolumeExport } from '../../proto/volume-export.js'

/** The backend's capacity, as the agent reports it to the controller. */
export interface VolumeStats {
  backendName: string
  totalGb: number
  freeGb: number
}

export interface VolumeDriver {
  readonly name: string
  /** Prepares the backend (directories, …). Idempotent. */
  init(): Promise<void>
  /** Creates volume `id` of `sizeGb` from `source` (larger than the source: grown). */
  create(id: string, sizeGb: number, source: VolumeSource): Promise<VolumeInfo>
  /** A full, independent copy of volume `sourceId` (Cinder's create_cloned_volume). */
  clone(id: string, sourceId: string, sizeGb: number): Promise<VolumeInfo>
  /** Deletes a volume and its snapshots (volumes made from them first flattened). Gone already: success. */
  delete(id: string): Promise<void>
  /** Grows a volume to `sizeGb`. */
  extend(id: string, sizeGb: number): Promise<VolumeInfo>
  /**
   * Takes snapshot `snapshotId` of volume `volumeId` (copy-on-write where the
   * format allows). `attached`: the servers of this host the volume is
   * attached to; a running one has its file open, and its hypervisor moves
   * its writes onto a new active file of the volume, the old one frozen as
   * the snapshot's (the file driver's qcow2), as does the export's daemon of
   * a volume served to other hosts. Where the volume's file is afterwards,
   * `export` says.
   */
  createSnapshot(volumeId: string, snapshotId: string, attached?: AttachedDisk[]): Promise<SnapshotInfo>
  /**
   * Deletes a snapshot; what depends on it is flattened first, keeping every
   * byte it showed. `attached`: the servers of this host that have a volume
   * resting on the snapshot attached (with `volumeId`); a running one has
   * that volume's file open, and its hypervisor merges the snapshot into the
   * file live (a block pull) instead, as does the export's daemon of a
   * volume served to other hosts. Gone already: success.
   */
  deleteSnapshot(volumeId: string, snapshotId: string, attached?: AttachedDisk[]): Promise<void>
  /**
   * Makes the volume reachable from `host`: its own host gets the file
   * (unless `network` asks for the network path anyway), another host a
   * network export, one per (volume, host), that only holders of the
   * cloud's client certificate can open. Idempotent: an export that is
   * served is returned as it is; one recorded but no longer served (its
   * server died) is served again on the same address and port.
   * @throws NotFound when the volume is not on this backend.
   * @throws FailedPrecondition when network exports are not set up here.
   */
  export(id: string, host: string, o?: { network?: boolean }): Promise<VolumeExport>
  /** Whether this backend serves network exports (else `export` to another host, or with `network`, is refused). */
  readonly networkExports: boolean
  /** Ends the network export of the volume to `host`. Not exported: success. */
  unexport(id: string, host: string): Promise<void>
  /** The network exports recorded (served or to be served again), for the start-up sync. */
  exports(): Promise<ExportRef[]>
  /**
   * After this host's NBD certificate was renewed: the network exports whose
   * server loaded an older one and that no client is connected to are served
   * again (same address, port and name) with the one in place now; an export
   * with a client keeps the one it has until a later call finds it idle.
   * Returns the volumes served again. Absent: the backend serves no exports.
   */
  reloadTls?(): Promise<string[]>
  /** The volume as the backend has it now, or undefined. */
  info(id: string): Promise<VolumeInfo | undefined>
  /** The snapshot as the backend has it now, or undefined. */
  snapshotInfo(snapshotId: string): Promise<SnapshotInfo | undefined>
  stats(): Promise<VolumeStats>
}

/** @throws InvalidArgument unless `id` is a uuid (ids become file names). */
export function checkId(id: string, what: string): string {
  if (!isUuid(id)) throw new InvalidArgument(`${what} id '${id}' is not a UUID`, { field: `${what}_id` })
  return id
}

/** @throws InvalidArgument unless `sizeGb` is a whole number ≥ 1. */
export function checkSizeGb(sizeGb: number): number {
  if (!Number.isInteger(sizeGb) || sizeGb < 1) throw new InvalidArgument(`a volume size is a whole number of GiB ≥ 1, got ${sizeGb}`, { field: 'size' })
  return sizeGb
}

export const GiB = 1024 ** 3
