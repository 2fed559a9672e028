/**
 * The checks of a create request (Nova's compute API `_validate_and_build_base_options`):
 * everything it names — flavor, image, keypair, user data, metadata, zone,
 * networks and ports, security groups, server group — is checked and
 * resolved before anything is made, so a bad request fails with its reason
 * and leaves nothing behind. The result is a CreatePlan for `server-create.ts`.
 */
import { isUuid } from '../../proto/ids.js'
import { Conflict, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import { checkName, checkText } from '../identity/validate.js'
import type { FlavorCatalog, Flavor } from './flavors.js'
import type { KeypairCatalog } from './keypairs.js'
import type { ImageCatalog, Image, ImageViewer } from '../image/catalog.js'
import type { PortCatalog } from '../network/ports.js'
import type { SecurityGroupCatalog } from '../network/security-groups.js'
import { loadNetwork, canModify, networksUsableBy, type Actor } from '../network/access.js'
import type { HostRegistry } from './hosts.js'
import type { ServerGroupCatalog } from './server-groups.js'
import { checkHostname, type CreateServer, type ServerCaller } from './server-model.js'
import { imageBlockDevices, planBlockDevices, type BlockDevicePlan } from './server-create-bdm.js'
import type { VolumeTypeCatalog } from '../volume/types.js'
import type { VolumeBackends } from '../volume/backends.js'
import { KEY_LIMITS } from './ssh-keys.js'

/**
 * Nova's limits: 65535 bytes of user data *once base64 encoded* (nova's
 * MAX_USERDATA_SIZE, checked on the text as given: "must be no larger than
 * 65535 bytes once base64 encoded"), 128 metadata items of 255-character keys
 * and values. With the keypair line limit they keep a build spec far below
 * the bus's payload limit (1 MB by default).
 */
const USER_DATA_MAX = 65535
/** Metadata items per server or image (Nova's metadata_items quota; its image proxy counts against it too). */
export const METADATA_MAX = 128
/** Nova's `max_count` has no limit but the quota; this one keeps a typo from queueing a million claims. */
const MAX_COUNT = 1000

/** A NIC asked for, resolved before anything is made. */
export type NicPlan = { kind: 'network'; networkId: string; fixedIp?: string } | { kind: 'port'; portId: string }

/** A create request once every part of it has been checked and resolved. */
export interface CreatePlan {
  caller: ServerCaller
  projectId: string
  actor: Actor
  name: string
  /** The hostname asked for (every server made gets it); undefined: each derives its own from its name. */
  hostname: string | undefined
  description: string
  minCount: number
  maxCount: number
  flavor: Flavor
  /** The image of the root disk; undefined when the server boots from a volume. */
  image: Image | undefined
  /** Its block device mappings (volumes), if any. */
  blockDevices: BlockDevicePlan | undefined
  key: { name: string; publicKey: string } | undefined
  userData: string
  /** Whether the host gives the guest a config drive. */
  configDrive: boolean
  metadata: Record<string, string>
  zone: { zone?: string; host?: string }
  nics: NicPlan[]
  /** Security group ids for the ports it makes (undefined: the project's default). */
  groupIds: string[] | undefined
  /** The server group it joins. */
  serverGroup: string | undefined
}

export interface CreatePlannerDeps {
  flavors: FlavorCatalog
  images: ImageCatalog
  keypairs: KeypairCatalog
  ports: PortCatalog
  securityGroups: SecurityGroupCatalog
  hosts: HostRegistry
  serverGroups: ServerGroupCatalog
  volumeTypes: VolumeTypeCatalog
  volumeBackends: VolumeBackends
}

export class CreatePlanner {
  constructor(
    private readonly db: Db,
    private readonly deps: CreatePlannerDeps,
    private readonly config: { defaultAvailabilityZone: string },
  ) {}

  /** Checks and resolves a create request. */
  async plan(req: CreateServer, caller: ServerCaller): Promise<CreatePlan> {
    const projectId = caller.projectId
    if (!projectId) throw new FailedPrecondition('servers belong to projects: use a project-scoped token')
    const name = checkName('name', req.name, 255)
    const description = checkText('description', req.description, 255)
    const minCount = req.minCount || 1
    const maxCount = req.maxCount || minCount
    if (!Number.isInteger(minCount) || minCount < 1) throw new InvalidArgument(`min_count must be an integer ≥ 1, got ${minCount}`, { field: 'min_count' })
    if (!Number.isInteger(maxCount) || maxCount < minCount || maxCount > MAX_COUNT) throw new InvalidArgument(`max_count must be an integer from min_count (${minCount}) to ${MAX_COUNT}, got ${maxCount}`, { field: 'max_count' })
    const hostname = req.hostname === undefined ? undefined : checkHostname(req.hostname, true)
    // Nova's AmbiguousHostnameForMultipleInstances.
    if (hostname !== undefined && maxCount > 1) throw new InvalidArgument(`Unable to allocate a single hostname to multiple instances (max_count ${maxCount}): leave hostname out, each server derives its own from its name`, { field: 'hostname' })

    const flavor = await this.findFlavor(req.flavorRef, caller)
    let mappings = req.blockDeviceMappings ?? []
    let imageRef = req.imageRef ?? ''
    // An image that defines block devices (a volume-backed server's snapshot) boots from the volumes
    // they make, unless the request names its own boot device (Nova merges the two the same way).
    // The image named by image_ref, read once (four statements) whether it defines block devices or is the root disk.
    let named: Image | undefined
    if (imageRef && !mappings.some((m) => m.bootIndex === 0)) {
      named = await this.findImage(imageRef, caller)
      const defined = imageBlockDevices(named)
      if (defined) {
        mappings = [...defined, ...mappings]
        imageRef = ''
        named = undefined
      }
    }
    const blockDevices = mappings.length
      ? await planBlockDevices(this.db, this.deps, mappings, imageRef, maxCount, caller, (ref, field) => this.findImage(ref, caller, field))
      : undefined
    const shared = req.multiattach === false ? blockDevices?.volumes.find((v) => v.source === 'volume' && v.multiattach) : undefined
    if (shared) throw new FailedPrecondition(`volume ${shared.volumeId} is a multiattach volume: those are attached from compute API microversion 2.60 on`, { field: 'block_device_mapping_v2' })
    const image = blockDevices?.bootFromVolume ? undefined : (named ?? (await this.findImage(imageRef || blockDevices?.rootImage, caller)))
    if (image) this.checkImageFits(image, flavor)
    // Booted from a volume, the flavor's disk is not the root disk (Nova skips its size checks); min_ram still holds.
    const bootImage = blockDevices?.bootImage
    if (bootImage && flavor.ram < bootImage.minRam) throw new FailedPrecondition(`flavor ${flavor.name} has ${flavor.ram} MiB of RAM; image ${bootImage.name || bootImage.id} of the boot volume needs min_ram ${bootImage.minRam} MiB`, { field: 'flavor_ref' })
    const key = req.keyName ? await this.deps.keypairs.get(req.keyName, caller.userId).catch((err) => {
      throw err instanceof NotFound ? new NotFound(`keypair '${req.keyName}' not found for user ${caller.userId}; create or import it with: strato keypair create`, { field: 'key_name', cause: err }) : err
    }) : undefined
    // Keys imported before the import limits existed would make a build spec the bus cannot carry.
    if (key && Buffer.byteLength(key.publicKey) > KEY_LIMITS.lineMaxBytes) {
      throw new InvalidArgument(`keypair '${key.name}' is ${Buffer.byteLength(key.publicKey)} bytes, over the ${KEY_LIMITS.lineMaxBytes}-byte limit of a public key line; import a smaller key`, { field: 'key_name' })
    }
    const userData = checkUserData(req.userData)
    const metadata = checkMetadata(req.metadata)
    const zone = await this.parseZone(req.availabilityZone, caller)
    const actor = actorOf(caller)
    const nics = await this.planNics(req, actor, projectId)
    const groupIds = await this.resolveGroups(req.securityGroups, actor, projectId)
    const serverGroup = req.group ? await this.deps.serverGroups.resolve(req.group, caller) : undefined
    return { caller, projectId, actor, name, hostname, description, minCount, maxCount, flavor, image, blockDevices, key, userData, configDrive: req.configDrive !== false, metadata, zone, nics, groupIds, serverGroup }
  }

  private async findFlavor(ref: string | undefined, caller: ServerCaller): Promise<Flavor> {
    if (!ref) throw new InvalidArgument('flavor_ref is required (a flavor id or name; see strato flavor list)', { field: 'flavor_ref' })
    return this.deps.flavors.find(ref, { isAdmin: caller.isAdmin, projectId: caller.projectId }).catch((err) => {
      throw err instanceof NotFound ? new NotFound(`${err.message}; see strato flavor list`, { field: 'flavor_ref', cause: err }) : err
    })
  }

  private async findImage(ref: string | undefined, caller: ServerCaller, field = 'image_ref'): Promise<Image> {
    if (!ref) throw new InvalidArgument('image_ref is required (an image id or name; see strato image list), or a block device mapping with boot_index 0 to boot from a volume', { field })
    const image = await this.deps.images.get(isUuid(ref) ? { id: ref } : { name: ref }, imageViewer(caller)).catch((err) => {
      throw err instanceof NotFound ? new NotFound(`image '${ref}' not found (by id or name); see strato image list`, { field, cause: err }) : err
    })
    if (image.status !== 'active') throw new FailedPrecondition(`image ${image.id} is ${image.status}, not active${image.status === 'queued' ? ': upload its data first' : ''}`, { field })
    if (image.diskFormat !== 'qcow2' && image.diskFormat !== 'raw') throw new FailedPrecondition(`image ${image.id} is ${image.diskFormat}; servers boot from qcow2 and raw images`, { field })
    return image
  }

  /** Nova's FlavorDiskSmallerThanImage / …MinDisk / FlavorMemoryTooSmall. */
  private checkImageFits(image: Image, flavor: Flavor): void {
    const GiB = 1024 ** 3
    if (flavor.ram < image.minRam) throw new FailedPrecondition(`flavor ${flavor.name} has ${flavor.ram} MiB of RAM; image ${image.name || image.id} needs min_ram ${image.minRam} MiB`, { field: 'flavor_ref' })
    if (flavor.disk > 0 && flavor.disk < image.minDisk) throw new FailedPrecondition(`flavor ${flavor.name}'s disk (${flavor.disk} GiB) is smaller than the image's min_disk (${image.minDisk} GiB)`, { field: 'flavor_ref' })
    if (flavor.disk > 0 && flavor.disk * GiB < image.virtualSize) {
      throw new FailedPrecondition(`flavor ${flavor.name}'s disk (${flavor.disk} GiB) is smaller than image ${image.name || image.id} (${(image.virtualSize / GiB).toFixed(2)} GiB virtual); choose a larger flavor`, { field: 'flavor_ref' })
    }
  }

  private async parseZone(text: string | undefined, caller: ServerCaller): Promise<{ zone?: string; host?: string }> {
    if (!text) return {}
    const [zone, host, ...rest] = text.split(':')
    if (rest.length) throw new InvalidArgument(`availability_zone '${text}' must be ZONE or ZONE:HOST`, { field: 'availability_zone' })
    if (host !== undefined && !caller.isAdmin) throw new PermissionDenied('only cloud admins choose the host (ZONE:HOST)', { field: 'availability_zone' })
    // One row looked up, not every host listed (thousands of hosts, and every request naming a zone).
    if (zone && zone !== this.config.defaultAvailabilityZone && !(await this.deps.hosts.zoneExists(zone))) {
      const zones = new Set([this.config.defaultAvailabilityZone, ...(await this.deps.hosts.zoneNames())])
      throw new InvalidArgument(`availability zone '${zone}' does not exist; zones: ${[...zones].sort().join(', ')}`, { field: 'availability_zone' })
    }
    if (host) {
      const h = await this.deps.hosts.get(host).catch((err) => {
        throw err instanceof NotFound ? new InvalidArgument(`host '${host}' does not exist`, { field: 'availability_zone', cause: err }) : err
      })
      if (zone && h.availabilityZone !== zone) throw new InvalidArgument(`host '${host}' is in zone '${h.availabilityZone}', not '${zone}'`, { field: 'availability_zone' })
    }
    return { ...(zone ? { zone } : {}), ...(host ? { host } : {}) }
  }

  /** The NICs asked for; with none, Nova's "auto": the only network the project can use. */
  private async planNics(req: CreateServer, actor: Actor, projectId: string): Promise<NicPlan[]> {
    const mode = req.networkMode || 'auto'
    if (mode !== 'auto' && mode !== 'none') throw new InvalidArgument(`network_mode must be auto or none, got '${mode}'`, { field: 'network_mode' })
    const asked = req.networks ?? []
    if (asked.length && req.networkMode) throw new InvalidArgument('give networks or network_mode, not both', { field: 'network_mode' })
    if (asked.length === 0) {
      if (mode === 'none') return []
      const usable = await networksUsableBy(this.db, projectId)
      if (usable.length > 1) {
        throw new Conflict(`${usable.length} networks could be meant (${usable.slice(0, 5).map((n) => n.name || n.id).join(', ')}); pick one with networks[].uuid (strato server create --nic net-id=…), or network_mode none`, { field: 'networks' })
      }
      return usable.map((n) => ({ kind: 'network', networkId: n.id }))
    }
    const out: NicPlan[] = []
    const ports = new Set<string>()
    for (const [i, n] of asked.entries()) {
      if (n.port) {
        if (n.uuid || n.fixedIp) throw new InvalidArgument(`networks[${i}]: a port already has its network and addresses; give port alone`, { field: `networks[${i}]` })
        if (ports.has(n.port)) throw new InvalidArgument(`networks[${i}]: port ${n.port} is given twice`, { field: `networks[${i}].port` })
        ports.add(n.port)
        const port = await this.deps.ports.get(n.port, actor).catch((err) => {
          throw err instanceof NotFound ? new NotFound(`port ${n.port} not found`, { field: `networks[${i}].port`, cause: err }) : err
        })
        if (!canModify(actor, port.projectId)) throw new PermissionDenied(`port ${port.id} belongs to another project`, { field: `networks[${i}].port` })
        if (port.deviceId) throw new Conflict(`port ${port.id} is in use by ${port.deviceOwner || 'a device'} ${port.deviceId}`, { field: `networks[${i}].port` })
        out.push({ kind: 'port', portId: port.id })
      } else if (n.uuid) {
        const net = await loadNetwork(this.db, actor, n.uuid, `networks[${i}].uuid`)
        if (!net.shared && !canModify(actor, net.project_id)) throw new FailedPrecondition(`network ${net.id} is neither yours nor shared`, { field: `networks[${i}].uuid` })
        out.push({ kind: 'network', networkId: net.id, ...(n.fixedIp ? { fixedIp: n.fixedIp } : {}) })
      } else {
        throw new InvalidArgument(`networks[${i}] needs a network uuid or a port`, { field: `networks[${i}]` })
      }
    }
    return out
  }

  /** Security group names or ids of the caller's project → ids; none given: the project's default group. */
  private async resolveGroups(refs: string[] | undefined, actor: Actor, projectId: string): Promise<string[] | undefined> {
    if (!refs?.length) return undefined
    const ids: string[] = []
    for (const [i, ref] of refs.entries()) {
      let id: string | undefined
      if (isUuid(ref)) id = await this.deps.securityGroups.idInProject(ref, projectId)
      if (!id) {
        if (ref === 'default') id = await this.db.transaction().execute((trx) => this.deps.securityGroups.ensureDefault(trx, projectId))
        else {
          const found = await this.deps.securityGroups.list({ name: ref, projectId }, actor)
          if (found.length > 1) throw new Conflict(`${found.length} security groups are named '${ref}' in the project; use the id`, { field: `security_groups[${i}]` })
          id = found[0]?.id
        }
      }
      if (!id) throw new NotFound(`security group '${ref}' not found in project ${projectId}`, { field: `security_groups[${i}]` })
      if (!ids.includes(id)) ids.push(id)
    }
    return ids
  }
}

export function actorOf(c: ServerCaller): Actor {
  return { isAdmin: c.isAdmin, projectId: c.projectId, readerDomainId: undefined }
}

/** The image rules' view of a compute or volume caller. */
export function imageViewer(c: ServerCaller): ImageViewer {
  return { isAdmin: c.isAdmin, projectId: c.projectId, domainId: c.domainId, canWrite: c.canWrite }
}

function checkUserData(text: string | undefined): string {
  if (!text) return ''
  // The length first: it bounds the regex's work too (line breaks are allowed anywhere and count).
  if (text.length > USER_DATA_MAX) throw new InvalidArgument(`user_data is ${text.length} bytes once base64 encoded; the limit is ${USER_DATA_MAX} (about 48 KiB before encoding)`, { field: 'user_data' })
  if (!/^[A-Za-z0-9+/\r\n]*={0,2}\s*$/.test(text)) throw new InvalidArgument('user_data must be base64', { field: 'user_data' })
  return text
}

/** Nova's (and Cinder's) metadata rules: at most 128 items, keys 1-255 characters, values up to 255. */
export function checkMetadata(m: Record<string, string> | undefined): Record<string, string> {
  const entries = Object.entries(m ?? {})
  if (entries.length > METADATA_MAX) throw new ResourceExhausted(`metadata has ${entries.length} items; the quota is ${METADATA_MAX}`)
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > 255) throw new InvalidArgument(`metadata keys must be 1-255 characters, got '${k.slice(0, 40)}'`, { field: 'metadata' })
    if (v.length > 255) throw new InvalidArgument(`metadata value of '${k}' is ${v.length} characters; the limit is 255`, { field: `metadata.${k}` })
  }
  return Object.fromEntries(entries)
}

