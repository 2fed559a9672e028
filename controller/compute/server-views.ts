/**
 * Reading servers (Nova's GET /servers): finding one by id or name, listings
 * with their filters, and the ServerView of a row, with its addresses and
 * security groups read through network/.
 */
import { createHash } from 'node:crypto'
import { LIVE_ATTACHMENT } from '../volume/states.js'
import { isUuid } from '../../proto/ids.js'
import { Conflict, InvalidArgument, NotFound, PermissionDenied } from '../../proto/errors.js'
import { changeStamp, groupBy, type Db } from '../store/db.js'
import type { ServerTable } from '../store/schema.js'
import type { Trx } from '../quota/quota.js'
import type { SecurityGroupCatalog } from '../network/security-groups.js'
import { portsOfDevices } from '../network/device-ports.js'
import { STATUSES, TASK_STATES, statesFor, statusOf, type TaskState, type VmState } from './server-states.js'
import { json, type ListServers, type ServerAddress, type ServerCaller, type ServerView } from './server-model.js'

/** How many views a controller keeps (per server, one for admins and one for others). */
const CACHED_VIEWS = 20_000

/**
 * How many listings (caller kind, scope and filters) a controller keeps, and
 * how many views they may hold together (what is kept with a listing, e.g.
 * its REST answer, grows with its length).
 */
const CACHED_LISTINGS = 1_000
const CACHED_LISTING_VIEWS = 20_000

/** A server's row as far as a listing reads it before it knows which views it has to build. */
type ServerRef = Pick<ServerTable, 'uuid' | 'view_revision'>

/** A listing handed out: its views in order, frozen, the same array for as long as none of them changed. */
export type ServerListing = readonly ServerView[]

interface KeptListing {
  /** The database's change stamp read before the listing's rows (undefined on engines without one). */
  stamp: string | undefined
  /** Its servers and their revisions, in order: what the listing shows is a function of these. */
  fingerprint: string
  views: ServerListing
}

export class ServerViews {
  /**
   * Built views by server and caller kind, each with the `view_revision` it
   * was built at. The revision is the database's (bumped by triggers with
   * every write to anything a view shows, whichever controller wrote), so a
   * view is used again only while the server is unchanged: a listing reads
   * the revisions and rebuilds only the servers that changed. Views handed
   * out are frozen (shared by every caller of that kind).
   */
  private readonly cached = new Map<string, { revision: number; view: ServerView }>()

  /**
   * Listings by caller kind, scope and filters. One is handed out again, the
   * same frozen array, while the database's change stamp stands (no query at
   * all), or, once it moved, while the listing's servers and their revisions
   * read again are the same: whoever keeps something derived from the array
   * (REST its JSON, gRPC its message) keeps it exactly as long as it is right.
   */
  private readonly listings = new Map<string, KeptListing>()
  private listedViews = 0

  constructor(
    private readonly db: Db,
    private readonly deps: { securityGroups: SecurityGroupCatalog },
  ) {}

  async get(ref: string | undefined, caller: ServerCaller): Promise<ServerView> {
    return (await this.cachedViews([await this.find(ref, caller)], caller))[0]!
  }

  async list(f: ListServers, caller: ServerCaller): Promise<ServerListing> {
    const adminOnly = (field: string, set: unknown) => {
      if (set && !caller.isAdmin) throw new PermissionDenied(`${field} is for cloud admins`, { field })
    }
    adminOnly('all_projects', f.allProjects)
    adminOnly('project_id', f.projectId)
    adminOnly('host', f.host)
    adminOnly('deleted', f.deleted)
    const scope = f.projectId || (f.allProjects ? '*' : (caller.projectId ?? ''))
    const key = `${caller.isAdmin ? 'admin' : 'member'} ${scope} ${JSON.stringify(f)}`
    // Read before the rows: rows read after it are at least as new, so a listing is never kept under a newer stamp than its data.
    const stamp = changeStamp(this.db)
    const kept = this.listings.get(key)
    if (kept && stamp !== undefined && kept.stamp === stamp) return kept.views
    // Only what the filters below need and the revisions: the rows of servers whose views are kept are not read.
    let q = this.db.selectFrom('servers').select(['uuid', 'name', 'hostname', 'key_name', 'config_drive', 'view_revision']).orderBy('created_at', 'desc').orderBy('uuid', 'desc')
    if (f.projectId) q = q.where('project_id', '=', f.projectId)
    else if (!f.allProjects) q = q.where('project_id', '=', caller.projectId ?? '')
    q = q.where('deleted', '=', f.deleted ? 1 : 0)
    if (f.host) q = q.where('host', '=', f.host)
    if (f.image) q = q.where((eb) => eb.or([eb('image_id', '=', f.image!), eb('image_name', '=', f.image!)]))
    if (f.flavor) q = q.where((eb) => eb.or([eb('flavor_id', '=', f.flavor!), eb('flavor_name', '=', f.flavor!)]))
    if (f.availabilityZone) q = q.where('availability_zone', '=', f.availabilityZone)
    if (f.userId) q = q.where('user_id', '=', f.userId)
    if (f.vmState) q = q.where('vm_state', '=', f.vmState)
    if (f.taskState) q = q.where('task_state', '=', f.taskState)
    if (f.powerState !== undefined) q = q.where('power_state', '=', f.powerState)
    if (f.status) {
      const pairs = statesFor(f.status)
      if (!pairs) throw new InvalidArgument(`status must be one of ${STATUSES.join(', ')}, got '${f.status}'`, { field: 'status' })
      const byVm = new Map<VmState, TaskState[]>()
      for (const p of pairs) byVm.set(p.vm, [...(byVm.get(p.vm) ?? []), p.task])
      q = q.where((eb) => eb.or([...byVm].map(([vm, tasks]) => (tasks.length === TASK_STATES.length ? eb('vm_state', '=', vm) : eb.and([eb('vm_state', '=', vm), eb('task_state', 'in', tasks)])))))
    }
    let rows = await q.execute()
    // Nova matches these as regular expressions (its `_regex_instance_filter`).
    for (const [field, pattern, of] of [['name', f.name, (r) => r.name], ['hostname', f.hostname, (r) => r.hostname], ['key_name', f.keyName, (r) => r.key_name], ['config_drive', f.configDrive, (r) => r.config_drive]] as Array<[string, string | undefined, (r: (typeof rows)[number]) => string]>) {
      if (!pattern) continue
      let re: RegExp
      try {
        re = new RegExp(pattern)
      } catch (err) {
        throw new InvalidArgument(`${field} filter '${pattern}' is not a regular expression: ${(err as Error).message}`, { field, cause: err })
      }
      rows = rows.filter((r) => re.test(of(r)))
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
    let fingerprint = ''
    for (const r of rows) fingerprint += `${r.uuid}:${r.view_revision},`
    if (kept && kept.fingerprint === fingerprint) {
      kept.stamp = stamp
      return kept.views
    }
    const views = Object.freeze(await this.cachedViews(rows, caller))
    this.forget(key) // re-inserted last: the oldest entries go first
    while (this.listings.size && (this.listings.size >= CACHED_LISTINGS || this.listedViews + views.length > CACHED_LISTING_VIEWS)) this.forget(this.listings.keys().next().value!)
    // A view built from a row newer than `rows` has a newer revision than the fingerprint: the next listing builds again.
    if (views.length <= CACHED_LISTING_VIEWS) {
      this.listings.set(key, { stamp, fingerprint, views })
      this.listedViews += views.length
    }
    return views
  }

  private forget(key: string): void {
    const kept = this.listings.get(key)
    if (!kept) return
    this.listings.delete(key)
    this.listedViews -= kept.views.length
  }

  /**
   * The views of `refs` (in their order) as `caller` may see them: the kept
   * ones whose revision is the row's, the others built (reading the full rows
   * unless given) and kept. A row gone since `refs` were read is left out.
   * Only rows read outside a transaction may come here: a view kept under a
   * revision that is rolled back would be shown for the one that follows.
   */
  private async cachedViews(refs: Array<ServerRef | ServerTable>, caller: ServerCaller): Promise<ServerView[]> {
    const kind = caller.isAdmin ? '/admin' : '/member'
    const out: Array<ServerView | undefined> = refs.map((r) => {
      const c = this.cached.get(r.uuid + kind)
      return c && c.revision === Number(r.view_revision) ? c.view : undefined
    })
    const missing = refs.filter((_, i) => !out[i])
    if (missing.length === 0) return out as ServerView[]
    const rows = missing.every((r): r is ServerTable => 'vm_state' in r)
      ? missing
      : await this.db.selectFrom('servers').selectAll().where('uuid', 'in', missing.map((r) => r.uuid)).execute()
    const built = new Map<string, ServerView>()
    for (const [i, view] of (await this.views(rows, caller)).entries()) {
      deepFreeze(view)
      built.set(view.id, view)
      const key = view.id + kind
      this.cached.delete(key) // re-inserted last: the oldest entries go first
      if (this.cached.size >= CACHED_VIEWS) this.cached.delete(this.cached.keys().next().value!)
      this.cached.set(key, { revision: Number(rows[i]!.view_revision), view })
    }
    return refs.flatMap((r, i) => out[i] ?? built.get(r.uuid) ?? [])
  }

  /** A visible server by id, or by name when exactly one has it. */
  async find(ref: string | undefined, caller: ServerCaller, db: Trx = this.db): Promise<ServerTable> {
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

  /** The views of `rows`, as `caller` may see them (host details are for admins). */
  /**
   * `known`: what the caller knows the rows have none of (servers it has just
   * recorded without ports or volumes), so they are not looked for.
   */
  async views(rows: ServerTable[], caller: ServerCaller, known: { noPorts?: boolean; noVolumes?: boolean } = {}): Promise<ServerView[]> {
    if (rows.length === 0) return []
    const ports = known.noPorts ? [] : await portsOfDevices(this.db, rows.map((r) => r.uuid))
    const askedNames = await this.deps.securityGroups.namesOf([...new Set(rows.flatMap((r) => json<string[]>(r.security_groups, [])))])
    const portsOf = groupBy(ports, (p) => p.deviceId)
    const attached = known.noVolumes ? [] : await this.db.selectFrom('volume_attachments').select(['server_id', 'volume_id', 'delete_on_termination']).where('server_id', 'in', rows.map((r) => r.uuid))
      .where('status', 'in', [...LIVE_ATTACHMENT]).orderBy('created_at').execute()
    const attachedTo = groupBy(attached, (a) => a.server_id)
    return rows.map((r) => {
      const mine = portsOf.get(r.uuid) ?? []
      const volumes = attachedTo.get(r.uuid) ?? []
      const addresses: ServerAddress[] = []
      for (const p of mine) {
        const address = (addr: string, type: ServerAddress['type']): ServerAddress => ({ networkId: p.networkId, networkName: p.networkName, addr, version: addr.includes(':') ? 6 : 4, macAddr: p.macAddress, portId: p.id, type })
        for (const ip of p.fixedIps) addresses.push(address(ip, 'fixed'))
        for (const ip of p.floatingIps) addresses.push(address(ip, 'floating'))
      }
      // With ports, the groups they have; without (none yet, or none asked for), the groups asked for.
      const groups = mine.length ? [...new Set(mine.flatMap((p) => p.securityGroups))] : json<string[]>(r.security_groups, []).map((id) => askedNames.get(id) ?? id)
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
        hostname: r.hostname,
        pinnedAvailabilityZone: r.requested_az,
        hostId: r.host ? hostIdOf(r.project_id, r.host) : '',
        hypervisorHostname: admin ? (r.host ?? '') : '',
        instanceName: admin ? r.instance_name : '',
        availabilityZone: r.availability_zone || r.requested_az,
        metadata: json<Record<string, string>>(r.metadata, {}),
        userData: r.user_data,
        fault: r.fault_message ? { code: r.fault_code, message: r.fault_message, createdAt: new Date(r.fault_at ?? r.updated_at) } : undefined,
        createdAt: new Date(r.created_at),
        updatedAt: new Date(r.updated_at),
        launchedAt: r.launched_at ? new Date(r.launched_at) : undefined,
        terminatedAt: r.terminated_at ? new Date(r.terminated_at) : undefined,
        reservationId: r.reservation_id,
        launchIndex: Number(r.launch_index),
        serverGroups: r.server_group_id ? [r.server_group_id] : [],
        configDrive: r.config_drive,
        volumesAttached: volumes.map((a) => a.volume_id),
        volumesDeletedWith: volumes.filter((a) => a.delete_on_termination === 1).map((a) => a.volume_id),
      }
    })
  }
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v)
    for (const x of Object.values(v)) if (!(x instanceof Date)) deepFreeze(x)
  }
  return v
}

const hostIds = new Map<string, string>()

/**
 * Nova's `hostId`: the host as its project sees it (a hash of both, so
 * projects cannot compare hosts). Remembered: a listing asks for it per
 * server, and the pairs are few; the memory is bounded all the same.
 */
function hostIdOf(projectId: string, host: string): string {
  const key = projectId + host
  let id = hostIds.get(key)
  if (id === undefined) {
    if (hostIds.size >= 10_000) hostIds.clear()
    id = createHash('sha224').update(key).digest('hex')
    hostIds.set(key, id)
  }
  return id
}
