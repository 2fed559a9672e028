/**
 * A server's root disk: a qcow2 overlay whose backing file is the host's
 * cached base of its image, sized to the flavor's disk (Nova: the flavor's
 * disk may not be smaller than the image; 0 means "the image's size").
 */
import { chmod, rm } from 'node:fs/promises'
import { FailedPrecondition } from '../../proto/errors.js'
import { createImage, imageInfo } from '../../native/index.js'
import { PRIVATE_FILE_MODE } from './guest-dirs.js'

const GiB = 1024 ** 3

export async function createRootDisk(diskPath: string, basePath: string, flavorDiskGiB: number): Promise<{ virtualSize: number }> {
  const [base] = await imageInfo(basePath, 'qcow2')
  if (!base) throw new FailedPrecondition(`cannot read the cached base ${basePath}`)
  const wanted = flavorDiskGiB > 0 ? flavorDiskGiB * GiB : base.virtualSize
  if (wanted < base.virtualSize) {
    throw new FailedPrecondition(`the flavor's disk (${flavorDiskGiB} GiB) is smaller than the image (${(base.virtualSize / GiB).toFixed(2)} GiB); choose a larger flavor`)
  }
  await createImage(diskPath, 'qcow2', { size: wanted, backingFile: basePath, backingFormat: 'qcow2' })
  // The guest's data: root only; libvirt chowns it to QEMU while the guest runs, and back at stop.
  await chmod(diskPath, PRIVATE_FILE_MODE)
  return { virtualSize: wanted }
}

/** Removes a root disk; a missing one is fine (destroy of a missing guest succeeds). */
export async function removeRootDisk(diskPath: string): Promise<void> {
  await rm(diskPath, { force: true })
}
