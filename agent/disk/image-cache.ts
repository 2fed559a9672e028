/**
 * The agent's image cache: each image is downloaded from the image service at
 * most once per host, its MD5 checked against the image's checksum and its
 * content inspected again (the host does not trust the wire), then kept as a
 * qcow2 base that root disks use as their backing file. Concurrent requests
 * for one image share one download; a failed download leaves nothing behind.
 */
import { createHash } from 'node:crypto'
import { chmod, open, rename, rm, stat } from 'node:fs/promises'
import path from 'node:path'
import { FailedPrecondition, InvalidArgument } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import { convertImage, inspectImage } from '../../native/index.js'
import { GuestDirs, PRIVATE_FILE_MODE } from './guest-dirs.js'

/** What the cache needs from the image service. */
/** What the image cache needs to know of an image besides its data. */
export interface KnownImage {
  checksum: string
  diskFormat: string
  status: string
}

export interface ImageSource {
  /** The image's metadata and its data, as a stream of chunks. */
  download(imageId: string): Promise<{ image: KnownImage; data: AsyncIterable<Uint8Array> }>
}

export class ImageCache {
  private readonly inFlight = new Map<string, Promise<string>>()

  constructor(
    readonly dir: string,
    private readonly source: ImageSource,
    /** QEMU reads the bases (libvirt chowns them to it, read-only): the directory lets its group through. @default private */
    dirs: GuestDirs = new GuestDirs(undefined),
  ) {
    dirs.ensure(dir)
  }

  /** Path of the cached qcow2 base of this image. */
  basePath(imageId: string): string {
    if (!isUuid(imageId)) throw new InvalidArgument(`image id '${imageId}' is not a UUID`, { field: 'image_id' })
    return path.join(this.dir, `${imageId}.qcow2`)
  }

  /** The cached base for the image, downloading it first if this host has not got it. */
  async ensure(imageId: string): Promise<string> {
    const base = this.basePath(imageId)
    let p = this.inFlight.get(imageId)
    if (!p) {
      p = this.fetch(imageId, base).finally(() => this.inFlight.delete(imageId))
      this.inFlight.set(imageId, p)
    }
    return p
  }

  async has(imageId: string): Promise<boolean> {
    return stat(this.basePath(imageId)).then(() => true, () => false)
  }

  /** Removes a cached base (callers make sure no root disk still uses it). */
  async evict(imageId: string): Promise<void> {
    await rm(this.basePath(imageId), { force: true })
  }

  private async fetch(imageId: string, base: string): Promise<string> {
    if (await this.has(imageId)) return base
    const part = `${base}.part`
    const raw = `${base}.raw`
    try {
      const { image, data } = await this.source.download(imageId)
      if (image.diskFormat !== 'qcow2' && image.diskFormat !== 'raw') {
        throw new FailedPrecondition(`image ${imageId} is ${image.diskFormat}; this host boots qcow2 and raw images only`)
      }
      const md5 = createHash('md5')
      // Private images too: nobody but root (and QEMU, through libvirt's chown) reads a base.
      const fh = await open(part, 'w', PRIVATE_FILE_MODE)
      try {
        let pos = 0
        for await (const chunk of data) {
          md5.update(chunk)
          await fh.write(chunk, 0, chunk.length, pos)
          pos += chunk.length
        }
        await fh.sync()
      } finally {
        await fh.close()
      }
      const sum = md5.digest('hex')
      if (sum !== image.checksum) throw new FailedPrecondition(`image ${imageId} arrived with MD5 ${sum}, but its checksum is ${image.checksum}; the download was discarded`)
      const found = await inspectImage(part)
      if (!found.safe) throw new FailedPrecondition(`image ${imageId} is unsafe (${found.reasons}); the download was discarded`)
      if (found.format !== image.diskFormat) throw new FailedPrecondition(`image ${imageId} is ${found.format}, not ${image.diskFormat}; the download was discarded`)
      if (image.diskFormat === 'raw') {
        // Keep every base as qcow2: zero runs are dropped and overlays need no probing.
        await rename(part, raw)
        await convertImage(raw, part, { srcFormat: 'raw', dstFormat: 'qcow2' })
        await chmod(part, PRIVATE_FILE_MODE) // the native engine creates files 0644 (less the umask)
        await rm(raw, { force: true })
      }
      await rename(part, base)
      return base
    } catch (err) {
      await rm(part, { force: true })
      await rm(raw, { force: true })
      throw err
    }
  }
}
