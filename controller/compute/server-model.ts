/**
 * The shapes the server code shares (Nova's compute API objects): who asks,
 * what they ask, what they see, and the names Nova derives for a server.
 */
export type { BuildSpec } from '../../proto/build-spec.js'
import type { AuthContext } from '../identity/model.js'
import { InvalidArgument } from '../../proto/errors.js'

/** Who is asking, as the catalogs need it. */
export interface ServerCaller {
  userId: string
  projectId: string | undefined
  domainId: string
  isAdmin: boolean
  /** Member (not only reader) of its project. */
  canWrite: boolean
  /** The API call's request id; the casts the call causes carry it to the agents' logs. */
  requestId?: string
}

/** The caller of a token's context (gRPC and REST alike). */
export function serverCaller(a: AuthContext, requestId: string | undefined): ServerCaller {
  return { userId: a.userId, projectId: a.projectId, domainId: a.actingDomainId, isAdmin: a.isCloudAdmin, canWrite: a.roles.has('member'), ...(requestId ? { requestId } : {}) }
}

export interface ServersConfig {
  /** Zone of hosts that announce none (the hosts' default). */
  defaultAvailabilityZone: string
  /** How often casts that could not be queued are sent again. @default 2000 */
  castRetryMs: number
  /** Deadline of synchronous calls to agents (console output). @default 10000 */
  agentCallTimeoutMs: number
  /**
   * Allocations with no server are released only once claimed this long ago:
   * a younger one may be a create in progress on another controller (claims
   * come before the server's record). @default 60000
   */
  orphanAllocationGraceMs: number
}

export interface ServerAddress {
  networkId: string
  networkName: string
  addr: string
  version: number
  macAddr: string
  portId: string
  type: 'fixed' | 'floating'
}

export interface ServerView {
  id: string
  name: string
  description: string
  status: string
  vmState: string
  taskState: string
  powerState: number
  projectId: string
  userId: string
  flavor: { id: string; name: string; vcpus: number; ram: number; disk: number; ephemeral: number; swap: number }
  imageId: string
  imageName: string
  keyName: string
  securityGroups: string[]
  addresses: ServerAddress[]
  host: string
  /** Nova's OS-EXT-SRV-ATTR:hostname: the guest's hostname, kept from create (asked for or derived from the name). */
  hostname: string
  /** Nova 2.96's pinned_availability_zone: the zone the create asked for, '' when none (any zone). */
  pinnedAvailabilityZone: string
  /** Nova's hostId: the host hashed with the project (sha224), so owners can tell co-located servers apart without learning host names; '' without a host. */
  hostId: string
  hypervisorHostname: string
  instanceName: string
  availabilityZone: string
  metadata: Record<string, string>
  /** The user data as given (base64), '' when none. */
  userData: string
  fault: { code: string; message: string; createdAt: Date } | undefined
  createdAt: Date
  updatedAt: Date
  launchedAt: Date | undefined
  terminatedAt: Date | undefined
  reservationId: string
  launchIndex: number
  /** The server group it joined, if any. */
  serverGroups: string[]
  /** Nova's config_drive: 'True' when the host gives the guest a config drive, else ''. */
  configDrive: string
  /** The volumes attached to it (os-extended-volumes:volumes_attached), oldest attachment first. */
  volumesAttached: string[]
  /** Those of them that are deleted with it (delete_on_termination; Nova 2.3's volumes_attached shows it). */
  volumesDeletedWith: string[]
}

export interface CreateServer {
  name?: string
  /** The hostname asked for (Nova 2.90; checked by checkHostname); absent: derived from the name (hostnameOf). */
  hostname?: string
  description?: string
  flavorRef?: string
  imageRef?: string
  networks?: Array<{ uuid?: string; port?: string; fixedIp?: string }>
  networkMode?: string
  securityGroups?: string[]
  keyName?: string
  availabilityZone?: string
  minCount?: number
  maxCount?: number
  userData?: string
  metadata?: Record<string, string>
  /** Scheduler hint `group`: a server group id or name. */
  group?: string
  /** Nova's config_drive; absent: true (Strato gives every server one unless told not to). */
  configDrive?: boolean
  /** Nova's block_device_mapping_v2 (`server-create-bdm.ts`). */
  blockDeviceMappings?: BlockDeviceMapping[]
  /** false: a multiattach volume among blockDeviceMappings is refused (Nova before compute API 2.60). */
  multiattach?: boolean
}

/** One block device asked for at create (Nova's block_device_mapping_v2 entry). */
export interface BlockDeviceMapping {
  /** image, volume, snapshot or blank. */
  sourceType?: string
  /** volume or local; absent: local for an image, volume otherwise (Nova's defaults). */
  destinationType?: string
  uuid?: string
  /** Absent or negative: not bootable. */
  bootIndex?: number
  volumeSize?: number
  /** Absent: true for a volume the server makes, false for an existing one. */
  deleteOnTermination?: boolean
  deviceName?: string
  volumeType?: string
}

export interface ListServers {
  name?: string
  status?: string
  allProjects?: boolean
  projectId?: string
  host?: string
  image?: string
  flavor?: string
  availabilityZone?: string
  deleted?: boolean
  limit?: number
  marker?: string
  /** Nova's exact-match filters (user_id, vm_state, task_state; power_state as its number). */
  userId?: string
  vmState?: string
  taskState?: string
  powerState?: number
  /** Nova's regular-expression filters (key_name, config_drive), as `name` is. */
  keyName?: string
  configDrive?: string
  /** Nova's hostname filter (a regular expression, as `name` is). */
  hostname?: string
}

/** The logger the server code needs (pino's shape). */
export interface Log {
  info(o: object, m: string): void
  warn(o: object, m: string): void
  debug(o: object, m: string): void
}

/** The hypervisor's domain name of a server. */
export function instanceName(uuid: string): string {
  return `instance-${uuid}`
}

/**
 * Nova's hostname of a server it makes without one asked for
 * (`_populate_instance_names` with `utils.sanitize_hostname`): the display
 * name in Latin-1, cut to 63 characters, spaces, '_' and '.' made '-', other
 * non-word characters dropped, lower case, without leading or trailing '.'
 * and '-'; 'Server-<uuid>' when nothing is left; '-<n>' added (n from 1) when
 * one request makes several servers.
 */
export function hostnameOf(displayName: string, uuid: string, index = 0, count = 1): string {
  const latin1 = [...displayName].filter((c) => c.codePointAt(0)! <= 0xff).join('').slice(0, 63)
  // Python's \w on str: letters and numbers of any script (here Latin-1's), and '_'.
  const h = latin1.replace(/[ _.]/g, '-').replace(/[^\p{L}\p{N}_.-]+/gu, '').toLowerCase().replace(/^[.-]+|[.-]+$/g, '')
  if (!h) return `Server-${uuid}`
  return count > 1 ? `${h}-${index + 1}` : h
}

/**
 * A hostname asked for (Nova's schemas): from 2.90 a DNS label of 2 to 63
 * letters, digits and '-' that neither starts nor ends with '-'; from 2.94
 * an FQDN of 1 to 255 letters, digits, '-', '.' and '_'.
 */
export function checkHostname(hostname: string, fqdn: boolean): string {
  const ok = fqdn ? /^[a-zA-Z0-9-._]{1,255}$/.test(hostname) : hostname.length >= 2 && hostname.length <= 63 && /^[a-zA-Z0-9]+[a-zA-Z0-9-]*[a-zA-Z0-9]+$/.test(hostname)
  if (!ok) {
    throw new InvalidArgument(
      fqdn
        ? `Invalid input for field/attribute hostname. Value: ${hostname}. It must be 1 to 255 letters, digits, '-', '.' or '_'`
        : `Invalid input for field/attribute hostname. Value: ${hostname}. It must be 2 to 63 letters, digits or '-', starting and ending with a letter or digit (an FQDN needs microversion 2.94)`,
      { field: 'hostname' },
    )
  }
  return hostname
}

export const now = () => new Date().toISOString()

export const json = <T>(text: string, fallback: T): T => {
  try {
    return JSON.parse(text) as T
  } catch {
    return fallback
  }
}
