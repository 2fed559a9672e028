/**
 * The agent's volume role (cinder-volume's manager): runs the volume work
 * casts carry on the host's {@link VolumeDriver}, one piece of work at a
 * time per volume (different volumes concurrently). A volume made from an
 * image asks the conductor for the image and a read token, and converts the
 * host's cached base of it; an upload to an image is the {@link VolumeUploader}'s.
 */
import type { Logger } from 'pino'
import { FailedPrecondition, InvalidArgument } from '../../proto/errors.js'
import type { VolumeWork } from '../../proto/volume-work.js'
import { KeyedQueue } from '../compute-manager.js'
import { GiB, type VolumeDriver, type VolumeSource } from './driver.js'
import type { VolumeUploader } from './upload.js'

export interface VolumeManagerOptions {
  /** The cached qcow2 base of the image volume `volumeId` is made from (downloaded if needed). */
  imageOf: (volumeId: string) => Promise<string>
  /**
   * A volume attached to servers of this host grows to `bytes`: their running
   * guests resize it (Nova's volume-extended event, virDomainBlockResize),
   * before the backend's own extend. Absent: nothing to tell.
   */
  extended?: (attached: VolumeWork['attached'], bytes: number) => Promise<void>
  /**
   * Runs `fn` holding the locks of servers `uuids` of this host, so none of
   * them starts, stops or changes its disks meanwhile (the compute side's
   * per-server lock). Absent: `fn` runs alone.
   */
  holdingGuests?: <T>(uuids: string[], fn: () => Promise<T>) => Promise<T>
  /** Uploads volumes to images (upload_image work). Absent: such work is refused, saying so. */
  uploads?: VolumeUploader
  /** The host, for the reasons work is refused. */
  host: string
  log: Logger
}

export class VolumeManager {
  private readonly locks = new KeyedQueue()

  constructor(
    readonly driver: VolumeDriver,
    private readonly o: VolumeManagerOptions,
  ) {}

  /**
   * Does one piece of work, that of the cast `castId` (idempotently: a
   * redelivered cast finds it done). `wanted` is asked first, under the
   * volume's lock, so no other work on the volume (a delete after a
   * redelivered create) runs between its answer and the work; when it says
   * no, nothing is done and the answer is false.
   */
  run(w: VolumeWork, castId: string, wanted: () => Promise<boolean> = async () => true): Promise<boolean> {
    return this.locks.run(w.volumeId, async () => {
      if (!(await wanted())) return false
      await this.work(w, castId)
      return true
    })
  }

  private async work(w: VolumeWork, castId: string): Promise<void> {
    switch (w.op) {
      case 'create':
        await this.driver.create(w.volumeId, w.sizeGb, await this.sourceOf(w))
        return
      case 'delete':
        await this.driver.delete(w.volumeId)
        return
      case 'extend': {
        // A running guest's QEMU has the image open: it grows it itself (nothing else may rewrite
        // a qcow2's tables under it), and the backend then finds it grown. With no guest running,
        // the backend grows it. An exported volume is open in its export's daemon instead: the
        // backend grows it there first, then the guests reading it through the export learn the size.
        if ((await this.driver.exports()).some((e) => e.volumeId === w.volumeId)) {
          await this.driver.extend(w.volumeId, w.sizeGb)
          if (w.attached.length) await this.o.extended?.(w.attached, w.sizeGb * GiB)
          return
        }
        if (w.attached.length) await this.o.extended?.(w.attached, w.sizeGb * GiB)
        await this.driver.extend(w.volumeId, w.sizeGb)
        return
      }
      case 'create_snapshot': {
        // A running guest among `attached` moves its writes onto a new overlay and the file it had becomes the
        // snapshot (a live, copy-on-write snapshot); with none running, the file itself becomes the snapshot.
        // The servers' locks are held throughout, so none starts or stops between the check and the move (it
        // would open the file about to become the snapshot and write into it).
        // Locks in this order: the volume's, the servers', the backend's (an attach holds its server's, then
        // the backend's; an extend holds the volume's, then its servers').
        const snapshot = () => this.driver.createSnapshot(w.volumeId, w.snapshotId, w.attached)
        if (w.attached.length && this.o.holdingGuests) await this.o.holdingGuests(w.attached.map((a) => a.instanceUuid), snapshot)
        else await snapshot()
        return
      }
      case 'delete_snapshot':
        // The running guests among `attached` pull the snapshot's data into the files they have open.
        await this.driver.deleteSnapshot(w.volumeId, w.snapshotId, w.attached)
        return
      case 'upload_image':
        if (!this.o.uploads) throw new FailedPrecondition(`host '${this.o.host}' cannot upload images: volume uploads are not available here`)
        await this.o.uploads.run(w, castId)
        return
    }
  }

  private async sourceOf(w: VolumeWork): Promise<VolumeSource> {
    const given = [w.sourceVolid, w.sourceSnapshotId, w.imageId].filter(Boolean).length
    if (given > 1) throw new InvalidArgument(`volume ${w.volumeId}: at most one source, got ${given}`)
    if (w.sourceVolid) return { kind: 'volume', volumeId: w.sourceVolid }
    if (w.sourceSnapshotId) return { kind: 'snapshot', snapshotId: w.sourceSnapshotId }
    if (w.imageId) return { kind: 'image', path: await this.o.imageOf(w.volumeId), format: 'qcow2' }
    return { kind: 'blank' }
  }
}
