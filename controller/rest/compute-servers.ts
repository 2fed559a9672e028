/**
 * Nova's servers over REST, on ServerCatalog: create, list, show, delete,
 * update (name, description, hostname), the actions Strato has (os-start, os-stop,
 * reboot, createImage, createBackup, os-getConsoleOutput, os-resetState),
 * addresses, interfaces and metadata.
 *
 * The server view per microversion (Tempest's schemas, additionalProperties
 * false): 2.3 adds the admin-only OS-EXT-SRV-ATTR hostname, reservation_id,
 * launch_index, kernel_id, ramdisk_id, root_device_name, user_data and the
 * volumes' delete_on_termination; 2.9 `locked`; 2.19 `description`; 2.26
 * `tags`; 2.47 the flavor embedded instead of linked; 2.63
 * `trusted_image_certificates`; 2.71 `server_groups` (show only); 2.73
 * `locked_reason`; 2.90 OS-EXT-SRV-ATTR:hostname for owners too (the kept
 * hostname, settable on create and PUT, an FQDN from 2.94); 2.96
 * `pinned_availability_zone` (the zone the create asked for, else null).
 * Strato has no locks, tags, trusted certificates or
 * volumes yet: those show as Nova shows a server without them.
 */
import { isUuid } from '../../proto/ids.js'
import { FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, StratoError } from '../../proto/errors.js'
import { checkHostname, type CreateServer, type ListServers, type ServerCaller, type ServerListing, type ServerView } from '../compute/servers.js'
import type { BlockDeviceMapping } from '../compute/server-model.js'
import { actorOf } from '../compute/server-create-plan.js'
import { bodyObject, keptAnswer, type RestRequest, type Route } from './http.js'
import type { RestDomain } from './services.js'
import { microversion, mv } from './compute-microversion.js'
import { bookmark, boolParam, callerOf, imageServiceUrl, intParam, isoMicro, isoZ, links, nextLink, onlyQuery } from './compute-common.js'
import { int, obj, onlyKeys, str, stringMap } from './body.js'

const S = 'strato.compute.v1.Servers'

/** Nova's `addresses`: per network name, each address with its type and MAC. */
function addressesOf(s: ServerView): Record<string, unknown[]> {
  const out: Record<string, unknown[]> = {}
  for (const a of s.addresses) {
    ;(out[a.networkName || a.networkId] ??= []).push({ version: a.version, addr: a.addr, 'OS-EXT-IPS:type': a.type, 'OS-EXT-IPS-MAC:mac_addr': a.macAddr })
  }
  return out
}

/** The detailed server as `req`'s microversion and the caller's role show it. */
export function serverView(req: RestRequest, s: ServerView, caller: ServerCaller, show = false): Record<string, unknown> {
  const v = microversion(req)
  const flavor = v >= mv('2.47')
    ? { vcpus: s.flavor.vcpus, ram: s.flavor.ram, disk: s.flavor.disk, ephemeral: s.flavor.ephemeral, swap: s.flavor.swap, original_name: s.flavor.name }
    : { id: s.flavor.id, links: bookmark(req, 'flavors', s.flavor.id) }
  const out: Record<string, unknown> = {
    id: s.id, name: s.name, status: s.status, tenant_id: s.projectId, user_id: s.userId, metadata: s.metadata, hostId: s.hostId,
    image: s.imageId ? { id: s.imageId, links: bookmark(req, 'images', s.imageId) } : '',
    flavor, created: isoZ(s.createdAt), updated: isoZ(s.updatedAt), addresses: addressesOf(s), accessIPv4: '', accessIPv6: '',
    links: links(req, 'servers', s.id), 'OS-DCF:diskConfig': 'MANUAL',
    'OS-EXT-AZ:availability_zone': s.availabilityZone, config_drive: s.configDrive, key_name: s.keyName || null,
    'OS-SRV-USG:launched_at': isoMicro(s.launchedAt), 'OS-SRV-USG:terminated_at': isoMicro(s.terminatedAt),
    'OS-EXT-STS:task_state': s.taskState || null, 'OS-EXT-STS:vm_state': s.vmState, 'OS-EXT-STS:power_state': s.powerState,
    'os-extended-volumes:volumes_attached': s.volumesAttached.map((id) => (v >= mv('2.3') ? { id, delete_on_termination: s.volumesDeletedWith.includes(id) } : { id })),
  }
  // Nova shows progress only while a server is in one of these statuses.
  if (['ACTIVE', 'BUILD', 'REBUILD', 'RESIZE', 'VERIFY_RESIZE', 'MIGRATING'].includes(s.status)) out.progress = 0
  if (s.securityGroups.length) out.security_groups = s.securityGroups.map((name) => ({ name }))
  if (s.fault && (s.status === 'ERROR' || s.status === 'DELETED')) {
    out.fault = { code: Number(s.fault.code) || 500, created: isoZ(s.fault.createdAt), message: s.fault.message }
  }
  if (caller.isAdmin) {
    Object.assign(out, { 'OS-EXT-SRV-ATTR:host': s.host || null, 'OS-EXT-SRV-ATTR:instance_name': s.instanceName, 'OS-EXT-SRV-ATTR:hypervisor_hostname': s.hypervisorHostname || null })
    if (v >= mv('2.3')) {
      Object.assign(out, {
        'OS-EXT-SRV-ATTR:reservation_id': s.reservationId, 'OS-EXT-SRV-ATTR:launch_index': s.launchIndex, 'OS-EXT-SRV-ATTR:hostname': s.hostname,
        'OS-EXT-SRV-ATTR:kernel_id': '', 'OS-EXT-SRV-ATTR:ramdisk_id': '', 'OS-EXT-SRV-ATTR:root_device_name': '/dev/vda', 'OS-EXT-SRV-ATTR:user_data': s.userData || null,
      })
    }
  }
  if (v >= mv('2.9')) out.locked = false
  if (v >= mv('2.19')) out.description = s.description || null
  if (v >= mv('2.26')) out.tags = []
  if (v >= mv('2.63')) out.trusted_image_certificates = null
  if (v >= mv('2.71') && show) out.server_groups = s.serverGroups
  if (v >= mv('2.73')) out.locked_reason = null
  // 2.90: the hostname is the owner's to see (and set) too.
  if (v >= mv('2.90') && !('OS-EXT-SRV-ATTR:hostname' in out)) out['OS-EXT-SRV-ATTR:hostname'] = s.hostname
  if (v >= mv('2.96')) out.pinned_availability_zone = s.pinnedAvailabilityZone || null
  return out
}

/**
 * Each view's JSON (UTF-8) by what shapes it (microversion, admin or not,
 * show or list, base URL). ServerViews hands out the same frozen view object
 * for as long as its server is unchanged, so JSON kept with it is current for
 * exactly as long: an unchanged server is neither rendered nor encoded again,
 * and a listing is one copy of its servers' bytes.
 */
const rendered = new WeakMap<ServerView, Map<string, Buffer>>()

/** A few shapes per view (microversions, base URLs): more are rendered, not kept. */
const RENDERED_SHAPES = 8

/** `serverView(…)` as JSON, kept with the view. */
export function serverJson(req: RestRequest, s: ServerView, caller: ServerCaller, show = false): Buffer {
  const key = `${microversion(req)} ${caller.isAdmin ? 'a' : 'm'}${show ? 's' : 'l'} ${req.baseUrl}`
  let shapes = rendered.get(s)
  if (!shapes) rendered.set(s, (shapes = new Map()))
  let json = shapes.get(key)
  if (json === undefined) {
    json = Buffer.from(JSON.stringify(serverView(req, s, caller, show)))
    if (shapes.size < RENDERED_SHAPES) shapes.set(key, json)
  }
  return json
}

const COMMA = Buffer.from(',')

/** `{"<key>":[a,b,…]<tail>}` from JSON parts, in one copy. */
export function jsonList(key: string, parts: Buffer[], tail = ''): Buffer {
  const out: Buffer[] = [Buffer.from(`{"${key}":[`)]
  for (const [i, p] of parts.entries()) {
    if (i) out.push(COMMA)
    out.push(p)
  }
  out.push(Buffer.from(`]${tail}}`))
  return Buffer.concat(out)
}

/** What PUT answers (before 2.75): the view without the extended attributes, key, groups, volumes and config drive. */
function updatedView(req: RestRequest, s: ServerView, caller: ServerCaller): Record<string, unknown> {
  const out = serverView(req, s, caller, true)
  for (const k of Object.keys(out)) {
    if (/^OS-(EXT-|SRV-USG)/.test(k) || ['config_drive', 'key_name', 'security_groups', 'os-extended-volumes:volumes_attached'].includes(k)) delete out[k]
  }
  return out
}

/** The server named by the path: an id (Nova does not look servers up by name; clients list for that). */
async function serverOf(d: RestDomain, req: RestRequest): Promise<ServerView> {
  const id = req.params.id!
  if (!isUuid(id)) throw new NotFound(`Instance ${id} could not be found.`)
  return d.servers.get(id, callerOf(req))
}

/** What Strato has no way to honour is refused by name, not ignored. */
const UNSUPPORTED: Record<string, string> = {
  block_device_mapping: 'the legacy block device mapping (use block_device_mapping_v2)', personality: 'file injection',
  tags: 'server tags', trusted_image_certificates: 'trusted image certificates', host: 'choosing a host by field (use availability_zone ZONE:HOST)',
  hypervisor_hostname: 'choosing a hypervisor',
  accessIPv4: 'access IPs', accessIPv6: 'access IPs',
}

/** The create body's keys Strato takes (the unsupported ones are refused above, by name). */
const CREATE_KEYS = [
  'name', 'imageRef', 'flavorRef', 'networks', 'security_groups', 'key_name', 'user_data', 'metadata', 'availability_zone',
  'min_count', 'max_count', 'return_reservation_id', 'config_drive', 'description', 'OS-DCF:diskConfig', 'block_device_mapping_v2',
  // Taken and not applied, as Nova's libvirt driver does by default (inject_password false); no adminPass is returned.
  'adminPass',
]

/** The keys of a block_device_mapping_v2 entry Strato takes (Nova's schema; the rest are refused by name). */
const BDM_KEYS = ['source_type', 'destination_type', 'uuid', 'boot_index', 'volume_size', 'delete_on_termination', 'device_name', 'volume_type', 'disk_bus', 'device_type']

/**
 * Nova's block_device_mapping_v2 as Strato's mappings: numbers and booleans
 * may come as strings (Nova's schema allows both); the mappings' rules are
 * the domain's (`server-create-bdm.ts`).
 */
function blockDeviceMappings(list: unknown, v: number): BlockDeviceMapping[] {
  if (!Array.isArray(list)) throw new InvalidArgument('block_device_mapping_v2 must be a list of objects', { field: 'block_device_mapping_v2' })
  return list.map((m, i) => {
    const at = `block_device_mapping_v2[${i}]`
    if (!obj(m)) throw new InvalidArgument(`${at} must be an object`, { field: at })
    const extra = Object.keys(m).find((k) => !BDM_KEYS.includes(k))
    if (extra) throw new InvalidArgument(`${at}.${extra}: Strato does not support it in a block device mapping (it takes ${BDM_KEYS.join(', ')})`, { field: `${at}.${extra}` })
    if (m.volume_type !== undefined && v < mv('2.67')) throw new InvalidArgument(`${at}.volume_type needs microversion 2.67`, { field: `${at}.volume_type` })
    if (m.disk_bus !== undefined && m.disk_bus !== null && m.disk_bus !== 'virtio') throw new InvalidArgument(`${at}.disk_bus: Strato's disks are virtio, got ${JSON.stringify(m.disk_bus)}`, { field: `${at}.disk_bus` })
    if (m.device_type !== undefined && m.device_type !== null && m.device_type !== 'disk') throw new InvalidArgument(`${at}.device_type: Strato's block devices are disks, got ${JSON.stringify(m.device_type)}`, { field: `${at}.device_type` })
    const int = (k: string): number | undefined => {
      const x = m[k]
      if (x === undefined || x === null || x === '') return undefined
      const n = typeof x === 'number' ? x : typeof x === 'string' && /^-?\d+$/.test(x) ? Number(x) : NaN
      if (!Number.isInteger(n)) throw new InvalidArgument(`${at}.${k} must be an integer, got ${JSON.stringify(x)}`, { field: `${at}.${k}` })
      return n
    }
    const text = (k: string): string | undefined => {
      const x = m[k]
      if (x === undefined || x === null) return undefined
      if (typeof x !== 'string') throw new InvalidArgument(`${at}.${k} must be a string`, { field: `${at}.${k}` })
      return x
    }
    const out: BlockDeviceMapping = {}
    const set = <K extends keyof BlockDeviceMapping>(k: K, x: BlockDeviceMapping[K] | undefined) => {
      if (x !== undefined) out[k] = x
    }
    set('sourceType', text('source_type'))
    set('destinationType', text('destination_type'))
    set('uuid', text('uuid'))
    set('bootIndex', int('boot_index'))
    set('volumeSize', int('volume_size'))
    set('deviceName', text('device_name'))
    set('volumeType', text('volume_type'))
    const dot = m.delete_on_termination
    if (dot !== undefined && dot !== null) {
      const d = String(dot).toLowerCase()
      if (!['true', 'false', '1', '0', 'yes', 'no'].includes(d)) throw new InvalidArgument(`${at}.delete_on_termination must be a boolean, got ${JSON.stringify(dot)}`, { field: `${at}.delete_on_termination` })
      out.deleteOnTermination = ['true', '1', 'yes'].includes(d)
    }
    return out
  })
}

/**
 * Nova 2.74's `host` and `hypervisor_hostname` (admins only): the one host to
 * boot on. A Strato host has one hypervisor, named as the host, so either
 * names the host; both must name the same one.
 */
function requestedDestination(req: RestRequest, b: Record<string, unknown>): string | undefined {
  const host = str(b, 'host'), node = str(b, 'hypervisor_hostname')
  for (const [k, x] of [['host', host], ['hypervisor_hostname', node]] as const) {
    if (x !== undefined && !/^[a-zA-Z0-9-._]{1,255}$/.test(x)) throw new InvalidArgument(`Invalid input for field/attribute ${k}. Value: ${x}. It must be 1 to 255 letters, digits, '-', '.' or '_'`, { field: k })
  }
  if (!host && !node) return undefined
  if (!callerOf(req).isAdmin) throw new PermissionDenied(`choosing the host (${host ? 'host' : 'hypervisor_hostname'}) is for cloud admins`, { field: host ? 'host' : 'hypervisor_hostname' })
  if (host && node && host !== node) throw new InvalidArgument(`hypervisor_hostname ${node} is not a hypervisor of host ${host} (each Strato host has one hypervisor, named as the host)`, { field: 'hypervisor_hostname' })
  return host ?? node
}

/** The hostname a create or update asks for (2.90; an FQDN from 2.94), as Nova's schemas check it. */
function requestedHostname(b: Record<string, unknown>, v: number): string | undefined {
  if (b.hostname === undefined) return undefined
  if (typeof b.hostname !== 'string') throw new InvalidArgument(`Invalid input for field/attribute hostname. Value: ${JSON.stringify(b.hostname)}. It is not a string`, { field: 'hostname' })
  return checkHostname(b.hostname, v >= mv('2.94'))
}

/** Nova's create body (`{"server": {...}, "os:scheduler_hints": {...}}`) as Strato's create request. */
async function createRequest(req: RestRequest): Promise<{ create: CreateServer; returnReservationId: boolean }> {
  const b = await bodyObject(req, 'server')
  const v = microversion(req)
  const destination = v >= mv('2.74') ? requestedDestination(req, b) : undefined
  for (const [k, what] of Object.entries(UNSUPPORTED)) if (b[k] !== undefined && !(destination && (k === 'host' || k === 'hypervisor_hostname'))) throw new InvalidArgument(`${k}: Strato does not support ${what}`, { field: k })
  // Nova's schema allows nothing else (additionalProperties false).
  if (b.hostname !== undefined && v < mv('2.90')) throw new InvalidArgument("Additional properties are not allowed ('hostname' was unexpected): setting the hostname needs microversion 2.90", { field: 'hostname' })
  onlyKeys(b, [...CREATE_KEYS, ...(v >= mv('2.74') ? ['host', 'hypervisor_hostname'] : []), ...(v >= mv('2.90') ? ['hostname'] : [])])
  const disk = b['OS-DCF:diskConfig']
  if (disk !== undefined && disk !== 'MANUAL') throw new InvalidArgument(`OS-DCF:diskConfig: Strato leaves the guest's partitions as the image has them (MANUAL), got ${JSON.stringify(disk)}`, { field: 'OS-DCF:diskConfig' })
  str(b, 'adminPass')
  const name = str(b, 'name')
  if (name === undefined) throw new InvalidArgument("'name' is a required property", { field: 'name' })
  const flavorRef = b.flavorRef
  if (typeof flavorRef !== 'string' && typeof flavorRef !== 'number') throw new InvalidArgument("'flavorRef' is a required property", { field: 'flavorRef' })
  const create: CreateServer = { name, flavorRef: String(flavorRef) }
  const hostname = requestedHostname(b, v)
  if (hostname !== undefined) create.hostname = hostname
  const imageRef = str(b, 'imageRef')
  if (imageRef) create.imageRef = imageRef.replace(/^.*\/images\//, '') // Nova also takes the image's link
  const description = str(b, 'description')
  if (description !== undefined) {
    if (v < mv('2.19')) throw new InvalidArgument("Additional properties are not allowed ('description' was unexpected)", { field: 'description' })
    create.description = description
  }
  const nets = b.networks
  if (nets === undefined) {
    if (v >= mv('2.37')) throw new InvalidArgument("'networks' is a required property", { field: 'networks' })
  } else if (nets === 'auto' || nets === 'none') {
    if (v < mv('2.37')) throw new InvalidArgument(`networks must be a list before microversion 2.37, got '${nets}'`, { field: 'networks' })
    create.networkMode = nets
  } else if (Array.isArray(nets)) {
    create.networks = nets.map((n, i) => {
      if (!obj(n)) throw new InvalidArgument(`networks[${i}] must be an object`, { field: `networks[${i}]` })
      const out: { uuid?: string; port?: string; fixedIp?: string } = {}
      const uuid = str(n, 'uuid'), port = str(n, 'port'), fixedIp = str(n, 'fixed_ip')
      if (uuid) out.uuid = uuid
      if (port) out.port = port
      if (fixedIp) out.fixedIp = fixedIp
      if (n.tag !== undefined) throw new InvalidArgument(`networks[${i}].tag: Strato does not support device tags`, { field: `networks[${i}].tag` })
      return out
    })
  } else {
    throw new InvalidArgument('networks must be a list, or auto or none (2.37)', { field: 'networks' })
  }
  if (b.security_groups !== undefined) {
    if (!Array.isArray(b.security_groups)) throw new InvalidArgument('security_groups must be a list of {"name": …}', { field: 'security_groups' })
    create.securityGroups = b.security_groups.map((g, i) => {
      if (!obj(g) || typeof g.name !== 'string' || g.name === '') throw new InvalidArgument(`security_groups[${i}] must be {"name": name or id}`, { field: `security_groups[${i}].name` })
      return g.name
    })
  }
  const keyName = str(b, 'key_name')
  if (keyName) create.keyName = keyName
  const userData = str(b, 'user_data')
  if (userData) create.userData = userData
  if (b.metadata !== undefined) {
    if (!obj(b.metadata)) throw new InvalidArgument('metadata must be an object of string values', { field: 'metadata' })
    create.metadata = stringMap(b.metadata, 'metadata')
  }
  const zone = str(b, 'availability_zone')
  if (destination) {
    if (zone?.includes(':')) throw new InvalidArgument('One mechanism with host and/or hypervisor_hostname and another mechanism with zone:host:node are mutually exclusive.', { field: 'availability_zone' })
    // Strato's ZONE:HOST: only that host, the filters still run (Nova's requested destination, not the forced host).
    create.availabilityZone = `${zone ?? ''}:${destination}`
  } else if (zone) create.availabilityZone = zone
  const minCount = int(b.min_count, 'min_count', 1), maxCount = int(b.max_count, 'max_count', 1)
  if (minCount !== undefined) create.minCount = minCount
  if (maxCount !== undefined) create.maxCount = maxCount
  if (b.config_drive !== undefined && b.config_drive !== null && b.config_drive !== '') {
    const c = String(b.config_drive).toLowerCase()
    if (!['true', 'false', '1', '0', 'yes', 'no'].includes(c)) throw new InvalidArgument(`config_drive must be a boolean, got ${JSON.stringify(b.config_drive)}`, { field: 'config_drive' })
    create.configDrive = ['true', '1', 'yes'].includes(c)
  }
  const body = (await req.json()) as Record<string, unknown>
  const hints = body['os:scheduler_hints'] ?? body['OS-SCH-HNT:scheduler_hints']
  if (hints !== undefined) {
    if (!obj(hints)) throw new InvalidArgument('os:scheduler_hints must be an object', { field: 'os:scheduler_hints' })
    const other = Object.keys(hints).filter((k) => k !== 'group')
    if (other.length) throw new InvalidArgument(`scheduler hint '${other[0]}' is not supported; Strato takes 'group'`, { field: `os:scheduler_hints.${other[0]}` })
    if (hints.group !== undefined) create.group = String(hints.group)
  }
  if (b.block_device_mapping_v2 !== undefined) create.blockDeviceMappings = blockDeviceMappings(b.block_device_mapping_v2, v)
  create.multiattach = v >= mv('2.60')
  const rri = b.return_reservation_id
  return { create, returnReservationId: rri === true || String(rri).toLowerCase() === 'true' }
}

/**
 * Nova answers 400 when a create names something that does not exist (an
 * image, flavor, keypair, network, port or group) or that does not fit (a
 * flavor too small for the image, an image not active): the request is bad,
 * not the URL or the state of the cloud.
 */
function asBadRequest(err: unknown): unknown {
  if (err instanceof NotFound || (err instanceof FailedPrecondition && err.field)) return new InvalidArgument(err.message, { cause: err, ...(err.field ? { field: err.field } : {}) })
  return err
}

/** The query parameters of Nova's server listings (index_query_v275; a 400 for others from 2.75). */
const LIST_QUERY = [
  'user_id', 'project_id', 'tenant_id', 'launch_index', 'image_ref', 'image', 'kernel_id', 'ramdisk_id', 'hostname', 'key_name', 'power_state', 'vm_state', 'task_state',
  'host', 'node', 'flavor', 'reservation_id', 'launched_at', 'terminated_at', 'availability_zone', 'name', 'display_name', 'description', 'display_description',
  'locked_by', 'uuid', 'root_device_name', 'config_drive', 'access_ip_v4', 'access_ip_v6', 'auto_disk_config', 'progress', 'sort_key', 'sort_dir', 'all_tenants',
  'soft_deleted', 'deleted', 'status', 'changes-since', 'ip', 'ip6', 'created_at', 'block_device_mapping', 'services', 'metadata', 'system_metadata', 'info_cache',
  'security_groups', 'pci_devices', 'limit', 'marker', 'tags', 'tags-any', 'not-tags', 'not-tags-any', 'changes-before', 'locked',
]

/** Filters Nova takes and Strato cannot apply (it keeps no such value): refused by name where Nova would apply them, not ignored. */
const UNFILTERABLE: Record<string, string> = {
  created_at: 'use changes-since', launched_at: 'Strato does not search launch times', terminated_at: 'Strato does not search termination times', progress: 'Strato keeps no progress',
}

/**
 * The listing filters Nova takes; admin-only ones are dropped for others, as
 * Nova drops them (`remove_invalid_options`). From 2.83 members may filter by
 * availability_zone, config_drive, key_name, power_state, task_state,
 * vm_state, user_id and the time and progress filters too.
 */
function listFilter(req: RestRequest, caller: ServerCaller): ListServers {
  const q = req.query
  const f: ListServers = {}
  onlyQuery(req, LIST_QUERY)
  const name = q.get('name'), status = q.get('status'), image = q.get('image'), flavor = q.get('flavor'), marker = q.get('marker')
  if (name) f.name = name
  if (status) f.status = status
  if (image) f.image = image.replace(/^.*\/images\//, '')
  if (flavor) f.flavor = flavor.replace(/^.*\/flavors\//, '')
  if (marker) f.marker = marker
  // Admins filter by hostname at every version, members from 2.90 (a regular expression, as name).
  const hostname = q.get('hostname')
  if (hostname && (caller.isAdmin || microversion(req) >= mv('2.90'))) f.hostname = hostname
  if (caller.isAdmin || microversion(req) >= mv('2.83')) {
    const unfilterable = Object.keys(UNFILTERABLE).find((k) => q.get(k))
    if (unfilterable) throw new InvalidArgument(`servers cannot be filtered by ${unfilterable}: ${UNFILTERABLE[unfilterable]}`, { field: unfilterable })
    const zone = q.get('availability_zone'), userId = q.get('user_id'), vmState = q.get('vm_state'), taskState = q.get('task_state'), keyName = q.get('key_name'), configDrive = q.get('config_drive'), power = q.get('power_state')
    if (zone) f.availabilityZone = zone
    if (userId) f.userId = userId
    if (vmState) f.vmState = vmState
    if (taskState) f.taskState = taskState
    if (keyName) f.keyName = keyName
    if (configDrive) f.configDrive = configDrive
    if (power) {
      if (!/^\d+$/.test(power)) throw new InvalidArgument(`power_state is a power state's number (0 NOSTATE, 1 RUNNING, 3 PAUSED, 4 SHUTDOWN, 6 CRASHED, 7 SUSPENDED), got '${power}'`, { field: 'power_state' })
      f.powerState = Number(power)
    }
  }
  const limit = intParam(req, 'limit')
  if (limit !== undefined) f.limit = limit
  if (caller.isAdmin) {
    const all = boolParam(req, 'all_tenants') || boolParam(req, 'all_projects')
    const project = q.get('project_id') ?? q.get('tenant_id')
    const host = q.get('host')
    if (all) f.allProjects = true
    if (project && all) f.projectId = project
    if (host) f.host = host
    if (boolParam(req, 'deleted')) f.deleted = true
  } else if (q.has('all_tenants') || q.has('all_projects')) {
    f.allProjects = true // refused by the catalog (403), as Nova's policy refuses it
  }
  return f
}

const NO_SERVERS: ServerListing = Object.freeze([])

async function list(d: RestDomain, req: RestRequest): Promise<{ servers: ServerListing; caller: ServerCaller; limit: number | undefined }> {
  const caller = callerOf(req)
  const f = listFilter(req, caller)
  if (f.limit === 0) return { servers: NO_SERVERS, caller, limit: 0 }
  try {
    return { servers: await d.servers.list(f, caller), caller, limit: f.limit }
  } catch (err) {
    // Before 2.38 an unknown status lists nothing; from 2.38 it is a 400.
    if (err instanceof StratoError && err.field === 'status' && microversion(req) < mv('2.38')) return { servers: NO_SERVERS, caller, limit: f.limit }
    throw err
  }
}

/** Nova's console `length`: absent, null or -1 for everything; else a line count (an integer or its string). */
function consoleLength(v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^-?\d+$/.test(v) ? Number(v) : NaN
  if (!Number.isInteger(n) || n < -1) throw new InvalidArgument(`length must be an integer ≥ -1, got ${JSON.stringify(v)}`, { field: 'length' })
  return n === -1 ? undefined : n
}

/**
 * The last `length` pieces of the log split at newlines, as Nova's compute
 * manager cuts it (`_tail_log`): a log ending in a newline counts the empty
 * piece after it, so `length: 3` of "a\nb\nc\n" is "b\nc\n" (Tempest counts
 * exactly that). 0 is nothing; no length is the whole log.
 */
function novaTail(log: string, length: number | undefined): string {
  if (length === undefined) return log
  if (length === 0) return ''
  return log.split('\n').slice(-length).join('\n')
}

/**
 * The name and metadata of createImage and createBackup as Nova's schemas
 * take them (a name without surrounding spaces, string metadata), and the
 * action's other keys from `others`.
 */
function imageAction(action: string, arg: unknown, others: readonly string[] = []): { name: string; metadata: Record<string, string>; arg: Record<string, unknown> } {
  if (!obj(arg)) throw new InvalidArgument(`${action} takes {"name": "<image name>", ${others.map((k) => `"${k}": …, `).join('')}"metadata": {…}}`, { field: action })
  const other = Object.keys(arg).find((k) => k !== 'name' && k !== 'metadata' && !others.includes(k))
  if (other) throw new InvalidArgument(`Additional properties are not allowed ('${other}' was unexpected)`, { field: `${action}.${other}` })
  if (typeof arg.name !== 'string' || !arg.name.trim() || arg.name !== arg.name.trim()) throw new InvalidArgument(`${action}'s name must be a non-empty string without leading or trailing whitespace`, { field: `${action}.name` })
  const metadata = arg.metadata ?? {}
  if (!obj(metadata) || Object.values(metadata).some((v) => typeof v !== 'string')) throw new InvalidArgument(`${action}'s metadata must be an object of strings`, { field: `${action}.metadata` })
  return { name: arg.name, metadata: metadata as Record<string, string>, arg }
}

/**
 * Nova's createImage: `{"createImage": {"name": …, "metadata": {…}}}` → 202,
 * with the image's URL in `Location` before 2.45 and `{"image_id": …}` from 2.45.
 */
async function createImage(d: RestDomain, req: RestRequest, arg: unknown) {
  const { name, metadata } = imageAction('createImage', arg)
  const s = await serverOf(d, req)
  const r = await d.servers.createImage(s.id, { name, metadata }, callerOf(req))
  if (microversion(req) >= mv('2.45')) return { status: 202, body: { image_id: r.imageId } }
  // nova's glance generate_image_url: the image endpoint, then images/<id>.
  return { status: 202, headers: { location: `${imageServiceUrl(req)}/images/${r.imageId}` } }
}

/**
 * Nova's createBackup: `{"createBackup": {"name": …, "backup_type": …,
 * "rotation": N, "metadata": {…}}}` → 202; a snapshot that is a backup of
 * its type, after which the server's backups of that type beyond `rotation`
 * are deleted. Before 2.45 the answer's `Location` is the image in the image
 * proxy (none for rotation 0: that backup is deleted too); from 2.45 the body
 * is `{"image_id": …}`.
 */
async function createBackup(d: RestDomain, req: RestRequest, arg: unknown) {
  const { name, metadata, arg: b } = imageAction('createBackup', arg, ['backup_type', 'rotation'])
  for (const k of ['backup_type', 'rotation']) if (b[k] === undefined) throw new InvalidArgument(`createBackup needs '${k}' ('name', 'backup_type' and 'rotation' are required)`, { field: `createBackup.${k}` })
  if (typeof b.backup_type !== 'string') throw new InvalidArgument(`createBackup's backup_type must be a string (e.g. "daily"), got ${JSON.stringify(b.backup_type)}`, { field: 'createBackup.backup_type' })
  const rotation = int(b.rotation, 'createBackup.rotation', 0)!
  const s = await serverOf(d, req)
  const r = await d.servers.createImage(s.id, { name, metadata, backup: { type: b.backup_type, rotation } }, callerOf(req))
  if (microversion(req) >= mv('2.45')) return { status: 202, body: { image_id: r.imageId } }
  return { status: 202, ...(rotation > 0 ? { headers: { location: links(req, 'images', r.imageId)[0]!.href } } : {}) }
}

export function serverRoutes(d: RestDomain): Route[] {
  const act = async (req: RestRequest, action: 'start' | 'stop' | 'reboot' | 'reboot_hard' | 'delete') => {
    const s = await serverOf(d, req)
    await d.servers.act(s.id, action, callerOf(req))
  }
  return [
    {
      method: 'POST', path: '/servers', policy: `${S}/CreateServer`,
      handler: async (req) => {
        const { create, returnReservationId } = await createRequest(req)
        const r = await d.servers.create(create, callerOf(req)).catch((err) => Promise.reject(asBadRequest(err)))
        if (returnReservationId) return { status: 202, body: { reservation_id: r.reservationId } }
        const s = r.servers[0]!
        const groups = create.securityGroups?.length ? create.securityGroups : ['default']
        return {
          status: 202,
          headers: { location: links(req, 'servers', s.id)[0]!.href },
          body: { server: { id: s.id, links: links(req, 'servers', s.id), 'OS-DCF:diskConfig': 'MANUAL', security_groups: groups.map((name) => ({ name })) } },
        }
      },
    },
    {
      method: 'GET', path: '/servers', policy: `${S}/ListServers`,
      handler: async (req) => {
        const { servers, limit } = await list(d, req)
        const next = nextLink(req, servers, limit, (s) => s.id)
        const tail = next ? `,"servers_links":${JSON.stringify(next)}` : ''
        return { json: keptAnswer(servers, `ids ${req.baseUrl}${tail}`, () => jsonList('servers', servers.map((s) => Buffer.from(JSON.stringify({ id: s.id, name: s.name, links: links(req, 'servers', s.id) }))), tail)) }
      },
    },
    {
      method: 'GET', path: '/servers/detail', policy: `${S}/ListServers`,
      handler: async (req) => {
        const { servers, caller, limit } = await list(d, req)
        const next = nextLink(req, servers, limit, (s) => s.id)
        const tail = next ? `,"servers_links":${JSON.stringify(next)}` : ''
        const shape = `detail ${microversion(req)} ${caller.isAdmin ? 'a' : 'm'} ${req.baseUrl}${tail}`
        return { json: keptAnswer(servers, shape, () => jsonList('servers', servers.map((s) => serverJson(req, s, caller)), tail)) }
      },
    },
    { method: 'GET', path: '/servers/:id', policy: `${S}/GetServer`, handler: async (req) => ({ json: Buffer.concat([Buffer.from('{"server":'), serverJson(req, await serverOf(d, req), callerOf(req), true), Buffer.from('}')]) }) },
    {
      method: 'PUT', path: '/servers/:id', policy: `${S}/UpdateServer`,
      handler: async (req) => {
        const b = await bodyObject(req, 'server')
        const v = microversion(req)
        const allowed = ['name', ...(v >= mv('2.19') ? ['description'] : []), ...(v >= mv('2.90') ? ['hostname'] : [])]
        const other = Object.keys(b).find((k) => !allowed.includes(k))
        if (other) throw new InvalidArgument(['accessIPv4', 'accessIPv6', 'OS-DCF:diskConfig'].includes(other) ? `${other}: Strato does not keep it` : `Additional properties are not allowed ('${other}' was unexpected)`, { field: other })
        const name = str(b, 'name')
        const hostname = requestedHostname(b, v)
        if (b.description !== undefined && b.description !== null && typeof b.description !== 'string') throw new InvalidArgument('description must be a string or null', { field: 'description' })
        const s = await serverOf(d, req)
        const caller = callerOf(req)
        const updated = await d.servers.update(s.id, { ...(name !== undefined ? { name } : {}), ...(hostname !== undefined ? { hostname } : {}), ...('description' in b ? { description: (b.description as string | null) ?? '' } : {}) }, caller)
        // From 2.75 PUT answers the whole GET representation.
        return { body: { server: v >= mv('2.75') ? serverView(req, updated, caller, true) : updatedView(req, updated, caller) } }
      },
    },
    { method: 'DELETE', path: '/servers/:id', policy: `${S}/DeleteServer`, handler: async (req) => (await act(req, 'delete'), { status: 204 }) },
    {
      // Every action Strato has is allowed to the same roles (cloud_admin or project_member), so one entry governs the route.
      method: 'POST', path: '/servers/:id/action', policy: `${S}/StartServer`,
      handler: async (req) => {
        const b = await req.json()
        if (!obj(b) || Object.keys(b).length !== 1) throw new InvalidArgument('the body must name one action, e.g. {"os-start": null}', { field: 'body' })
        const [name, arg] = Object.entries(b)[0]!
        switch (name) {
          case 'os-start':
            return (await act(req, 'start'), { status: 202 })
          case 'os-stop':
            return (await act(req, 'stop'), { status: 202 })
          case 'reboot': {
            const type = obj(arg) && typeof arg.type === 'string' ? arg.type.toUpperCase() : undefined
            if (type !== 'SOFT' && type !== 'HARD') throw new InvalidArgument("reboot needs {\"type\": \"SOFT\"} or {\"type\": \"HARD\"}", { field: 'reboot.type' })
            return (await act(req, type === 'HARD' ? 'reboot_hard' : 'reboot'), { status: 202 })
          }
          case 'createImage':
            return createImage(d, req, arg)
          case 'createBackup':
            return createBackup(d, req, arg)
          case 'os-getConsoleOutput': {
            if (arg !== null && !obj(arg)) throw new InvalidArgument('os-getConsoleOutput takes {"length": N} or null', { field: 'os-getConsoleOutput' })
            const s = await serverOf(d, req)
            return { body: { output: novaTail(await d.servers.consoleOutput(s.id, undefined, callerOf(req)), consoleLength(arg?.length)) } }
          }
          case 'os-resetState': {
            const state = obj(arg) ? arg.state : undefined
            if (typeof state !== 'string') throw new InvalidArgument('os-resetState needs {"state": "active"} or {"state": "error"}', { field: 'os-resetState.state' })
            const s = await serverOf(d, req)
            return (await d.servers.resetState(s.id, state, callerOf(req)), { status: 202 })
          }
          default:
            throw new InvalidArgument(`There is no such action: ${name}`, { field: name })
        }
      },
    },
    { method: 'GET', path: '/servers/:id/ips', policy: `${S}/GetServer`, handler: async (req) => ({ body: { addresses: addressesOf(await serverOf(d, req)) } }) },
    {
      method: 'GET', path: '/servers/:id/ips/:network', policy: `${S}/GetServer`,
      handler: async (req) => {
        const all = addressesOf(await serverOf(d, req))
        const net = req.params.network!
        if (!(net in all)) throw new NotFound(`Instance is not a member of specified network`)
        return { body: { [net]: all[net] } }
      },
    },
    { method: 'GET', path: '/servers/:id/metadata', policy: `${S}/GetServer`, handler: async (req) => ({ body: { metadata: (await serverOf(d, req)).metadata } }) },
    {
      method: 'GET', path: '/servers/:id/metadata/:key', policy: `${S}/GetServer`,
      handler: async (req) => {
        const m = (await serverOf(d, req)).metadata
        const key = req.params.key!
        if (!(key in m)) throw new NotFound('Metadata item was not found')
        return { body: { meta: { [key]: m[key] } } }
      },
    },
    {
      method: 'POST', path: '/servers/:id/metadata', policy: `${S}/UpdateServer`,
      handler: async (req) => ({ body: { metadata: (await d.servers.update((await serverOf(d, req)).id, { metadata: stringMap(await bodyObject(req, 'metadata'), 'metadata') }, callerOf(req))).metadata } }),
    },
    {
      method: 'PUT', path: '/servers/:id/metadata', policy: `${S}/UpdateServer`,
      handler: async (req) => ({ body: { metadata: (await d.servers.update((await serverOf(d, req)).id, { metadata: stringMap(await bodyObject(req, 'metadata'), 'metadata'), replaceMetadata: true }, callerOf(req))).metadata } }),
    },
    {
      method: 'PUT', path: '/servers/:id/metadata/:key', policy: `${S}/UpdateServer`,
      handler: async (req) => {
        const meta = stringMap(await bodyObject(req, 'meta'), 'meta')
        const key = req.params.key!
        if (Object.keys(meta).length !== 1 || !(key in meta)) throw new InvalidArgument('Request body and URI mismatch', { field: 'meta' })
        await d.servers.update((await serverOf(d, req)).id, { metadata: meta }, callerOf(req))
        return { body: { meta } }
      },
    },
    {
      method: 'DELETE', path: '/servers/:id/metadata/:key', policy: `${S}/UpdateServer`,
      handler: async (req) => (await d.servers.update((await serverOf(d, req)).id, { removeMetadata: [req.params.key!] }, callerOf(req)), { status: 204 }),
    },
    {
      method: 'GET', path: '/servers/:id/os-interface', policy: `${S}/GetServer`,
      handler: async (req) => ({ body: { interfaceAttachments: await interfaces(d, req) } }),
    },
    {
      method: 'GET', path: '/servers/:id/os-interface/:port', policy: `${S}/GetServer`,
      handler: async (req) => {
        const one = (await interfaces(d, req)).find((i) => i.port_id === req.params.port)
        if (!one) throw new NotFound(`Port ${req.params.port} is not attached`)
        return { body: { interfaceAttachment: one } }
      },
    },
  ]
}

/** The server's ports as Nova's interface attachments (2.70 adds `tag`). */
async function interfaces(d: RestDomain, req: RestRequest) {
  const s = await serverOf(d, req)
  const caller = callerOf(req)
  const ports = await d.network.ports.list({ deviceId: s.id }, actorOf(caller))
  return ports.map((p) => ({
    port_state: p.status, port_id: p.id, net_id: p.networkId, mac_addr: p.macAddress,
    fixed_ips: p.fixedIps.map((ip) => ({ subnet_id: ip.subnetId, ip_address: ip.ipAddress })),
    ...(microversion(req) >= mv('2.70') ? { tag: null } : {}),
  }))
}

