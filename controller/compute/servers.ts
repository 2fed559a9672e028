/**
 * Servers (Nova semantics): the API's side of the seed's 29 steps.
 *
 * CreateServer checks everything it is given (flavor, image, networks, ports,
 * security groups, keypair, zone) before anything is made, then claims a host
 * for each server — allocation and quota in one transaction (the scheduler) —
 * then records the servers and their ports in one transaction, and only then
 * casts the builds to the hosts' durable work queues. A request that cannot be
 * satisfied fails with the reason and leaves nothing behind (a quota, no valid
 * host, an unmapped cloud, an exhausted subnet). What fails later, on the host,
 * leaves the server in ERROR with a fault, its allocation and ports released.
 *
 * Actions (start, stop, reboot, delete) are checked against the state table
 * (`server-states.ts`), recorded as the server's task with the id of the cast
 * that carries them, then cast. Agents report results on the event stream; a
 * result applies only to the cast the server is waiting for. A cast that could
 * not be queued (NATS away, controller killed) is sent again by `resend()`.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { Conflict, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted, Unavailable, toStratoError } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import type { ServerTable } from '../store/schema.js'
import type { Trx } from '../quota/quota.js'
import type { QuotaEngine } from '../quota/quota.js'
import { checkName, checkText } from '../identity/validate.js'
import type { FlavorCatalog, Flavor } from './flavors.js'
import type { KeypairCatalog } from './keypairs.js'
import type { ImageCatalog, Image, ImageViewer } from '../image/catalog.js'
import type { PortCatalog } from '../network/ports.js'
import type { SecurityGroupCatalog } from '../network/security-groups.js'
import { loadNetwork, canModify, type Actor } from '../network/access.js'
import type { Scheduler, Placed } from '../scheduler/scheduler.js'
import { DISK_GB, MEMORY_MB, VCPU } from '../scheduler/model.js'
import type { HostRegistry } from './hosts.js'
import type { ServerGroupCatalog } from './server-groups.js'
import { beginAction, outcomeOf, statesFor, statusOf, syncPower, STATUSES, type ServerAction, type TaskState } from './server-states.js'
import type { AgentTransport, CastAction, CastResultEvent } from './transport.js'
import { castIdFor as castId, parseCastId } from '../../proto/subjects.js'
import { castAction } from '../../proto/server-actions.js'
import { isUuid } from '../../proto/ids.js'
import type { BuildSpec } from '../../proto/build-spec.js'

/** Nova's limits: 64 KiB of user data, 128 metadata items. */
const USER_DATA_MAX = 65535
const METADATA_MAX = 128
const CONSOLE_MAX_BYTES = 100 * 1024
/** Nova's `max_count` has no limit but the quota; this one keeps a typo from queueing a million claims. */
const MAX_COUNT = 1000

/** Who is asking, as the catalogs need it. */
export interface ServerCaller {
  userId: string
  projectId: string | undefined
  domainId: string
  isAdmin: boolean
  /** Member (not only reader) of its project. */
  canWrite: boolean
}

export interface ServersConfig {
  /** Zone of hosts that announce none (the hosts' default). */
  defaultAvailabilityZone: string
  /** How often casts that could not be queued are sent again. @default 2000 */
  castRetryMs: number
  /** Deadline of synchronous calls to agents (console output). @default 10000 */
  agentCallTimeoutMs: number
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
  hypervisorHostname: string
  instanceName: string
  availabilityZone: string
  metadata: Record<string, string>
  fault: { code: string; message: string; createdAt: Date } | undefined
  createdAt: Date
  updatedAt: Date
  launchedAt: Date | undefined
  terminatedAt: Date | undefined
  reservationId: string
  launchIndex: number
  /** The server group it joined, if any. */
  serverGroups: string[]
}

export interface CreateServer {
  name?: string
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
}

export type { BuildSpec } from '../../proto/build-spec.js'

/** Nova's hostname: the display name made a DNS label (lower case, [a-z0-9-], at most 63). */
export function hostnameOf(displayName: string): string {
  const label = displayName.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, '')
  return label || 'server'
}

export interface HostInstance {
  instanceUuid: string
  host: string
  pendingCastId: string
  vmState: string
  taskState: string
  powerState: number
  name: string
}

/** Issues a short-lived token of `userId` scoped to `projectId` (the agent downloads the image with it). */
export type DelegatedTokens = (userId: string, projectId: string) => Promise<string>

interface Log {
  info(o: object, m: string): void
  warn(o: object, m: string): void
  debug(o: object, m: string): void
}

/** A NIC asked for, resolved before anything is made. */
type NicPlan = { kind: 'network'; networkId: string; fixedIp?: string } | { kind: 'port'; portId: string }

/** A create request once every part of it has been checked and resolved. */
interface CreatePlan {
  caller: ServerCaller
  projectId: string
  actor: Actor
  name: string
  description: string
  minCount: number
  maxCount: number
  flavor: Flavor
  image: Image
  key: { name: string; publicKey: string } | undefined
  userData: string
  metadata: Record<string, string>
  zone: { zone?: string; host?: string }
  nics: NicPlan[]
  /** Security group ids for the ports it makes (undefined: the project's default). */
  groupIds: string[] | undefined
  /** The server group it joins. */
  serverGroup: string | undefined
}

const now = () => new Date().toISOString()
const json = <T>(text: string, fallback: T): T => {
  try {
    return JSON.parse(text) as T
  } catch {
    return fallback
  }
}

export class ServerCatalog {
  private retryTimer: NodeJS.Timeout | undefined
  private resending: Promise<void> | undefined

  constructor(
    private readonly db: Db,
    private readonly deps: {
      flavors: FlavorCatalog
      images: ImageCatalog
      keypairs: KeypairCatalog
      ports: PortCatalog
      securityGroups: SecurityGroupCatalog
      scheduler: Scheduler
      hosts: HostRegistry
      quota: QuotaEngine
      tokens: DelegatedTokens
      serverGroups: ServerGroupCatalog
    },
    private readonly config: ServersConfig,
    private readonly log: Log,
    private transport: AgentTransport | undefined = undefined,
  ) {}

  /** Connects the bus (after it started) and sends what could not be sent before. */
  attach(transport: AgentTransport): void {
    this.transport = transport
    if (!this.retryTimer) {
      this.retryTimer = setInterval(() => void this.resend(), this.config.castRetryMs)
      this.retryTimer.unref()
    }
  }

  stop(): void {
    if (this.retryTimer) clearInterval(this.retryTimer)
    this.retryTimer = undefined
  }

  // ------------------------------------------------------------------ create

  async create(req: CreateServer, caller: ServerCaller): Promise<{ servers: ServerView[]; reservationId: string }> {
    const projectId = caller.projectId
    if (!projectId) throw new FailedPrecondition('servers belong to projects: use a project-scoped token')
    const name = checkName('name', req.name, 255)
    const description = checkText('description', req.description, 255)
    const minCount = req.minCount || 1
    const maxCount = req.maxCount || minCount
    if (!Number.isInteger(minCount) || minCount < 1) throw new InvalidArgument(`min_count must be an integer ≥ 1, got ${minCount}`, { field: 'min_count' })
    if (!Number.isInteger(maxCount) || maxCount < minCount || maxCount > MAX_COUNT) throw new InvalidArgument(`max_count must be an integer from min_count (${minCount}) to ${MAX_COUNT}, got ${maxCount}`, { field: 'max_count' })

    const flavor = await this.findFlavor(req.flavorRef, caller)
    const image = await this.findImage(req.imageRef, caller)
    this.checkImageFits(image, flavor)
    const key = req.keyName ? await this.deps.keypairs.get(req.keyName, caller.userId).catch((err) => {
      throw err instanceof NotFound ? new NotFound(`keypair '${req.keyName}' not found for user ${caller.userId}; create or import it with: strato keypair create`, { field: 'key_name', cause: err }) : err
    }) : undefined
    const userData = checkUserData(req.userData)
    const metadata = checkMetadata(req.metadata)
    const zone = await this.parseZone(req.availabilityZone, caller)
    const actor = actorOf(caller)
    const nics = await this.planNics(req, actor, projectId)
    const groupIds = await this.resolveGroups(req.securityGroups, actor, projectId)
    // A server group's members are placed one request at a time, each seeing where the others went.
    const serverGroup = req.group ? await this.deps.serverGroups.resolve(req.group, caller) : undefined
    const plan: CreatePlan = { caller, projectId, actor, name, description, minCount, maxCount, flavor, image, key, userData, metadata, zone, nics, groupIds, serverGroup }
    return serverGroup ? this.deps.serverGroups.serialize(serverGroup, () => this.placeAndRecord(plan)) : this.placeAndRecord(plan)
  }

  /** Claims hosts for a validated request, then records its servers and ports and casts their builds. */
  private async placeAndRecord(plan: CreatePlan): Promise<{ servers: ServerView[]; reservationId: string }> {
    const { caller, projectId, actor, name, description, minCount, flavor, image, key, userData, metadata, zone, nics, groupIds } = plan
    let maxCount = plan.maxCount
    const group = plan.serverGroup ? await this.deps.serverGroups.forCreate(plan.serverGroup, caller, minCount) : undefined
    if (group && group.room >= 0) maxCount = Math.min(maxCount, group.room)

    // Claim a host for each server: allocation + quota (instances, cores, ram), atomically.
    const reservationId = `r-${randomBytes(4).toString('hex')}`
    const placed: Array<{ uuid: string; placed: Placed }> = []
    const resources = { [VCPU]: flavor.vcpus, [MEMORY_MB]: flavor.ram, [DISK_GB]: flavor.disk + flavor.ephemeral + Math.ceil(flavor.swap / 1024) }
    try {
      for (let i = 0; i < maxCount; i++) {
        const uuid = randomUUID()
        try {
          const p = await this.deps.scheduler.schedule({
            instanceUuid: uuid, projectId, userId: caller.userId, resources,
            ...(zone.zone ? { availabilityZone: zone.zone } : {}),
            ...(zone.host ? { forceHost: zone.host } : {}),
            imageProperties: image.properties,
            ...(group ? { group: group.spec } : {}),
          })
          placed.push({ uuid, placed: p })
          group?.spec.memberHosts.push(p.host)
        } catch (err) {
          if (i < minCount) throw err
          this.log.info({ reservationId, created: i, asked: maxCount, err: (err as Error).message }, 'fewer servers than max_count fit')
          break
        }
      }
    } catch (err) {
      await this.releaseAll(placed.map((p) => p.uuid))
      throw minCount > 1 && placed.length > 0 ? withPrefix(err, `only ${placed.length} of min_count ${minCount} servers could be placed`) : err
    }

    // Record the servers and make their ports, in one transaction.
    const ts = now()
    // Hosts are read before the transaction: the store has one connection, and a read
    // through it while the transaction holds it would wait forever.
    const zones = new Map<string, string>()
    for (const { placed: p } of placed) if (!zones.has(p.host)) zones.set(p.host, (await this.deps.hosts.get(p.host)).availabilityZone)
    try {
      await this.db.transaction().execute(async (trx) => {
        const portsNeeded = nics.filter((n) => n.kind === 'network').length * placed.length
        if (portsNeeded) await this.deps.quota.check(trx, { projectId }, { ports: portsNeeded })
        for (const [index, { uuid, placed: p }] of placed.entries()) {
          const host = { availabilityZone: zones.get(p.host)! }
          const own: string[] = []
          for (const [i, nic] of nics.entries()) {
            if (nic.kind === 'port') {
              await this.bindPort(trx, nic.portId, uuid, host.availabilityZone, actor, `networks[${i}].port`)
            } else {
              const net = await loadNetwork(trx, actor, nic.networkId, `networks[${i}].uuid`)
              own.push(await this.deps.ports.createIn(trx, net, {
                projectId, deviceOwner: `compute:${host.availabilityZone}`, deviceId: uuid, securityGroups: groupIds,
                ...(nic.fixedIp ? { fixedIps: [{ ipAddress: nic.fixedIp }] } : {}),
              }))
            }
          }
          await trx.insertInto('servers').values({
            uuid, name: maxCount > 1 ? `${name}-${index + 1}` : name, description, project_id: projectId, user_id: caller.userId,
            flavor_id: flavor.id, flavor_name: flavor.name, vcpus: flavor.vcpus, ram: flavor.ram, disk: flavor.disk, ephemeral: flavor.ephemeral, swap: flavor.swap,
            image_id: image.id, image_name: image.name, key_name: key?.name ?? '', key_data: key?.publicKey ?? '', user_data: userData, config_drive: 'True',
            metadata: JSON.stringify(metadata), security_groups: JSON.stringify(groupIds), requested_az: zone.zone ?? '',
            host: p.host, node_uuid: p.providerUuid, availability_zone: host.availabilityZone, instance_name: instanceName(uuid),
            vm_state: 'building', task_state: 'networking', power_state: 0, pending_cast_id: castIdFor('build', uuid), cast_sent_at: null,
            own_ports: JSON.stringify(own), reservation_id: reservationId, launch_index: index,
            fault_code: '', fault_message: '', fault_at: null, created_at: ts, updated_at: ts, launched_at: null, terminated_at: null, deleted: 0,
            server_group_id: group?.spec.id ?? '',
          }).execute()
        }
      })
    } catch (err) {
      await this.releaseAll(placed.map((p) => p.uuid))
      throw err
    }
    for (const { uuid, placed: p } of placed) {
      this.log.info({ instance: uuid, host: p.host, reservationId }, 'server placed; build cast to its host')
      await this.send(uuid, p.host, { build: { instanceUuid: uuid } }, castIdFor('build', uuid))
    }
    const rows = await this.db.selectFrom('servers').selectAll().where('reservation_id', '=', reservationId).orderBy('launch_index').execute()
    return { servers: await this.views(rows, caller), reservationId }
  }

  private async findFlavor(ref: string | undefined, caller: ServerCaller): Promise<Flavor> {
    if (!ref) throw new InvalidArgument('flavor_ref is required (a flavor id or name; see strato flavor list)', { field: 'flavor_ref' })
    const viewer = { isAdmin: caller.isAdmin, projectId: caller.projectId }
    try {
      return await this.deps.flavors.get({ id: ref }, viewer)
    } catch (err) {
      if (!(err instanceof NotFound)) throw err
    }
    return this.deps.flavors.get({ name: ref }, viewer).catch((err) => {
      throw err instanceof NotFound ? new NotFound(`flavor '${ref}' not found (by id or name); see strato flavor list`, { field: 'flavor_ref', cause: err }) : err
    })
  }

  private async findImage(ref: string | undefined, caller: ServerCaller): Promise<Image> {
    if (!ref) throw new InvalidArgument('image_ref is required (an image id or name; see strato image list)', { field: 'image_ref' })
    const image = await this.deps.images.get(isUuid(ref) ? { id: ref } : { name: ref }, imageViewer(caller)).catch((err) => {
      throw err instanceof NotFound ? new NotFound(`image '${ref}' not found (by id or name); see strato image list`, { field: 'image_ref', cause: err }) : err
    })
    if (image.status !== 'active') throw new FailedPrecondition(`image ${image.id} is ${image.status}, not active${image.status === 'queued' ? ': upload its data first' : ''}`, { field: 'image_ref' })
    if (image.diskFormat !== 'qcow2' && image.diskFormat !== 'raw') throw new FailedPrecondition(`image ${image.id} is ${image.diskFormat}; servers boot from qcow2 and raw images`, { field: 'image_ref' })
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
    const hosts = await this.deps.hosts.list()
    const zones = new Set([this.config.defaultAvailabilityZone, ...hosts.filter((h) => h.mapped).map((h) => h.availabilityZone)])
    if (zone && !zones.has(zone)) throw new InvalidArgument(`availability zone '${zone}' does not exist; zones: ${[...zones].sort().join(', ')}`, { field: 'availability_zone' })
    if (host) {
      const h = hosts.find((x) => x.host === host)
      if (!h) throw new InvalidArgument(`host '${host}' does not exist`, { field: 'availability_zone' })
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
      const usable = await this.db.selectFrom('networks').select(['id', 'name']).where((eb) => eb.or([eb('project_id', '=', projectId), eb('shared', '=', 1)])).execute()
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
      if (isUuid(ref)) id = (await this.db.selectFrom('security_groups').select('id').where('id', '=', ref).where('project_id', '=', projectId).executeTakeFirst())?.id
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

  private async bindPort(trx: Trx, portId: string, uuid: string, zone: string, actor: Actor, field: string): Promise<void> {
    const r = await trx.updateTable('ports').set({ device_id: uuid, device_owner: `compute:${zone}`, updated_at: now() }).where('id', '=', portId).where('device_id', '=', '').executeTakeFirst()
    if (Number(r.numUpdatedRows) === 0) throw new Conflict(`port ${portId} was taken by another server meanwhile`, { field })
    void actor
  }

  private async releaseAll(uuids: string[]): Promise<void> {
    for (const uuid of uuids) await this.deps.scheduler.release(uuid)
  }

  // ------------------------------------------------------------------ read

  async get(ref: string | undefined, caller: ServerCaller): Promise<ServerView> {
    return (await this.views([await this.find(ref, caller)], caller))[0]!
  }

  async list(f: ListServers, caller: ServerCaller): Promise<ServerView[]> {
    const adminOnly = (field: string, set: unknown) => {
      if (set && !caller.isAdmin) throw new PermissionDenied(`${field} is for cloud admins`, { field })
    }
    adminOnly('all_projects', f.allProjects)
    adminOnly('project_id', f.projectId)
    adminOnly('host', f.host)
    adminOnly('deleted', f.deleted)
    let q = this.db.selectFrom('servers').selectAll().orderBy('created_at', 'desc').orderBy('uuid', 'desc')
    if (f.projectId) q = q.where('project_id', '=', f.projectId)
    else if (!f.allProjects) q = q.where('project_id', '=', caller.projectId ?? '')
    q = q.where('deleted', '=', f.deleted ? 1 : 0)
    if (f.host) q = q.where('host', '=', f.host)
    if (f.image) q = q.where((eb) => eb.or([eb('image_id', '=', f.image!), eb('image_name', '=', f.image!)]))
    if (f.flavor) q = q.where((eb) => eb.or([eb('flavor_id', '=', f.flavor!), eb('flavor_name', '=', f.flavor!)]))
    if (f.availabilityZone) q = q.where('availability_zone', '=', f.availabilityZone)
    if (f.status) {
      const s = statesFor(f.status)
      if (!s) throw new InvalidArgument(`status must be one of ${STATUSES.join(', ')}, got '${f.status}'`, { field: 'status' })
      q = q.where('vm_state', '=', s.vm)
    }
    let rows = await q.execute()
    if (f.name) {
      let re: RegExp
      try {
        re = new RegExp(f.name)
      } catch (err) {
        throw new InvalidArgument(`name filter '${f.name}' is not a regular expression: ${(err as Error).message}`, { field: 'name', cause: err })
      }
      rows = rows.filter((r) => re.test(r.name))
    }
    if (f.marker) {
      const i = rows.findIndex((r) => r.uuid === f.marker)
      if (i < 0) throw new InvalidArgument(`marker ${f.marker} is not a server in this listing`, { field: 'marker' })
      rows = rows.slice(i + 1)
    }
    if (f.limit) {
      if (!Number.isInteger(f.limit) || f.limit < 0) throw new InvalidArgument(`limit must be a non-negative integer, got ${f.limit}`, { field: 'limit' })
      rows = rows.slice(0, f.limit)
    }
    return this.views(rows, caller)
  }

  /** A visible server by id, or by name when exactly one has it. */
  private async find(ref: string | undefined, caller: ServerCaller, db: Trx = this.db): Promise<ServerTable> {
    if (!ref) throw new InvalidArgument('give the server id or name', { field: 'id' })
    // Deleted servers are gone for GET, as in Nova (admins list them with `deleted`).
    const visible = (r: ServerTable) => r.deleted === 0 && (caller.isAdmin || r.project_id === caller.projectId)
    if (isUuid(ref)) {
      const r = await db.selectFrom('servers').selectAll().where('uuid', '=', ref).executeTakeFirst()
      if (r && visible(r)) return r
    }
    let q = db.selectFrom('servers').selectAll().where('name', '=', ref).where('deleted', '=', 0)
    if (!caller.isAdmin) q = q.where('project_id', '=', caller.projectId ?? '')
    const rows = await q.execute()
    if (rows.length > 1) throw new Conflict(`${rows.length} servers are named '${ref}'; use the id`, { field: 'id' })
    if (!rows[0]) throw new NotFound(`server ${ref} not found`, { field: 'id' })
    return rows[0]
  }

  private async views(rows: ServerTable[], caller: ServerCaller): Promise<ServerView[]> {
    if (rows.length === 0) return []
    const uuids = rows.map((r) => r.uuid)
    const ports = await this.db
      .selectFrom('ports as p')
      .innerJoin('networks as n', 'n.id', 'p.network_id')
      .select(['p.id', 'p.device_id', 'p.mac_address', 'p.network_id', 'n.name as network_name', 'p.created_at'])
      .where('p.device_id', 'in', uuids)
      .orderBy('p.created_at')
      .orderBy('p.id')
      .execute()
    const portIds = ports.map((p) => p.id)
    const ips = portIds.length ? await this.db.selectFrom('ip_allocations').select(['port_id', 'ip_address']).where('port_id', 'in', portIds).orderBy('ip_key').execute() : []
    const floats = portIds.length ? await this.db.selectFrom('floating_ips').select(['port_id', 'floating_ip_address']).where('port_id', 'in', portIds).execute() : []
    const portGroups = portIds.length
      ? await this.db.selectFrom('port_security_groups as ps').innerJoin('security_groups as g', 'g.id', 'ps.security_group_id').select(['ps.port_id', 'g.id', 'g.name']).where('ps.port_id', 'in', portIds).execute()
      : []
    const asked = [...new Set(rows.flatMap((r) => json<string[]>(r.security_groups, [])))]
    const askedNames = asked.length ? new Map((await this.db.selectFrom('security_groups').select(['id', 'name']).where('id', 'in', asked).execute()).map((g) => [g.id, g.name])) : new Map<string, string>()
    return rows.map((r) => {
      const mine = ports.filter((p) => p.device_id === r.uuid)
      const addresses: ServerAddress[] = []
      for (const p of mine) {
        for (const ip of ips.filter((i) => i.port_id === p.id)) {
          addresses.push({ networkId: p.network_id, networkName: p.network_name, addr: ip.ip_address, version: ip.ip_address.includes(':') ? 6 : 4, macAddr: p.mac_address, portId: p.id, type: 'fixed' })
        }
        for (const f of floats.filter((x) => x.port_id === p.id)) {
          addresses.push({ networkId: p.network_id, networkName: p.network_name, addr: f.floating_ip_address, version: f.floating_ip_address.includes(':') ? 6 : 4, macAddr: p.mac_address, portId: p.id, type: 'floating' })
        }
      }
      const groups = mine.length
        ? [...new Set(portGroups.filter((g) => mine.some((p) => p.id === g.port_id)).map((g) => g.name))]
        : json<string[]>(r.security_groups, []).map((id) => askedNames.get(id) ?? id)
      const admin = caller.isAdmin
      return {
        id: r.uuid,
        name: r.name,
        description: r.description,
        status: statusOf(r.vm_state, r.task_state),
        vmState: r.vm_state,
        taskState: r.task_state,
        powerState: Number(r.power_state),
        projectId: r.project_id,
        userId: r.user_id,
        flavor: { id: r.flavor_id, name: r.flavor_name, vcpus: Number(r.vcpus), ram: Number(r.ram), disk: Number(r.disk), ephemeral: Number(r.ephemeral), swap: Number(r.swap) },
        imageId: r.image_id,
        imageName: r.image_name,
        keyName: r.key_name,
        securityGroups: groups,
        addresses,
        host: admin ? (r.host ?? '') : '',
        hypervisorHostname: admin ? (r.host ?? '') : '',
        instanceName: admin ? r.instance_name : '',
        availabilityZone: r.availability_zone || r.requested_az,
        metadata: json<Record<string, string>>(r.metadata, {}),
        fault: r.fault_message ? { code: r.fault_code, message: r.fault_message, createdAt: new Date(r.fault_at ?? r.updated_at) } : undefined,
        createdAt: new Date(r.created_at),
        updatedAt: new Date(r.updated_at),
        launchedAt: r.launched_at ? new Date(r.launched_at) : undefined,
        terminatedAt: r.terminated_at ? new Date(r.terminated_at) : undefined,
        reservationId: r.reservation_id,
        launchIndex: Number(r.launch_index),
        serverGroups: r.server_group_id ? [r.server_group_id] : [],
        configDrive: r.config_drive,
      }
    })
  }

  // ------------------------------------------------------------------ actions

  /** Starts, stops, reboots or deletes a server; returns it with the action's task_state. */
  async act(ref: string | undefined, action: Exclude<ServerAction, 'build'>, caller: ServerCaller): Promise<ServerView> {
    const first = await this.find(ref, caller)
    if (!caller.isAdmin && !(caller.canWrite && first.project_id === caller.projectId)) throw new PermissionDenied(`server ${first.uuid} can be changed only by members of its project or a cloud admin`)
    const castId = castIdFor(action, first.uuid)
    // The answer is the server as this action left it: with a fast host the result can land
    // before the cast's publish returns, and the caller should still see the task it started.
    const reread = (trx: Trx) => trx.selectFrom('servers').selectAll().where('uuid', '=', first.uuid).executeTakeFirstOrThrow()
    const plan = await this.db.transaction().execute(async (trx) => {
      const row = (await trx.selectFrom('servers').selectAll().where('uuid', '=', first.uuid).executeTakeFirst())!
      if (action === 'delete' && row.task_state === 'deleting') return { kind: 'none' as const, row }
      const task = beginAction(action, row)
      // Nothing on a host (it never got one), or its host is down: delete here, as Nova's local delete;
      // a cast still goes to a down host so its agent cleans up when it is back.
      if (action === 'delete' && (!row.host || !this.deps.hosts.isUp(row.host))) {
        await this.finish(trx, row, { vm_state: 'deleted', task_state: '', power_state: 0, release: true, terminated: true }, undefined)
        return { kind: 'local' as const, host: row.host, row: await reread(trx) }
      }
      if (!row.host) throw new FailedPrecondition(`server ${row.uuid} has no host: it never got one (${row.fault_message || 'no fault recorded'})`)
      await trx.updateTable('servers').set({ task_state: task, pending_cast_id: castId, cast_sent_at: null, updated_at: now() }).where('uuid', '=', row.uuid).execute()
      return { kind: 'cast' as const, host: row.host, row: await reread(trx) }
    })
    if (plan.kind === 'local') {
      await this.deps.scheduler.release(first.uuid)
      this.log.info({ instance: first.uuid, host: plan.host }, plan.host ? 'server deleted locally: its host is down' : 'server deleted: it had no host')
      if (plan.host) await this.send(first.uuid, plan.host, { delete: { instanceUuid: first.uuid } }, castId, false)
    } else if (plan.kind === 'cast') {
      await this.send(first.uuid, plan.host, castAction(action, first.uuid), castId)
    }
    return (await this.views([plan.row], caller))[0]!
  }

  async consoleOutput(ref: string | undefined, length: number | undefined, caller: ServerCaller): Promise<string> {
    const row = await this.find(ref, caller)
    if (row.vm_state === 'deleted') throw new FailedPrecondition(`server ${row.uuid} is deleted`)
    if (!row.host) throw new FailedPrecondition(`server ${row.uuid} has no host, so no console`)
    if (length !== undefined && (!Number.isInteger(length) || length < 0)) throw new InvalidArgument(`length must be a non-negative number of lines, got ${length}`, { field: 'length' })
    if (!this.transport) throw new Unavailable('the controller runs without its message bus; consoles cannot be read')
    if (!this.deps.hosts.isUp(row.host)) throw new Unavailable(`host '${row.host}' of server ${row.uuid} is down; its console cannot be read now`)
    const answer = await this.transport.call(row.host, { consoleOutput: { instanceUuid: row.uuid, maxBytes: CONSOLE_MAX_BYTES } }, this.config.agentCallTimeoutMs)
    const out = answer.consoleOutput?.output ?? ''
    if (!length) return out
    const lines = out.split('\n')
    const trailing = lines[lines.length - 1] === '' ? 1 : 0
    return lines.slice(Math.max(0, lines.length - trailing - length)).join('\n')
  }

  // ------------------------------------------------------------------ casts and results

  /** Queues a cast; on failure it stays pending and `resend()` tries again. */
  private async send(uuid: string, host: string, action: CastAction, castId: string, record = true): Promise<void> {
    if (!this.transport) {
      this.log.warn({ instance: uuid, host }, 'no message bus: the cast waits')
      return
    }
    try {
      await this.transport.cast(host, action, castId)
      if (record) await this.db.updateTable('servers').set({ cast_sent_at: now() }).where('uuid', '=', uuid).where('pending_cast_id', '=', castId).execute()
    } catch (err) {
      this.log.warn({ instance: uuid, host, err: (err as Error).message }, 'cast not queued; it will be sent again')
    }
  }

  /** Sends again every cast the bus did not take (NATS was away, or the controller stopped in between). */
  resend(): Promise<void> {
    this.resending ??= (async () => {
      try {
        const rows = await this.db.selectFrom('servers').select(['uuid', 'host', 'task_state', 'pending_cast_id']).where('pending_cast_id', '!=', '').where('cast_sent_at', 'is', null).where('deleted', '=', 0).execute()
        for (const r of rows) {
          const action = actionOfCast(r.pending_cast_id)
          if (!r.host || !action) continue
          await this.send(r.uuid, r.host, castAction(action, r.uuid), r.pending_cast_id)
        }
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'resending casts failed')
      } finally {
        this.resending = undefined
      }
    })()
    return this.resending
  }

  /** Applies an agent's result to the server waiting for that cast; other results are stale and ignored. */
  async applyResult(r: CastResultEvent): Promise<void> {
    const action = actionOfCast(r.castId)
    if (!action || !r.instanceUuid) return
    const released = await this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('servers').selectAll().where('uuid', '=', r.instanceUuid).executeTakeFirst()
      if (!row || row.pending_cast_id !== r.castId) {
        this.log.debug({ instance: r.instanceUuid, cast: r.castId, waitingFor: row?.pending_cast_id }, 'stale cast result ignored')
        return false
      }
      const outcome = outcomeOf(action, r.ok)
      await this.finish(trx, row, { ...outcome, power_state: outcome.power_state ?? r.powerState }, r.ok ? undefined : { code: r.errorCode, message: r.message })
      return outcome.release === true
    })
    if (released) await this.deps.scheduler.release(r.instanceUuid)
    this.log.info({ instance: r.instanceUuid, host: r.host, action, ok: r.ok, ...(r.ok ? {} : { fault: r.message }) }, `server ${action} ${r.ok ? 'done' : 'failed'}`)
  }

  /** Writes an outcome; releasing frees the server's ports here (its allocation after the transaction). */
  private async finish(trx: Trx, row: ServerTable, o: ReturnType<typeof outcomeOf> & { power_state?: number }, fault: { code: string; message: string } | undefined): Promise<void> {
    const ts = now()
    await trx.updateTable('servers').set({
      ...(o.vm_state ? { vm_state: o.vm_state } : {}),
      task_state: o.task_state,
      ...(o.power_state !== undefined ? { power_state: o.power_state } : {}),
      pending_cast_id: '',
      cast_sent_at: null,
      updated_at: ts,
      ...(fault ? { fault_code: fault.code || 'INTERNAL', fault_message: fault.message || 'the action failed on the host', fault_at: ts } : o.vm_state && o.vm_state !== 'error' && o.vm_state !== 'deleted' ? { fault_code: '', fault_message: '', fault_at: null } : {}),
      ...(o.launched ? { launched_at: ts } : {}),
      ...(o.terminated ? { terminated_at: ts, deleted: 1 } : {}),
    }).where('uuid', '=', row.uuid).execute()
    if (o.release) {
      const own = new Set(json<string[]>(row.own_ports, []))
      const bound = await trx.selectFrom('ports').select('id').where('device_id', '=', row.uuid).execute()
      for (const p of bound) {
        if (own.has(p.id)) await this.deps.ports.deleteIn(trx, p.id)
        else await trx.updateTable('ports').set({ device_id: '', device_owner: '', status: 'DOWN', updated_at: ts }).where('id', '=', p.id).execute()
      }
    }
    if (o.vm_state === 'active' || o.vm_state === 'stopped') {
      await trx.updateTable('ports').set({ status: o.vm_state === 'active' ? 'ACTIVE' : 'DOWN', updated_at: ts }).where('device_id', '=', row.uuid).execute()
    }
  }

  /**
   * A host's hypervisor reported its guests (`sentAt` is when it looked).
   * Servers with no action in progress follow it (the hypervisor is the
   * authority); servers that changed since it looked are left alone.
   */
  async applyPowerStates(host: string, sentAt: Date, guests: Map<string, number>): Promise<void> {
    const seen = sentAt.toISOString()
    const rows = await this.db.selectFrom('servers').selectAll().where('host', '=', host).where('deleted', '=', 0).where('task_state', '=', '').where('vm_state', 'in', ['active', 'stopped']).execute()
    for (const r of rows) {
      if (r.updated_at > seen) continue
      const power = guests.get(r.uuid)
      const sync = syncPower(r.vm_state, power ?? 'missing')
      if (!sync) continue
      if (!sync.vm_state && sync.power_state === Number(r.power_state)) continue
      const ts = now()
      await this.db.updateTable('servers').set({
        power_state: sync.power_state,
        ...(sync.vm_state ? { vm_state: sync.vm_state, updated_at: ts } : {}),
        ...(sync.fault ? { fault_code: 'NOT_FOUND', fault_message: `${sync.fault} (${host})`, fault_at: ts } : {}),
      }).where('uuid', '=', r.uuid).where('updated_at', '=', r.updated_at).execute()
      if (sync.vm_state) this.log.warn({ instance: r.uuid, host, from: r.vm_state, to: sync.vm_state, power: sync.power_state }, 'server state synced from the hypervisor')
    }
  }

  // ------------------------------------------------------------------ conductor

  /**
   * The build spec of a server its host is about to build; marks it spawning.
   * @throws NotFound when the server is not placed on `host`.
   * @throws FailedPrecondition when it is no longer building (deleted, failed).
   */
  async buildSpec(uuid: string, host: string): Promise<BuildSpec> {
    const row = await this.db.selectFrom('servers').selectAll().where('uuid', '=', uuid).executeTakeFirst()
    if (!row || row.host !== host) throw new NotFound(`no server ${uuid} is placed on host '${host}'`)
    if (row.vm_state !== 'building') throw new FailedPrecondition(`server ${uuid} is ${row.vm_state}${row.task_state ? ` (${row.task_state})` : ''}, not building: nothing to build`)
    await this.db.updateTable('servers').set({ task_state: 'spawning' satisfies TaskState, updated_at: now() }).where('uuid', '=', uuid).where('task_state', 'in', ['scheduling', 'networking']).execute()
    const ports = await this.db
      .selectFrom('ports as p')
      .innerJoin('networks as n', 'n.id', 'p.network_id')
      .select(['p.id', 'p.mac_address', 'p.network_id', 'n.network_type', 'n.physical_network', 'n.segmentation_id'])
      .where('p.device_id', '=', uuid)
      .orderBy('p.created_at')
      .orderBy('p.id')
      .execute()
    const ips = ports.length
      ? await this.db
        .selectFrom('ip_allocations as a')
        .innerJoin('subnets as s', 's.id', 'a.subnet_id')
        .select(['a.port_id', 'a.ip_address', 'a.subnet_id', 's.ip_version', 's.cidr', 's.gateway_ip', 's.dns_nameservers', 's.host_routes'])
        .where('a.port_id', 'in', ports.map((p) => p.id))
        .orderBy('s.ip_version')
        .orderBy('s.created_at')
        .execute()
      : []
    const image = await this.db.selectFrom('images').select(['checksum']).where('id', '=', row.image_id).executeTakeFirst()
    if (!image) throw new FailedPrecondition(`image ${row.image_id} of server ${uuid} was deleted before the server was built`)
    const token = await this.deps.tokens(row.user_id, row.project_id).catch((err) => {
      throw new FailedPrecondition(`cannot act for the server's owner to download its image: ${toStratoError(err).message}`, { cause: err })
    })
    return {
      instanceUuid: uuid,
      name: row.instance_name,
      displayName: row.name,
      vcpus: Number(row.vcpus),
      memoryMb: Number(row.ram),
      diskGb: Number(row.disk),
      projectId: row.project_id,
      imageId: row.image_id,
      imageChecksum: image.checksum,
      imageToken: token,
      nics: ports.map((p) => ({
        portId: p.id, macAddress: p.mac_address, networkId: p.network_id, networkType: p.network_type, physicalNetwork: p.physical_network ?? '',
        segmentationId: Number(p.segmentation_id ?? 0), fixedIps: ips.filter((i) => i.port_id === p.id).map((i) => i.ip_address),
        ips: ips.filter((i) => i.port_id === p.id).map((i) => ({
          address: i.ip_address, subnetId: i.subnet_id, ipVersion: Number(i.ip_version), cidr: i.cidr, gatewayIp: i.gateway_ip ?? '',
          dnsNameservers: json<string[]>(i.dns_nameservers, []), hostRoutes: json<Array<{ destination: string; nexthop: string }>>(i.host_routes, []),
        })),
      })),
      keyName: row.key_name,
      publicKey: row.key_data,
      userData: row.user_data,
      metadata: json<Record<string, string>>(row.metadata, {}),
      availabilityZone: row.availability_zone || row.requested_az,
      hostname: hostnameOf(row.name),
      configDrive: row.config_drive === 'True',
    }
  }

  /** What the controller places on `host` (and the state of `also`, whatever it is), for an agent's start-up reconciliation. */
  async hostInstances(host: string, also: string[]): Promise<HostInstance[]> {
    const columns = ['uuid', 'host', 'vm_state', 'task_state', 'power_state', 'instance_name', 'pending_cast_id'] as const
    const rows = await this.db.selectFrom('servers').select(columns).where('host', '=', host).where('deleted', '=', 0).execute()
    const known = new Set(rows.map((r) => r.uuid))
    const extra = also.filter((u) => isUuid(u) && !known.has(u))
    if (extra.length) rows.push(...(await this.db.selectFrom('servers').select(columns).where('uuid', 'in', extra).execute()))
    return rows.map((r) => ({ instanceUuid: r.uuid, host: r.host ?? '', pendingCastId: r.pending_cast_id, vmState: r.vm_state, taskState: r.task_state, powerState: Number(r.power_state), name: r.instance_name }))
  }

  /** Allocations whose consumer is no server (a controller stopped between claim and record): released at start-up. */
  async releaseOrphanAllocations(): Promise<number> {
    const orphans = await this.db.selectFrom('allocations').select('consumer_uuid').distinct().where('consumer_uuid', 'not in', this.db.selectFrom('servers').select('uuid').where('deleted', '=', 0)).execute()
    for (const o of orphans) await this.deps.scheduler.release(o.consumer_uuid)
    if (orphans.length) this.log.warn({ consumers: orphans.map((o) => o.consumer_uuid) }, 'released allocations of consumers that are no server')
    return orphans.length
  }
}

/** The hypervisor's domain name of a server. */
export function instanceName(uuid: string): string {
  return `instance-${uuid}`
}

function castIdFor(action: ServerAction, uuid: string): string {
  return castId(action, uuid, randomBytes(4).toString('hex'))
}

function actionOfCast(id: string): ServerAction | undefined {
  return parseCastId(id)?.action
}

function actorOf(c: ServerCaller): Actor {
  return { isAdmin: c.isAdmin, projectId: c.projectId, readerDomainId: undefined }
}

function imageViewer(c: ServerCaller): ImageViewer {
  return { isAdmin: c.isAdmin, projectId: c.projectId, domainId: c.domainId, canWrite: c.canWrite }
}

function checkUserData(text: string | undefined): string {
  if (!text) return ''
  if (!/^[A-Za-z0-9+/\r\n]*={0,2}\s*$/.test(text)) throw new InvalidArgument('user_data must be base64', { field: 'user_data' })
  const size = Buffer.from(text, 'base64').length
  if (size > USER_DATA_MAX) throw new InvalidArgument(`user_data is ${size} bytes decoded; the limit is ${USER_DATA_MAX}`, { field: 'user_data' })
  return text
}

function checkMetadata(m: Record<string, string> | undefined): Record<string, string> {
  const entries = Object.entries(m ?? {})
  if (entries.length > METADATA_MAX) throw new ResourceExhausted(`metadata has ${entries.length} items; the quota is ${METADATA_MAX}`)
  for (const [k, v] of entries) {
    if (k.length === 0 || k.length > 255) throw new InvalidArgument(`metadata keys must be 1-255 characters, got '${k.slice(0, 40)}'`, { field: 'metadata' })
    if (v.length > 255) throw new InvalidArgument(`metadata value of '${k}' is ${v.length} characters; the limit is 255`, { field: `metadata.${k}` })
  }
  return Object.fromEntries(entries)
}

function withPrefix(err: unknown, prefix: string): unknown {
  const e = toStratoError(err)
  const Ctor = e.constructor as new (m: string, o: { cause?: unknown; field?: string }) => Error
  return new Ctor(`${prefix}: ${e.message}`, { cause: err, ...(e.field ? { field: e.field } : {}) })
}
