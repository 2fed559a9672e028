/**
 * Volumes uploaded to images on the agent with the volume role (cinder-volume's
 * copy_volume_to_image): the conductor names the image and its disk format
 * and issues an image-upload token for it (only for the volume's pending
 * upload cast), the volume's data — the backend's file for this host, its
 * whole chain — is converted by the native engine into one qcow2 or raw
 * file, and uploaded. The temporary file goes whatever happens. The
 * volume's status (`uploading`) keeps every other piece of work off it
 * meanwhile; a redelivered cast uploads again only while the image is
 * still queued (the conductor refuses otherwise). The volume manager
 * (`manager.ts`) runs it, as all volume work.
 */
import { mkdir, rm } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from 'pino'
import { FailedPrecondition } from '../../proto/errors.js'
import type { VolumeWork } from '../../proto/volume-work.js'
import { convertImage } from '../../native/index.js'
import type { ImageUpload } from '../compute-manager.js'
import type { VolumeDriver } from './driver.js'

export interface VolumeUploaderOptions {
  host: string
  /** Where converted data waits for its upload. */
  dir: string
  driver: VolumeDriver
  /** The conductor's grant for the upload cast `castId` of volume `volumeId`. */
  grant: (volumeId: string, castId: string) => Promise<{ imageId: string; diskFormat: 'qcow2' | 'raw'; imageUploadToken: string }>
  upload: ImageUpload
  log: Logger
}

export class VolumeUploader {
  constructor(private readonly o: VolumeUploaderOptions) {}

  /** Uploads volume `w.volumeId` to the image its cast `castId` names. */
  async run(w: VolumeWork, castId: string): Promise<void> {
    const { imageId, diskFormat, imageUploadToken } = await this.o.grant(w.volumeId, castId)
    if (w.imageId && w.imageId !== imageId) throw new FailedPrecondition(`upload ${castId} names image ${w.imageId}, the conductor ${imageId}`)
    // The backend's own host reads the volume's file; that export needs no unexport (an attach here may share it).
    const source = await this.o.driver.export(w.volumeId, this.o.host)
    if (source.kind !== 'file') throw new FailedPrecondition(`volume ${w.volumeId} is not a file on host '${this.o.host}'; it cannot be uploaded from here`)
    await mkdir(this.o.dir, { recursive: true, mode: 0o700 })
    const out = path.join(this.o.dir, `upload-${imageId}.${diskFormat}`)
    try {
      await rm(out, { force: true })
      await convertImage(source.path, out, { srcFormat: source.format, dstFormat: diskFormat })
      this.o.log.info({ volume: w.volumeId, image: imageId, diskFormat }, 'volume data converted; uploading')
      const image = await this.o.upload(imageId, out, imageUploadToken)
      if (image.status !== 'active') throw new FailedPrecondition(`image ${imageId} is ${image.status} after its upload, not active`)
    } finally {
      await rm(out, { force: true })
    }
  }
}
