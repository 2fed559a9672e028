/**
 * Ports (Neutron semantics): a generated fa:16:3e:xx:xx:xx MAC (unique),
 * fixed IPs from the network's subnets (see ipam.ts), device owner and id,
 * and security groups (default: the project's `default` group; none for
 * network-owned ports). Everything happens in one transaction with the quota
 * check, so a failure leaves nothing behind; deleting a port releases its
 * addresses and dissociates its floating IPs.
 */
import { randomBytes, randomUUID } from 'node:crypto'
import { Conflict, FailedPrecondition, InvalidArgument, NotFound } from '../../proto/errors.js'
import { groupBy, isUniqueViolation, type Db } from '../store/db.js'
import { KeptListings } from '../store/kept-listings.js'
import type { NetworkTable, PortTable } from '../store/schema.js'
import type { QuotaEngine, Trx } from '../quota/quota.js'
import { checkText } from '../identity/validate.js'
import { actorKey, canModify, canRead, loadNetwork, now, owningProject, readableProjects, requireModify, type Actor } from './access.js'
import { allocate, ipamOf, type FixedIp, type FixedIpRequest } from './ipam.js'
import type { SecurityGroupCatalog } from './security-groups.js'
import { ROUTER_GATEWAY_OWNER, ROUTER_INTERFACE_OWNER } from '../../proto/router.js'

export interface Port {
  id: string
  name: string
  description: string
  projectId: string
  networkId: string
  macAddress: string
  fixedIps: FixedIp[]
  deviceOwner: string
  deviceId: string
  /** binding:host_id: the host whose agent serves the port ('' when unbound). */
  bindingHostId: string
  status: string
  adminStateUp: boolean
  securityGroups: string[]
  revisionNumber: number
  createdAt: Date
  updatedAt: Date
}

export interface CreatePort {
  name?: string
  description?: string
  networkId?: string
  macAddress?: string
  fixedIps?: FixedIpRequest[]
  deviceOwner?: string
  deviceId?: string
  adminStateUp?: boolean
  securityGroups?: string[]
  noSecurityGroups?: boolean
  projectId?: string
}

/** Neutron's max_fixed_ips_per_port. */
const MAX_FIXED_IPS = 5
export const FLOATINGIP_OWNER = 'network:floatingip'

function checkMac(text: string): string {
  const mac = text.trim().toLowerCase().replaceAll('-', ':')
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(mac)) throw new InvalidArgument(`mac_address '${text}' is not a MAC address (xx:xx:xx:xx:xx:xx)`, { field: 'mac_address' })
  if (parseInt(mac.slice(0, 2), 16) & 1) throw new InvalidArgument(`mac_address ${mac} is a multicast address; ports need a unicast one`, { field: 'mac_address' })
  if (mac === '00:00:00:00:00:00') throw new InvalidArgument('mac_address 00:00:00:00:00:00 is not usable', { field: 'mac_address' })
  return mac
}

/** Neutron's base_mac fa:16:3e:00:00:00 with the last three octets random. */
function generateMac(): string {
  return `fa:16:3e:${[...randomBytes(3)].map((b) => b.toString(16).padStart(2, '0')).join(':')}`
}

export class PortCatalog {
  /** Listings by who asks and the filters, kept while the database stands still. */
  private readonly portListings: KeptListings<Port>

  /**
   * Called when a port's addresses, groups or device may have changed (the
   * hosts' filtering and metadata caches follow; see bus.firewallChanged).
   * Server create and delete call it after their transactions.
   */
  onChange: () => void = () => undefined

  constructor(
    private readonly db: Db,
    private readonly quota: QuotaEngine,
    private readonly groups: SecurityGroupCatalog,
  ) {
    this.portListings = new KeptListings(db)
    quota.registerRowCount('ports', 'ports')
  }

  async create(req: CreatePort, actor: Actor): Promise<Port> {
    if (req.deviceOwner === ROUTER_INTERFACE_OWNER || req.deviceOwner === ROUTER_GATEWAY_OWNER) {
      throw new InvalidArgument(`device_owner ${req.deviceOwner} is for the ports routers make: create a port and use 'router add port'`, { field: 'device_owner' })
    }
    const id = await this.db.transaction().execute(async (trx) => {
      const net = await loadNetwork(trx, actor, req.networkId)
      if (!net.shared && !canModify(actor, net.project_id)) throw new FailedPrecondition(`network ${net.id} is neither yours nor shared: ports cannot be created on it`, { field: 'network_id' })
      const projectId = owningProject(actor, req.projectId)
      await this.quota.check(trx, { projectId }, { ports: 1 })
      return this.createIn(trx, net, { ...req, projectId })
    })
    return this.get(id, actor)
  }

  /**
   * Creates a port inside the caller's transaction (no quota or visibility
   * checks: the caller made them). Returns the port id.
   */
  async createIn(trx: Trx, net: NetworkTable, req: CreatePort & { projectId: string; id?: string; bindingHostId?: string; allowGateway?: boolean }): Promise<string> {
    const name = checkText('name', req.name, 255)
    const description = checkText('description', req.description, 255)
    const deviceOwner = checkText('device_owner', req.deviceOwner, 255)
    const deviceId = checkText('device_id', req.deviceId, 255)
    const requested = req.fixedIps ?? []
    if (requested.length > MAX_FIXED_IPS) throw new InvalidArgument(`a port may have at most ${MAX_FIXED_IPS} fixed IPs, got ${requested.length}`, { field: 'fixed_ips' })
    if (req.noSecurityGroups && req.securityGroups?.length) throw new InvalidArgument('give security_groups or no_security_groups, not both', { field: 'security_groups' })
    const networkOwned = deviceOwner.startsWith('network:')
    const groups = req.noSecurityGroups || networkOwned ? [] : await this.groups.forPort(trx, req.projectId, req.securityGroups?.length ? req.securityGroups : undefined)
    let mac: string
    if (req.macAddress) {
      mac = checkMac(req.macAddress)
      const holder = await trx.selectFrom('ports').select('id').where('mac_address', '=', mac).executeTakeFirst()
      if (holder) throw new Conflict(`mac_address ${mac} is already used by port ${holder.id}`, { field: 'mac_address' })
    } else {
      do mac = generateMac()
      while (await trx.selectFrom('ports').select('id').where('mac_address', '=', mac).executeTakeFirst())
    }
    const id = req.id ?? randomUUID()
    const ts = now()
    await trx.insertInto('ports').values({
      id, network_id: net.id, project_id: req.projectId, name, description, mac_address: mac, admin_state_up: req.adminStateUp === false ? 0 : 1,
      status: 'DOWN', device_owner: deviceOwner, device_id: deviceId, binding_host_id: req.bindingHostId ?? '', revision_number: 1, created_at: ts, updated_at: ts,
    }).execute()
    const subnets = (await trx.selectFrom('subnets').selectAll().where('network_id', '=', net.id).orderBy('created_at').orderBy('id').execute()).map(ipamOf)
    try {
      await allocate(trx, id, net.id, subnets, requested, { networkName: net.name, allowGateway: req.allowGateway ?? false })
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict('an address was taken concurrently; retry', { cause: err, field: 'fixed_ips' })
      throw err
    }
    if (groups.length) await trx.insertInto('port_security_groups').values(groups.map((g) => ({ port_id: id, security_group_id: g }))).execute()
    this.onChange()
    return id
  }

  private async load(db: Trx, id: string | undefined, actor: Actor, field = 'id'): Promise<PortTable> {
    const row = id ? await db.selectFrom('ports').selectAll().where('id', '=', id).executeTakeFirst() : undefined
    if (!row || !(await canRead(db, actor, row.project_id))) throw new NotFound(`port ${id || "''"} not found`, { field })
    return row
  }

  async get(id: string | undefined, actor: Actor): Promise<Port> {
    return (await this.toPorts(this.db, [await this.load(this.db, id, actor)]))[0]!
  }

  /** For other catalogs, inside their transaction. */
  async getIn(trx: Trx, id: string | undefined, actor: Actor, field: string): Promise<Port> {
    return (await this.toPorts(trx, [await this.load(trx, id, actor, field)]))[0]!
  }

  async list(filter: { networkId?: string; deviceId?: string; deviceOwner?: string; projectId?: string; macAddress?: string; name?: string; bindingHostId?: string }, actor: Actor): Promise<readonly Port[]> {
    return this.portListings.list(`${actorKey(actor)} ${JSON.stringify(filter)}`, () => this.read(filter, actor))
  }

  private async read(filter: { networkId?: string; deviceId?: string; deviceOwner?: string; projectId?: string; macAddress?: string; name?: string; bindingHostId?: string }, actor: Actor): Promise<Port[]> {
    let q = this.db.selectFrom('ports').selectAll().orderBy('created_at').orderBy('id')
    if (filter.networkId) q = q.where('network_id', '=', filter.networkId)
    if (filter.deviceId) q = q.where('device_id', '=', filter.deviceId)
    if (filter.deviceOwner) q = q.where('device_owner', '=', filter.deviceOwner)
    if (filter.projectId) q = q.where('project_id', '=', filter.projectId)
    if (filter.macAddress) q = q.where('mac_address', '=', filter.macAddress.toLowerCase())
    if (filter.name) q = q.where('name', '=', filter.name)
    if (filter.bindingHostId) q = q.where('binding_host_id', '=', filter.bindingHostId)
    const projects = await readableProjects(this.db, actor)
    if (projects) q = q.where('project_id', 'in', projects.length ? projects : [''])
    return this.toPorts(this.db, await q.execute())
  }

  async update(id: string | undefined, patch: { name?: string; description?: string; deviceOwner?: string; deviceId?: string; adminStateUp?: boolean; securityGroups?: string[] }, actor: Actor): Promise<Port> {
    await this.db.transaction().execute(async (trx) => {
      const cur = await this.load(trx, id, actor)
      requireModify(actor, cur.project_id, `port ${cur.id}`)
      const routerOwned = (o: string) => o === ROUTER_INTERFACE_OWNER || o === ROUTER_GATEWAY_OWNER
      // A router's ports are the router's to make and to release (its checks — one router per subnet, no overlaps — live there).
      if ((patch.deviceOwner !== undefined || patch.deviceId !== undefined) && (routerOwned(cur.device_owner) || routerOwned(patch.deviceOwner ?? ''))) {
        throw new Conflict(`port ${cur.id}: the device of a router port changes through the router (router add port / router remove port), not the port API`, { field: 'device_owner' })
      }
      const set: Partial<PortTable> = {}
      if (patch.name !== undefined) set.name = checkText('name', patch.name, 255)
      if (patch.description !== undefined) set.description = checkText('description', patch.description, 255)
      if (patch.deviceOwner !== undefined) set.device_owner = checkText('device_owner', patch.deviceOwner, 255)
      if (patch.deviceId !== undefined) set.device_id = checkText('device_id', patch.deviceId, 255)
      if (patch.adminStateUp !== undefined) set.admin_state_up = patch.adminStateUp ? 1 : 0
      if (patch.securityGroups) {
        const groups = await this.groups.forPort(trx, cur.project_id, patch.securityGroups)
        await trx.deleteFrom('port_security_groups').where('port_id', '=', cur.id).execute()
        if (groups.length) await trx.insertInto('port_security_groups').values(groups.map((g) => ({ port_id: cur.id, security_group_id: g }))).execute()
      }
      await trx.updateTable('ports').set({ ...set, revision_number: cur.revision_number + 1, updated_at: now() }).where('id', '=', cur.id).execute()
    })
    if (patch.securityGroups || patch.deviceId !== undefined) this.onChange()
    return this.get(id, actor)
  }

  async delete(id: string | undefined, actor: Actor): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const cur = await this.load(trx, id, actor)
      requireModify(actor, cur.project_id, `port ${cur.id}`)
      if (cur.device_owner === FLOATINGIP_OWNER) throw new FailedPrecondition(`port ${cur.id} holds floating IP ${cur.device_id}; delete the floating IP instead`)
      // Neutron's L3 plugin prevents it too: the router would keep a port it no longer has.
      if (cur.device_owner === ROUTER_INTERFACE_OWNER || cur.device_owner === ROUTER_GATEWAY_OWNER) {
        throw new Conflict(`Port ${cur.id} cannot be deleted directly via the port API: has device owner ${cur.device_owner} (router ${cur.device_id}); ${cur.device_owner === ROUTER_INTERFACE_OWNER ? 'remove the router interface' : "clear the router's external gateway"} instead`)
      }
      await this.deleteIn(trx, cur.id)
    })
  }

  /** Dissociates floating IPs from the port and deletes it (its addresses and group links go with it). */
  async deleteIn(trx: Trx, id: string): Promise<void> {
    this.onChange()
    await trx.updateTable('floating_ips').set({ port_id: null, fixed_ip_address: null, router_id: null, status: 'DOWN', updated_at: now() }).where('port_id', '=', id).execute()
    await trx.deleteFrom('ports').where('id', '=', id).execute()
  }

  // ------------------------------------------------------------------ a device's ports (what compute asks)

  /**
   * Binds a free port to a device (and its host: binding:host_id) inside the
   * caller's transaction (Nova passing `port` at create).
   * @throws Conflict when another device took it meanwhile.
   */
  async bindIn(trx: Trx, portId: string, device: { deviceId: string; deviceOwner: string; hostId?: string }, field: string): Promise<void> {
    const r = await trx.updateTable('ports').set({ device_id: device.deviceId, device_owner: device.deviceOwner, binding_host_id: device.hostId ?? '', updated_at: now() }).where('id', '=', portId).where('device_id', '=', '').executeTakeFirst()
    if (Number(r.numUpdatedRows) === 0) throw new Conflict(`port ${portId} was taken by another server meanwhile`, { field })
    this.onChange()
  }

  /** The device is gone: deletes the ports it made for itself (`own`), unbinds the others (they were the user's). */
  async releaseDeviceIn(trx: Trx, deviceId: string, own: ReadonlySet<string>): Promise<void> {
    const bound = await trx.selectFrom('ports').select('id').where('device_id', '=', deviceId).execute()
    for (const p of bound) {
      if (own.has(p.id)) await this.deleteIn(trx, p.id)
      else await trx.updateTable('ports').set({ device_id: '', device_owner: '', binding_host_id: '', status: 'DOWN', updated_at: now() }).where('id', '=', p.id).execute()
    }
    if (bound.length) this.onChange()
  }

  /** The device's ports follow it up (ACTIVE) or down (DOWN). */
  async setDeviceStatusIn(trx: Trx, deviceId: string, status: 'ACTIVE' | 'DOWN'): Promise<void> {
    await trx.updateTable('ports').set({ status, updated_at: now() }).where('device_id', '=', deviceId).execute()
  }

  private async toPorts(db: Trx, rows: PortTable[]): Promise<Port[]> {
    if (rows.length === 0) return []
    const ids = rows.map((r) => r.id)
    const ips = await db.selectFrom('ip_allocations').select(['port_id', 'subnet_id', 'ip_address']).where('port_id', 'in', ids).orderBy('port_id').orderBy('subnet_id').orderBy('ip_key').execute()
    const sgs = await db.selectFrom('port_security_groups').select(['port_id', 'security_group_id']).where('port_id', 'in', ids).execute()
    // By port, so a listing does not scan every address and group once per port.
    const ipsOf = groupBy(ips, (i) => i.port_id)
    const sgsOf = groupBy(sgs, (g) => g.port_id)
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      description: r.description,
      projectId: r.project_id,
      networkId: r.network_id,
      macAddress: r.mac_address,
      fixedIps: (ipsOf.get(r.id) ?? []).map((i) => ({ subnetId: i.subnet_id, ipAddress: i.ip_address })),
      deviceOwner: r.device_owner,
      deviceId: r.device_id,
      bindingHostId: r.binding_host_id,
      status: r.status,
      adminStateUp: r.admin_state_up !== 0,
      securityGroups: (sgsOf.get(r.id) ?? []).map((s) => s.security_group_id),
      revisionNumber: r.revision_number,
      createdAt: new Date(r.created_at),
      updatedAt: new Date(r.updated_at),
    }))
  }
}
