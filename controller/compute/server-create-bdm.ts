/**
 * The block device mappings of a create request (Nova's
 * block_device_mapping_v2, checked as `compute/api.py`
 * `_check_and_transform_bdm` and `_validate_bdm` do): what each device comes
 * from (an existing volume, or a volume the server makes from an image, a
 * snapshot or nothing), its place in the boot order, its device and whether
 * it goes with the server. Everything is checked and resolved before
 * anything is made; the result says which host the server must go to (a
 * volume attaches to servers of its backend's host) and what the volumes to
 * make weigh on the quota. `../volume/server-volumes.ts` records them.
 */
import { FailedPrecondition, InvalidArgument, NotFound } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import type { Image, ImageCatalog } from '../image/catalog.js'
import type { VolumeTypeCatalog } from '../volume/types.js'
import type { VolumeBackends } from '../volume/backends.js'
import { findRow } from '../volume/model.js'
import { beginVolumeAction, checkSnapshotSource } from '../volume/states.js'
import { specIsTrue } from '../volume/types.js'
import type { BlockDeviceMapping, ServerCaller } from './server-model.js'

const GiB = 1024 ** 3
/** vda (the boot device) to vdz. */
const DEVICES = Array.from({ length: 26 }, (_, i) => `vd${String.fromCharCode(97 + i)}`)
const SOURCE_TYPES = ['image', 'volume', 'snapshot', 'blank'] as const
const DESTINATION_TYPES = ['volume', 'local'] as const

/** One volume of a new server: an existing one, or one it makes. */
export interface PlannedVolume {
  /** vda…vdz */
  device: string
  /** 0: the boot device; -1: not bootable. */
  bootIndex: number
  deleteOnTermination: boolean
  source: 'volume' | 'image' | 'snapshot' | 'blank'
  /** source volume: the volume (its status checked again when it is reserved). */
  volumeId: string
  /** source image: the image (checked active, qcow2 or raw, fitting volume_size). */
  image: Image | undefined
  /** source snapshot: the snapshot. */
  snapshotId: string
  /** GiB (a volume the server makes). */
  sizeGb: number
  /** The type of a volume the server makes. */
  volumeTypeId: string
  /** Its type's volume_backend_name ('' any backend). */
  backendName: string
  multiattach: boolean
  bootable: boolean
}

export interface BlockDevicePlan {
  volumes: PlannedVolume[]
  /** The server boots from a volume (its root disk is not an image overlay). */
  bootFromVolume: boolean
  /** The image a mapping names as the image-backed root disk (source image, destination local, boot_index 0). */
  rootImage: string | undefined
  /** The hosts the server may go to (where its new volumes can be made: VolumeHostFilter), with why; undefined: any. */
  hosts: { hosts: string[]; why: string } | undefined
  /** Volumes made per server, and their GiB. */
  newVolumes: number
  newGigabytes: number
  /** The image the boot volume is made from (its min_ram is checked against the flavor), if any. */
  bootImage: Image | undefined
}

export interface BlockDeviceDeps {
  images: ImageCatalog
  volumeTypes: VolumeTypeCatalog
  volumeBackends: VolumeBackends
}

/**
 * Checks and resolves the mappings of a request.
 * @param imageRef the request's image_ref ('' to boot from a volume).
 * @param maxCount the request's max_count (an existing volume attaches to one server).
 * @throws InvalidArgument, NotFound, FailedPrecondition naming the mapping (`block_device_mappings[i].field`) and why.
 */
export async function planBlockDevices(db: Db, deps: BlockDeviceDeps, mappings: BlockDeviceMapping[], imageRef: string, maxCount: number, caller: ServerCaller, findImage: (ref: string, field: string) => Promise<Image>): Promise<BlockDevicePlan> {
  if (mappings.length > DEVICES.length) throw new InvalidArgument(`${mappings.length} block device mappings; a server has at most ${DEVICES.length} (vda to vdz)`, { field: 'block_device_mappings' })
  const at = (i: number, f?: string) => `block_device_mappings[${i}]${f ? `.${f}` : ''}`
  const volumes: PlannedVolume[] = []
  const bootIndexes: number[] = []
  const hostsOf = new Map<string, string[]>()
  let rootImage: string | undefined
  let bootFromVolume = false
  const seenVolumes = new Set<string>()
  for (const [i, m] of mappings.entries()) {
    const source = m.sourceType ?? ''
    if (!(SOURCE_TYPES as readonly string[]).includes(source)) throw new InvalidArgument(`${at(i, 'source_type')} must be one of ${SOURCE_TYPES.join(', ')}, got '${source}'`, { field: at(i, 'source_type') })
    const destination = m.destinationType || (source === 'image' || source === 'blank' ? 'local' : 'volume')
    if (!(DESTINATION_TYPES as readonly string[]).includes(destination)) throw new InvalidArgument(`${at(i, 'destination_type')} must be volume or local, got '${destination}'`, { field: at(i, 'destination_type') })
    const bootIndex = m.bootIndex !== undefined && m.bootIndex >= 0 ? m.bootIndex : -1
    if (!Number.isInteger(bootIndex)) throw new InvalidArgument(`${at(i, 'boot_index')} must be an integer, got ${m.bootIndex}`, { field: at(i, 'boot_index') })
    if (bootIndex >= 0) bootIndexes.push(bootIndex)
    const uuid = m.uuid ?? ''
    if (source === 'blank' ? uuid !== '' : uuid === '') {
      throw new InvalidArgument(source === 'blank' ? `${at(i, 'uuid')} must be empty for source_type blank (a new empty volume)` : `${at(i, 'uuid')} is required for source_type ${source} (the ${source} to use, id or name)`, { field: at(i, 'uuid') })
    }
    if (destination === 'local') {
      // The image-backed root disk is the only local disk (no ephemeral or swap devices).
      if (source !== 'image' || bootIndex !== 0) throw new InvalidArgument(`${at(i, 'destination_type')} local is only for the image root disk (source_type image, boot_index 0); source_type ${source} needs destination_type volume`, { field: at(i, 'destination_type') })
      if (imageRef && imageRef !== uuid) throw new InvalidArgument(`${at(i)} boots from image '${uuid}' and image_ref names '${imageRef}': a server has one boot device`, { field: at(i, 'uuid') })
      rootImage = uuid
      continue
    }
    if (bootIndex === 0) {
      if (imageRef) throw new InvalidArgument(`${at(i)} has boot_index 0 and image_ref is '${imageRef}': a server has one boot device; leave image_ref empty to boot from the volume`, { field: at(i, 'boot_index') })
      if (source === 'blank') throw new InvalidArgument(`${at(i)}: a blank volume has nothing to boot; the boot device (boot_index 0) comes from an image, a volume or a snapshot`, { field: at(i, 'boot_index') })
      bootFromVolume = true
    }
    const size = m.volumeSize ?? 0
    if (!Number.isInteger(size) || size < 0) throw new InvalidArgument(`${at(i, 'volume_size')} must be a whole number of GiB, got ${size}`, { field: at(i, 'volume_size') })
    const made = source !== 'volume'
    const v: PlannedVolume = {
      device: '', bootIndex, deleteOnTermination: m.deleteOnTermination ?? made, source: source as PlannedVolume['source'],
      volumeId: '', image: undefined, snapshotId: '', sizeGb: 0, volumeTypeId: '', backendName: '', multiattach: false, bootable: false,
    }
    if (source === 'volume') {
      if (maxCount > 1) throw new InvalidArgument(`${at(i)}: volume ${uuid} can be attached to one server, and max_count is ${maxCount}`, { field: 'max_count' })
      const vol = await findRow(db, 'volumes', uuid, caller, at(i, 'uuid'))
      if (vol.project_id !== caller.projectId) throw new FailedPrecondition(`volume ${vol.id} belongs to project ${vol.project_id}; a server's volumes must be of its own project (${caller.projectId})`, { field: at(i, 'uuid') })
      if (seenVolumes.has(vol.id)) throw new InvalidArgument(`${at(i, 'uuid')}: volume ${vol.id} is mapped twice`, { field: at(i, 'uuid') })
      seenVolumes.add(vol.id)
      beginVolumeAction(vol.multiattach === 1 ? 'attach_multi' : 'attach', vol, at(i, 'uuid'))
      if (vol.status === 'in-use') throw new FailedPrecondition(`volume ${vol.id} is in-use; a new server takes available volumes only`, { field: at(i, 'uuid') })
      if (bootIndex === 0 && vol.bootable !== 1) throw new FailedPrecondition(`volume ${vol.id} is not bootable, so it cannot be the boot device; mark it with strato volume set --bootable ${vol.id}`, { field: at(i, 'uuid') })
      // An existing volume sets no host: on another host than the server's, it is attached over the network.
      Object.assign(v, { volumeId: vol.id, sizeGb: vol.size, multiattach: vol.multiattach === 1, bootable: vol.bootable === 1 })
    } else if (source === 'snapshot') {
      const s = await findRow(db, 'volume_snapshots', uuid, caller, at(i, 'uuid'))
      checkSnapshotSource(s)
      const parent = await db.selectFrom('volumes').select(['host', 'bootable']).where('id', '=', s.volume_id).executeTakeFirstOrThrow()
      const sizeGb = size || s.size
      if (sizeGb < s.size) throw new InvalidArgument(`${at(i, 'volume_size')} ${sizeGb} GiB is smaller than snapshot ${s.id} (${s.size} GiB)`, { field: at(i, 'volume_size') })
      Object.assign(v, { snapshotId: s.id, sizeGb, bootable: parent.bootable === 1 })
      // Copy-on-write happens beside the snapshot: the volume is made on its host.
      hostsOf.set(parent.host, [...(hostsOf.get(parent.host) ?? []), `snapshot ${s.id}`])
    } else {
      if (!size) throw new InvalidArgument(`${at(i, 'volume_size')} is required for source_type ${source} with destination_type volume (the size of the volume to make, in GiB)`, { field: at(i, 'volume_size') })
      if (source === 'image') {
        const image = await findImage(uuid, at(i, 'uuid'))
        const needs = Math.max(image.minDisk, Math.ceil(image.virtualSize / GiB))
        if (size < needs) throw new InvalidArgument(`${at(i, 'volume_size')} ${size} GiB is smaller than image ${image.name || image.id} needs (${needs} GiB: its virtual size or min_disk)`, { field: at(i, 'volume_size') })
        Object.assign(v, { image, bootable: true })
      }
      v.sizeGb = size
    }
    if (made) {
      const type = await deps.volumeTypes.resolve(db, m.volumeType, caller).catch((err) => {
        throw err instanceof NotFound ? new NotFound(`${at(i, 'volume_type')}: volume type '${m.volumeType}' not found; see strato volume type list`, { field: at(i, 'volume_type'), cause: err }) : err
      })
      Object.assign(v, { volumeTypeId: type.id, backendName: type.extraSpecs.volume_backend_name ?? '', multiattach: specIsTrue(type.extraSpecs.multiattach) })
    }
    v.device = deviceOf(m.deviceName, bootIndex, at(i, 'device_name'))
    volumes.push(v)
  }

  // Nova's InvalidBDMBootSequence: boot indexes are 0, 1, 2… with no gap and no repeat.
  const sorted = [...bootIndexes].sort((a, b) => a - b)
  if (sorted.length && sorted.some((b, i) => b !== i)) throw new InvalidArgument(`the boot indexes of the block device mappings (${sorted.join(', ')}) must be 0, 1, 2… with no gap and no repeat: a server has one boot device`, { field: 'block_device_mappings' })
  if (!imageRef && !rootImage && !bootFromVolume) {
    throw new InvalidArgument('image_ref is empty, so a block device mapping with boot_index 0 is required (the volume to boot from: strato server create --volume or --boot-from-volume)', { field: 'image_ref' })
  }
  assignDevices(volumes, !bootFromVolume)

  const newOnes = volumes.filter((v) => v.source !== 'volume')
  let hosts: BlockDevicePlan['hosts']
  if (hostsOf.size > 1) {
    throw new FailedPrecondition(`the server's volumes from snapshots would be made on different hosts (${[...hostsOf].map(([h, what]) => `${what.join(', ')} on ${h || '(none)'}`).join('; ')}); a volume from a snapshot is made beside it, by the server's host, so they must share one`, { field: 'block_device_mappings' })
  } else if (hostsOf.size === 1) {
    const [host, what] = [...hostsOf][0]!
    hosts = { hosts: [host], why: `hosts where ${what.join(', ')} ${what.length > 1 ? 'are' : 'is'}` }
  } else if (newOnes.length) {
    const backends = new Set(newOnes.map((v) => v.backendName))
    if (backends.size > 1) throw new FailedPrecondition(`the volumes to make have types of different backends (${[...backends].join(', ')}); a server's volumes share its host`, { field: 'block_device_mappings' })
    const sizeGb = newOnes.reduce((n, v) => n + v.sizeGb, 0)
    const found = await deps.volumeBackends.hostsWithRoom(db, { sizeGb, availabilityZone: '', backendName: [...backends][0]! })
    hosts = { hosts: found, why: `volume backends with room for ${sizeGb} GiB` }
  }
  const bootVolume = volumes.find((v) => v.bootIndex === 0)
  return {
    volumes, bootFromVolume, rootImage, hosts,
    newVolumes: newOnes.length, newGigabytes: newOnes.reduce((n, v) => n + v.sizeGb, 0),
    bootImage: bootVolume?.image,
  }
}

/**
 * The block device mappings an image defines (Nova's image-defined BDMs,
 * `block_device_mapping` with `bdm_v2` True, as a volume-backed server
 * snapshot records them: `server-snapshots.ts`), as a create request's; a
 * server created from such an image boots from the volumes they make.
 * Undefined when the image defines none.
 * @throws InvalidArgument when the property is not a list of mappings (naming the image).
 */
export function imageBlockDevices(image: Pick<Image, 'id' | 'properties'>): BlockDeviceMapping[] | undefined {
  const text = image.properties.block_device_mapping
  if (!text || !/^true$/i.test(image.properties.bdm_v2 ?? '')) return undefined
  const bad = (why: string) => new InvalidArgument(`image ${image.id}: its block_device_mapping property ${why}; it cannot be booted`, { field: 'image_ref' })
  let list: unknown
  try {
    list = JSON.parse(text)
  } catch {
    throw bad('is not JSON')
  }
  if (!Array.isArray(list) || !list.length) throw bad('is not a list of mappings')
  return list.map((m: Record<string, unknown>) => {
    if (m === null || typeof m !== 'object') throw bad('has an entry that is not a mapping')
    const text = (k: string) => (typeof m[k] === 'string' ? m[k] as string : undefined)
    const source = text('source_type') ?? ''
    const uuid = source === 'snapshot' ? text('snapshot_id') : source === 'volume' ? text('volume_id') : source === 'image' ? text('image_id') : undefined
    return {
      sourceType: source, ...(text('destination_type') ? { destinationType: text('destination_type') } : {}), ...(uuid ? { uuid } : {}),
      ...(typeof m.boot_index === 'number' ? { bootIndex: m.boot_index } : {}), ...(typeof m.volume_size === 'number' ? { volumeSize: m.volume_size } : {}),
      ...(typeof m.delete_on_termination === 'boolean' ? { deleteOnTermination: m.delete_on_termination } : {}),
      ...(text('device_name') ? { deviceName: text('device_name') } : {}), ...(text('volume_type') ? { volumeType: text('volume_type') } : {}),
    }
  })
}

/** The device asked for: vda only for the boot device, which is always vda; '' to pick one later. */
function deviceOf(given: string | undefined, bootIndex: number, field: string): string {
  if (!given) return bootIndex === 0 ? 'vda' : ''
  const d = given.startsWith('/dev/') ? given.slice('/dev/'.length) : given
  if (!DEVICES.includes(d)) throw new InvalidArgument(`${field} must be /dev/vda to /dev/vdz (virtio disks), got '${given}'`, { field })
  if (bootIndex === 0 && d !== 'vda') throw new InvalidArgument(`${field}: the boot device (boot_index 0) is /dev/vda, got '${given}'`, { field })
  if (bootIndex !== 0 && d === 'vda') throw new InvalidArgument(`${field}: /dev/vda is the boot device; other volumes are /dev/vdb to /dev/vdz`, { field })
  return d
}

/** Gives the volumes with no device the next free ones after vda, in order. @throws InvalidArgument for a device given twice. */
function assignDevices(volumes: PlannedVolume[], rootIsImage: boolean): void {
  const taken = new Set<string>(rootIsImage ? ['vda'] : [])
  for (const v of volumes) {
    if (!v.device) continue
    if (taken.has(v.device)) throw new InvalidArgument(`device /dev/${v.device} is given to two block devices${v.device === 'vda' ? ' (vda is the image root disk)' : ''}`, { field: 'block_device_mappings' })
    taken.add(v.device)
  }
  for (const v of volumes) {
    if (v.device) continue
    const free = DEVICES.find((d) => d !== 'vda' && !taken.has(d))
    if (!free) throw new InvalidArgument('no device is left for a block device: a server has vda to vdz', { field: 'block_device_mappings' })
    v.device = free
    taken.add(free)
  }
}
