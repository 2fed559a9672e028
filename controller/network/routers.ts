/**
 * Routers (Neutron's L3 semantics, neutron/db/l3_db.py): interfaces on
 * project subnets are ports with device_owner `network:router_interface` and
 * the router as device id (by subnet: a new port taking the subnet's gateway
 * IP; by port: an unbound port of the router's project); the external
 * gateway is a `network:router_gateway` port on a router:external network;
 * extra routes must go through a subnet the router is on. A subnet is on at
 * most one router, and a router's subnets do not overlap. Deleting a router
 * is refused while it has interfaces; its gateway port goes with it.
 *
 * Placement (Neutron's LeastRoutersScheduler): a router with a gateway or an
 * interface is held by one up agent with the L3 role, the one holding the
 * fewest routers (among the hosts where its `local` networks have ports,
 * when any is up: such a network lives on each host apart); `reschedule()` (run periodically) moves routers off agents
 * down for longer than `rescheduleAfterMs` and places those waiting for an
 * agent. `forHost()` is what a host's L3 agent builds (proto/router.ts).
 */
import { randomUUID } from 'node:crypto'
import { Conflict, InvalidArgument, NotFound, PermissionDenied } from '../../proto/errors.js'
import { ROUTER_GATEWAY_OWNER, ROUTER_INTERFACE_OWNER, type RouterPort, type RouterSpec } from '../../proto/router.js'
import { groupBy, type Db } from '../store/db.js'
import { KeptListings } from '../store/kept-listings.js'
import type { NetworkTable, RouterTable, SubnetTable } from '../store/schema.js'
import type { QuotaEngine, Trx } from '../quota/quota.js'
import { checkText } from '../identity/validate.js'
import { actorKey, canRead, loadNetwork, networkVisible, now, owningProject, readableProjects, requireModify, type Actor } from './access.js'
import { cidrContains, cidrsOverlap, cidrText, formatIp, ipKey, parseCidr, parseIp, requireIp, type Cidr } from './ip.js'
import type { PortCatalog } from './ports.js'

export { ROUTER_GATEWAY_OWNER, ROUTER_INTERFACE_OWNER }

export interface RouterRoute {
  destination: string
  nexthop: string
}

export interface ExternalGatewayInfo {
  networkId: string
  enableSnat: boolean
  externalFixedIps: Array<{ subnetId: string; ipAddress: string }>
}

export interface Router {
  id: string
  name: string
  description: string
  projectId: string
  status: string
  adminStateUp: boolean
  externalGatewayInfo: ExternalGatewayInfo | undefined
  routes: RouterRoute[]
  interfacesInfo: Array<{ portId: string; subnetId: string; ipAddress: string }>
  /** The host whose L3 agent holds it; shown to admins only ('' for others). */
  l3AgentHost: string
  revisionNumber: number
  createdAt: Date
  updatedAt: Date
}

/** What a create or update asks of the gateway. */
export interface GatewayRequest {
  networkId?: string
  enableSnat?: boolean
  externalFixedIps?: Array<{ subnetId?: string; ipAddress?: string }>
}

export interface CreateRouter {
  name?: string
  description?: string
  adminStateUp?: boolean
  externalGatewayInfo?: GatewayRequest
  projectId?: string
}

export interface UpdateRouter {
  name?: string
  description?: string
  adminStateUp?: boolean
  externalGatewayInfo?: GatewayRequest
  clearExternalGateway?: boolean
  routes?: RouterRoute[]
}

/** Neutron's add/remove_router_interface answer. */
export interface RouterInterfaceInfo {
  id: string
  projectId: string
  portId: string
  subnetId: string
  subnetIds: string[]
  networkId: string
}

/** Which hosts are alive (compute/hosts.ts HostRegistry). */
export interface L3Liveness {
  isUp(host: string): boolean
  /** Since when the host is down (0: never seen); undefined while it is up. */
  downSince(host: string): number | undefined
}

export interface RouterOptions {
  /** A router is moved off an L3 agent down for longer than this. @default 60000 */
  rescheduleAfterMs: number
}

/** Neutron's max_routes. */
const MAX_ROUTES = 30

/** One address of a router port, with its subnet. */
interface RouterAddress {
  portId: string
  owner: string
  networkId: string
  subnetId: string
  ipAddress: string
  cidr: string
  gatewayIp: string | null
}

async function routerAddresses(trx: Trx, routerId: string): Promise<RouterAddress[]> {
  return (await addressesOfRouters(trx, [routerId])).get(routerId) ?? []
}

/** The addresses of each of `routerIds`, by router, in one query (a listing reads every router's at once). */
async function addressesOfRouters(trx: Trx, routerIds: string[]): Promise<Map<string, RouterAddress[]>> {
  if (routerIds.length === 0) return new Map()
  const rows = await trx
    .selectFrom('ports as p')
    .innerJoin('ip_allocations as a', 'a.port_id', 'p.id')
    .innerJoin('subnets as s', 's.id', 'a.subnet_id')
    .select(['p.device_id as routerId', 'p.id as portId', 'p.device_owner as owner', 'p.network_id as networkId', 'a.subnet_id as subnetId', 'a.ip_address as ipAddress', 's.cidr', 's.gateway_ip as gatewayIp', 'p.created_at', 'a.ip_key'])
    .where('p.device_id', 'in', routerIds)
    .where('p.device_owner', 'in', [ROUTER_INTERFACE_OWNER, ROUTER_GATEWAY_OWNER])
    .orderBy('p.created_at')
    .orderBy('p.id')
    .orderBy('a.ip_key')
    .execute()
  const byRouter = groupBy(rows, (r) => r.routerId)
  return new Map([...byRouter].map(([id, list]) => [id, list.map(({ routerId: _r, created_at: _c, ip_key: _k, ...r }) => r)]))
}

const json = <T>(text: string, fallback: T): T => {
  try {
    return JSON.parse(text) as T
  } catch {
    return fallback
  }
}

const cidrOf = (text: string): Cidr => parseCidr('cidr', text, { strict: true })

/**
 * The router a floating IP of `floatingNetworkId` mapped to `fixedIp` of
 * `portId` goes through: one with an interface on the fixed IP's subnet and
 * its gateway on the floating IP's network (Neutron's
 * get_router_for_floatingip).
 * @throws NotFound (Neutron's ExternalGatewayForFloatingIPNotFound) when there is none.
 */
export async function routerForFloatingIp(trx: Trx, floatingNetworkId: string, portId: string, fixedIp: string): Promise<string> {
  const alloc = await trx.selectFrom('ip_allocations').select('subnet_id').where('port_id', '=', portId).where('ip_address', '=', fixedIp).executeTakeFirst()
  const subnetId = alloc?.subnet_id ?? ''
  const found = await trx
    .selectFrom('routers as r')
    .innerJoin('ports as gw', 'gw.id', 'r.gw_port_id')
    .innerJoin('ports as qr', 'qr.device_id', 'r.id')
    .innerJoin('ip_allocations as a', 'a.port_id', 'qr.id')
    .select('r.id')
    .where('gw.network_id', '=', floatingNetworkId)
    .where('qr.device_owner', '=', ROUTER_INTERFACE_OWNER)
    .where('a.subnet_id', '=', subnetId)
    .orderBy('r.created_at')
    .executeTakeFirst()
  if (!found) {
    throw new NotFound(`External network ${floatingNetworkId} is not reachable from subnet ${subnetId}. Therefore, cannot associate Port ${portId} with a Floating IP. (No router has an interface on the subnet and its gateway on that network: add one with 'router add subnet' and 'router set --external-gateway'.)`, { field: 'router_id' })
  }
  return found.id
}

export class RouterCatalog {
  /** Listings by who asks and the filters, kept while the database stands still. */
  private readonly routerListings: KeptListings<Router>

  /** Called after anything an L3 agent builds changed (see bus.routerChanged). */
  onChange: () => void = () => undefined
  private timer: NodeJS.Timeout | undefined

  constructor(
    private readonly db: Db,
    private readonly quota: QuotaEngine,
    private readonly ports: PortCatalog,
    private readonly hosts: L3Liveness,
    private readonly o: RouterOptions,
    private readonly log?: { info(o: object, m: string): void; warn(o: object, m: string): void },
  ) {
    this.routerListings = new KeptListings(db)
    quota.registerRowCount('routers', 'routers')
  }

  // ------------------------------------------------------------------ CRUD

  async create(req: CreateRouter, actor: Actor): Promise<Router> {
    const projectId = owningProject(actor, req.projectId)
    const name = checkText('name', req.name, 255)
    const description = checkText('description', req.description, 255)
    const id = randomUUID()
    const ts = now()
    await this.db.transaction().execute(async (trx) => {
      await this.quota.check(trx, { projectId }, { routers: 1 })
      await trx.insertInto('routers').values({
        id, project_id: projectId, name, description, admin_state_up: req.adminStateUp === false ? 0 : 1, status: 'ACTIVE', gw_port_id: null, enable_snat: 1,
        routes: '[]', l3_host: '', revision_number: 1, created_at: ts, updated_at: ts,
      }).execute()
      const row = await this.row(trx, id)
      if (req.externalGatewayInfo) await this.setGatewayIn(trx, row, req.externalGatewayInfo, actor)
      await this.placeIn(trx, id)
    })
    this.onChange()
    return this.get({ id }, actor)
  }

  private async row(trx: Trx, id: string): Promise<RouterTable> {
    return trx.selectFrom('routers').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
  }

  private async load(db: Trx, id: string | undefined, actor: Actor, field = 'id'): Promise<RouterTable> {
    const row = id ? await db.selectFrom('routers').selectAll().where('id', '=', id).executeTakeFirst() : undefined
    if (!row || !(await canRead(db, actor, row.project_id))) throw new NotFound(`router ${id || "''"} not found`, { field })
    return row
  }

  async get(ref: { id?: string; name?: string }, actor: Actor): Promise<Router> {
    if (ref.id) return (await this.toRouters(this.db, [await this.load(this.db, ref.id, actor)], actor))[0]!
    if (!ref.name) throw new InvalidArgument('give the router id or name', { field: 'id' })
    const found = await this.list({ name: ref.name }, actor)
    if (found.length === 0) throw new NotFound(`router '${ref.name}' not found`, { field: 'name' })
    if (found.length > 1) throw new InvalidArgument(`${found.length} routers are named '${ref.name}'; use the id`, { field: 'name' })
    return found[0]!
  }

  async list(filter: { name?: string; projectId?: string }, actor: Actor): Promise<readonly Router[]> {
    return this.routerListings.list(`${actorKey(actor)} ${JSON.stringify(filter)}`, () => this.read(filter, actor))
  }

  private async read(filter: { name?: string; projectId?: string }, actor: Actor): Promise<Router[]> {
    let q = this.db.selectFrom('routers').selectAll().orderBy('created_at').orderBy('id')
    if (filter.name) q = q.where('name', '=', filter.name)
    if (filter.projectId) q = q.where('project_id', '=', filter.projectId)
    const projects = await readableProjects(this.db, actor)
    if (projects) q = q.where('project_id', 'in', projects.length ? projects : [''])
    return this.toRouters(this.db, await q.execute(), actor)
  }

  async update(id: string | undefined, patch: UpdateRouter, actor: Actor): Promise<Router> {
    if (patch.externalGatewayInfo && patch.clearExternalGateway) throw new InvalidArgument('give external_gateway_info or clear_external_gateway, not both', { field: 'external_gateway_info' })
    const set: Partial<RouterTable> = {}
    if (patch.name !== undefined) set.name = checkText('name', patch.name, 255)
    if (patch.description !== undefined) set.description = checkText('description', patch.description, 255)
    if (patch.adminStateUp !== undefined) set.admin_state_up = patch.adminStateUp ? 1 : 0
    const routerId = await this.db.transaction().execute(async (trx) => {
      const cur = await this.load(trx, id, actor)
      requireModify(actor, cur.project_id, `router ${cur.id}`)
      if (patch.clearExternalGateway) await this.clearGatewayIn(trx, cur, false)
      else if (patch.externalGatewayInfo) await this.setGatewayIn(trx, cur, patch.externalGatewayInfo, actor)
      const addresses = await routerAddresses(trx, cur.id)
      if (patch.routes) set.routes = JSON.stringify(checkRoutes(patch.routes, addresses))
      else if (patch.clearExternalGateway || patch.externalGatewayInfo) routesStillConnected(cur, addresses, 'its external gateway')
      await trx.updateTable('routers').set({ ...set, revision_number: cur.revision_number + 1, updated_at: now() }).where('id', '=', cur.id).execute()
      await this.placeIn(trx, cur.id)
      return cur.id
    })
    this.onChange()
    return this.get({ id: routerId }, actor)
  }

  /** Refused while the router has interfaces (Neutron's RouterInUse); the gateway port goes with it. */
  async delete(id: string | undefined, actor: Actor): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const cur = await this.load(trx, id, actor)
      requireModify(actor, cur.project_id, `router ${cur.id}`)
      const ifaces = (await routerAddresses(trx, cur.id)).filter((a) => a.owner === ROUTER_INTERFACE_OWNER)
      if (ifaces.length) {
        throw new Conflict(`Router ${cur.id} is in use: it still has ports ${ifaces.map((a) => `${a.portId} (subnet ${a.subnetId}, ${a.ipAddress})`).join(', ')}; remove its interfaces first`)
      }
      await this.clearGatewayIn(trx, cur, false)
      await trx.deleteFrom('routers').where('id', '=', cur.id).execute()
    })
    this.onChange()
  }

  // ------------------------------------------------------------------ gateway

  private async setGatewayIn(trx: Trx, router: RouterTable, gw: GatewayRequest, actor: Actor): Promise<void> {
    const field = 'external_gateway_info.network_id'
    if (!gw.networkId) throw new InvalidArgument('external_gateway_info needs a network_id (an external network)', { field })
    const net = await loadNetwork(trx, actor, gw.networkId, field)
    if (!net.router_external) throw new InvalidArgument(`Network ${net.id} is not a valid external network (router:external is false); a router's gateway goes on an external network`, { field })
    // Neutron's policy: SNAT and the gateway's address are the operator's.
    if (!actor.isAdmin && gw.enableSnat === false) throw new PermissionDenied('only admins may disable SNAT on a router gateway (external_gateway_info.enable_snat)', { field: 'external_gateway_info.enable_snat' })
    if (!actor.isAdmin && gw.externalFixedIps?.some((f) => f.ipAddress)) {
      throw new PermissionDenied("only admins may choose the address of a router's gateway (external_gateway_info.external_fixed_ips ip_address); give a subnet_id only", { field: 'external_gateway_info.external_fixed_ips' })
    }
    const enableSnat = gw.enableSnat ?? true
    const current = router.gw_port_id ? await trx.selectFrom('ports').select(['id', 'network_id']).where('id', '=', router.gw_port_id).executeTakeFirst() : undefined
    const sameNetwork = current?.network_id === net.id
    if (sameNetwork && !gw.externalFixedIps?.length) {
      await trx.updateTable('routers').set({ enable_snat: enableSnat ? 1 : 0 }).where('id', '=', router.id).execute()
      return
    }
    // Floating IPs through the router stay valid when the gateway stays on their network.
    await this.clearGatewayIn(trx, router, sameNetwork)
    const portId = await this.ports.createIn(trx, net, {
      // Like Neutron's, the gateway port belongs to no project: it is the external network's.
      projectId: '', deviceOwner: ROUTER_GATEWAY_OWNER, deviceId: router.id, noSecurityGroups: true,
      fixedIps: (gw.externalFixedIps ?? []).map((f) => ({ ...(f.subnetId ? { subnetId: f.subnetId } : {}), ...(f.ipAddress ? { ipAddress: f.ipAddress } : {}) })),
    })
    const held = await trx.selectFrom('ip_allocations').select('ip_address').where('port_id', '=', portId).execute()
    if (held.length === 0) throw new InvalidArgument(`external network ${net.id} has no subnet to give the router's gateway an address`, { field })
    await trx.updateTable('routers').set({ gw_port_id: portId, enable_snat: enableSnat ? 1 : 0 }).where('id', '=', router.id).execute()
  }

  /** Removes the gateway port; refused while floating IPs go through it (unless they keep their network: `keepFloatingIps`). */
  private async clearGatewayIn(trx: Trx, router: RouterTable, keepFloatingIps: boolean): Promise<void> {
    const fresh = await this.row(trx, router.id)
    if (!fresh.gw_port_id) return
    if (!keepFloatingIps) {
      const fip = await trx.selectFrom('floating_ips').select(['id', 'floating_ip_address', 'floating_network_id']).where('router_id', '=', router.id).where('port_id', 'is not', null).executeTakeFirst()
      if (fip) {
        throw new Conflict(`Gateway cannot be updated for router ${router.id}, since a gateway to external network ${fip.floating_network_id} is required by one or more floating IPs (e.g. ${fip.floating_ip_address}, ${fip.id}); disassociate them first`)
      }
    }
    await trx.updateTable('routers').set({ gw_port_id: null }).where('id', '=', router.id).execute()
    await this.ports.deleteIn(trx, fresh.gw_port_id)
  }

  // ------------------------------------------------------------------ interfaces

  async addInterface(routerId: string | undefined, req: { subnetId?: string; portId?: string }, actor: Actor): Promise<RouterInterfaceInfo> {
    if (req.subnetId && req.portId) throw new InvalidArgument('Cannot specify both subnet-id and port-id', { field: 'subnet_id' })
    if (!req.subnetId && !req.portId) throw new InvalidArgument('Either subnet_id or port_id must be specified', { field: 'subnet_id' })
    const info = await this.db.transaction().execute(async (trx) => {
      const router = await this.load(trx, routerId, actor, 'router_id')
      requireModify(actor, router.project_id, `router ${router.id}`)
      const ifaces = (await routerAddresses(trx, router.id)).filter((a) => a.owner === ROUTER_INTERFACE_OWNER)
      let portId: string
      let networkId: string
      let subnetIds: string[]
      if (req.subnetId) {
        const subnet = await this.loadSubnet(trx, req.subnetId, actor)
        const net = await trx.selectFrom('networks').selectAll().where('id', '=', subnet.network_id).executeTakeFirstOrThrow()
        // The external network's gateway address is its physical router's: a router reaches that network through its own gateway port.
        if (net.router_external) throw new InvalidArgument(`Subnet ${subnet.id} is on external network ${net.id}: a router reaches it through its external gateway (external_gateway_info), not an interface`, { field: 'subnet_id' })
        if (!subnet.gateway_ip) throw new InvalidArgument(`Subnet ${subnet.id} has no gateway IP: a router interface takes the subnet's gateway address (set one with 'subnet set --gateway')`, { field: 'subnet_id' })
        checkJoins(router.id, ifaces, [subnet])
        const c = cidrOf(subnet.cidr)
        const gw = parseIp(subnet.gateway_ip)!
        const holder = await trx
          .selectFrom('ip_allocations as a')
          .innerJoin('ports as p', 'p.id', 'a.port_id')
          .select(['p.id', 'p.device_owner', 'p.device_id'])
          .where('a.subnet_id', '=', subnet.id)
          .where('a.ip_key', '=', ipKey(c.version, gw.value))
          .executeTakeFirst()
        if (holder?.device_owner === ROUTER_INTERFACE_OWNER) {
          const other = await trx.selectFrom('routers').select('name').where('id', '=', holder.device_id).executeTakeFirst()
          throw new Conflict(`Subnet ${subnet.id} is already on router ${holder.device_id}${other?.name ? ` ('${other.name}')` : ''}: its port ${holder.id} holds the gateway IP ${subnet.gateway_ip}; a subnet is on one router at most`, { field: 'subnet_id' })
        }
        if (holder) throw new Conflict(`IP address ${subnet.gateway_ip}, the gateway of subnet ${subnet.id}, is already allocated to port ${holder.id}`, { field: 'subnet_id' })
        portId = await this.ports.createIn(trx, net, {
          projectId: router.project_id, deviceOwner: ROUTER_INTERFACE_OWNER, deviceId: router.id, noSecurityGroups: true, allowGateway: true,
          fixedIps: [{ subnetId: subnet.id, ipAddress: subnet.gateway_ip }],
        })
        networkId = net.id
        subnetIds = [subnet.id]
      } else {
        const port = await this.ports.getIn(trx, req.portId, actor, 'port_id')
        if (port.deviceId || port.deviceOwner) {
          throw new Conflict(`Port ${port.id} is in use: it already has an attached device ${port.deviceId || "''"} (${port.deviceOwner || 'no owner'}); only an unbound port becomes a router interface`, { field: 'port_id' })
        }
        if (!actor.isAdmin && port.projectId !== router.project_id) throw new InvalidArgument(`Port ${port.id} belongs to another project than router ${router.id}; only admins join them`, { field: 'port_id' })
        if (port.fixedIps.length === 0) throw new InvalidArgument(`Router port must have at least one fixed IP: port ${port.id} has none`, { field: 'port_id' })
        const portNet = await trx.selectFrom('networks').select('router_external').where('id', '=', port.networkId).executeTakeFirstOrThrow()
        if (portNet.router_external) throw new InvalidArgument(`Port ${port.id} is on external network ${port.networkId}: a router reaches it through its external gateway (external_gateway_info), not an interface`, { field: 'port_id' })
        const subnets = await trx.selectFrom('subnets').selectAll().where('id', 'in', port.fixedIps.map((f) => f.subnetId)).execute()
        checkJoins(router.id, ifaces, subnets)
        await trx.updateTable('ports').set({ device_id: router.id, device_owner: ROUTER_INTERFACE_OWNER, updated_at: now() }).where('id', '=', port.id).execute()
        // Router ports are filtered by no security group (Neutron's network:* owners).
        await trx.deleteFrom('port_security_groups').where('port_id', '=', port.id).execute()
        this.ports.onChange()
        portId = port.id
        networkId = port.networkId
        subnetIds = port.fixedIps.map((f) => f.subnetId)
      }
      await trx.updateTable('routers').set({ revision_number: router.revision_number + 1, updated_at: now() }).where('id', '=', router.id).execute()
      await this.placeIn(trx, router.id)
      return { id: router.id, projectId: router.project_id, portId, subnetId: subnetIds[0] ?? '', subnetIds, networkId }
    })
    this.onChange()
    return info
  }

  /**
   * Removes an interface (by port, or by the subnet it is on) and deletes its
   * port. Refused while a floating IP through the router or one of its routes
   * needs it (Neutron's RouterInterfaceInUseByFloatingIP, …ByRoute).
   */
  async removeInterface(routerId: string | undefined, req: { subnetId?: string; portId?: string }, actor: Actor): Promise<RouterInterfaceInfo> {
    if (!req.subnetId && !req.portId) throw new InvalidArgument('Either subnet_id or port_id must be specified', { field: 'subnet_id' })
    const info = await this.db.transaction().execute(async (trx) => {
      const router = await this.load(trx, routerId, actor, 'router_id')
      requireModify(actor, router.project_id, `router ${router.id}`)
      const addresses = await routerAddresses(trx, router.id)
      const ifaces = addresses.filter((a) => a.owner === ROUTER_INTERFACE_OWNER)
      let portId: string
      if (req.portId) {
        if (!ifaces.some((a) => a.portId === req.portId)) throw new NotFound(`Router ${router.id} does not have an interface with id ${req.portId}`, { field: 'port_id' })
        if (req.subnetId && !ifaces.some((a) => a.portId === req.portId && a.subnetId === req.subnetId)) {
          throw new InvalidArgument(`Subnet ${req.subnetId} is not on port ${req.portId} of router ${router.id}`, { field: 'subnet_id' })
        }
        portId = req.portId
      } else {
        const a = ifaces.find((x) => x.subnetId === req.subnetId)
        if (!a) throw new NotFound(`Router ${router.id} has no interface on subnet ${req.subnetId}`, { field: 'subnet_id' })
        portId = a.portId
      }
      const going = ifaces.filter((a) => a.portId === portId)
      const goingSubnets = new Set(going.map((a) => a.subnetId))
      const fips = await trx
        .selectFrom('floating_ips as f')
        .innerJoin('ip_allocations as a', (j) => j.onRef('a.port_id', '=', 'f.port_id').onRef('a.ip_address', '=', 'f.fixed_ip_address'))
        .select(['f.id', 'f.floating_ip_address', 'a.subnet_id'])
        .where('f.router_id', '=', router.id)
        .execute()
      const needed = fips.find((f) => goingSubnets.has(f.subnet_id))
      if (needed) {
        throw new Conflict(`Router interface for subnet ${needed.subnet_id} on router ${router.id} cannot be deleted, as it is required by one or more floating IPs (e.g. ${needed.floating_ip_address}, ${needed.id}); disassociate them first`, { field: req.portId ? 'port_id' : 'subnet_id' })
      }
      routesStillConnected(router, addresses.filter((a) => a.portId !== portId), `its interface on subnet ${going[0]!.subnetId}`)
      await this.ports.deleteIn(trx, portId)
      await trx.updateTable('routers').set({ revision_number: router.revision_number + 1, updated_at: now() }).where('id', '=', router.id).execute()
      await this.placeIn(trx, router.id)
      const subnetIds = [...goingSubnets]
      return { id: router.id, projectId: router.project_id, portId, subnetId: subnetIds[0] ?? '', subnetIds, networkId: going[0]!.networkId }
    })
    this.onChange()
    return info
  }

  private async loadSubnet(trx: Trx, id: string, actor: Actor): Promise<SubnetTable> {
    const row = await trx.selectFrom('subnets').selectAll().where('id', '=', id).executeTakeFirst()
    const net = row ? await trx.selectFrom('networks').selectAll().where('id', '=', row.network_id).executeTakeFirst() : undefined
    if (!row || !net || !(await networkVisible(trx, actor, net))) throw new NotFound(`subnet ${id} not found`, { field: 'subnet_id' })
    return row
  }

  // ------------------------------------------------------------------ placement

  /**
   * Keeps the router on its L3 agent, or places it on the up L3 agent with
   * the fewest routers (ties: by host name); a router with neither gateway
   * nor interface is on none. Its ports follow (binding:host_id, status).
   */
  private async placeIn(trx: Trx, routerId: string): Promise<void> {
    const r = await this.row(trx, routerId)
    const ifaces = await trx.selectFrom('ports').select('id').where('device_id', '=', r.id).where('device_owner', '=', ROUTER_INTERFACE_OWNER).executeTakeFirst()
    let host = ''
    let unplaced = ''
    if (r.gw_port_id || ifaces) {
      const l3 = (await trx.selectFrom('compute_hosts').select('host').where('l3', '=', 1).orderBy('host').execute()).map((h) => h.host)
      if (r.l3_host && l3.includes(r.l3_host)) host = r.l3_host
      else {
        let up = l3.filter((h) => this.hosts.isUp(h))
        // A local network lives on each host apart: prefer the agents of hosts where the router's local networks have ports.
        const local = await trx
          .selectFrom('ports as qr')
          .innerJoin('networks as n', 'n.id', 'qr.network_id')
          .innerJoin('ports as p', 'p.network_id', 'qr.network_id')
          .select('p.binding_host_id')
          .distinct()
          .where('qr.device_id', '=', r.id)
          .where('qr.device_owner', '=', ROUTER_INTERFACE_OWNER)
          .where('n.network_type', '=', 'local')
          .where('p.binding_host_id', '!=', '')
          .where('p.device_owner', 'not in', [ROUTER_INTERFACE_OWNER, ROUTER_GATEWAY_OWNER])
          .execute()
        const near = up.filter((h) => local.some((l) => l.binding_host_id === h))
        if (near.length) up = near
        // Neutron leaves such a router unscheduled until an L3 agent comes.
        if (!l3.length) unplaced = 'no host announces the L3 role (an agent announces it only when it builds routers: l3Driver not none)'
        else if (!up.length) unplaced = `no L3 agent is up (${l3.join(', ')} ${l3.length === 1 ? 'is' : 'are'} down)`
        if (up.length) {
          const counts = await trx.selectFrom('routers').select(['l3_host']).select((eb) => eb.fn.countAll<number>().as('n')).where('l3_host', 'in', up).where('id', '!=', r.id).groupBy('l3_host').execute()
          const load = new Map(counts.map((c) => [c.l3_host, Number(c.n)]))
          host = up.reduce((best, h) => ((load.get(h) ?? 0) < (load.get(best) ?? 0) ? h : best), up[0]!)
        }
      }
    }
    if (host !== r.l3_host) {
      await trx.updateTable('routers').set({ l3_host: host }).where('id', '=', r.id).execute()
      this.log?.info({ router: r.id, from: r.l3_host || undefined, to: host || undefined, ...(unplaced ? { reason: unplaced } : {}) }, host ? 'router placed on an L3 agent' : 'router on no L3 agent')
    }
    await trx.updateTable('ports').set({ binding_host_id: host, status: host ? 'ACTIVE' : 'DOWN' })
      .where('device_id', '=', r.id).where('device_owner', 'in', [ROUTER_INTERFACE_OWNER, ROUTER_GATEWAY_OWNER]).where('binding_host_id', '!=', host).execute()
  }

  /**
   * Moves routers off L3 agents down for longer than `rescheduleAfterMs` (or
   * no longer L3) and places routers waiting for an agent. Returns how many
   * routers changed host.
   */
  async reschedule(at = Date.now()): Promise<number> {
    const moved = await this.db.transaction().execute(async (trx) => {
      const l3 = new Set((await trx.selectFrom('compute_hosts').select('host').where('l3', '=', 1).execute()).map((h) => h.host))
      const rows = await trx.selectFrom('routers').select(['id', 'l3_host', 'gw_port_id']).execute()
      let n = 0
      for (const r of rows) {
        let stale = !r.l3_host
        if (r.l3_host && !l3.has(r.l3_host)) stale = true
        if (r.l3_host && l3.has(r.l3_host)) {
          const since = this.hosts.downSince(r.l3_host)
          stale = since !== undefined && at - since > this.o.rescheduleAfterMs
        }
        if (!stale) continue
        if (r.l3_host) await trx.updateTable('routers').set({ l3_host: '' }).where('id', '=', r.id).execute()
        await this.placeIn(trx, r.id)
        const after = await this.row(trx, r.id)
        if (after.l3_host !== r.l3_host) n++
      }
      return n
    })
    if (moved) this.onChange()
    return moved
  }

  /** Runs `reschedule()` every `intervalMs`. */
  start(intervalMs: number): void {
    if (this.timer) return
    this.timer = setInterval(() => {
      this.reschedule().catch((err) => this.log?.warn({ err }, 'router rescheduling failed'))
    }, intervalMs)
    this.timer.unref()
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  // ------------------------------------------------------------------ what an L3 agent builds

  /** The routers placed on `host`, as its L3 agent builds them. */
  async forHost(host: string): Promise<RouterSpec[]> {
    const routers = await this.db.selectFrom('routers').selectAll().where('l3_host', '=', host).orderBy('created_at').orderBy('id').execute()
    if (routers.length === 0) return []
    // Every router's ports, addresses, networks and floating IPs in one query each, whatever their number.
    const ids = routers.map((r) => r.id)
    const addressesOf = await addressesOfRouters(this.db, ids)
    const allPorts = await this.db.selectFrom('ports').select(['id', 'device_id', 'mac_address', 'network_id', 'device_owner']).where('device_id', 'in', ids)
      .where('device_owner', 'in', [ROUTER_INTERFACE_OWNER, ROUTER_GATEWAY_OWNER]).orderBy('created_at').orderBy('id').execute()
    const portsOf = groupBy(allPorts, (p) => p.device_id)
    const netIds = [...new Set(allPorts.map((p) => p.network_id))]
    const nets = new Map(netIds.length ? (await this.db.selectFrom('networks').selectAll().where('id', 'in', netIds).execute()).map((n) => [n.id, n]) : [])
    const fipsOf = groupBy(
      await this.db.selectFrom('floating_ips').select(['id', 'router_id', 'floating_ip_address', 'fixed_ip_address']).where('router_id', 'in', ids).where('port_id', 'is not', null).orderBy('floating_ip_address').execute(),
      (f) => f.router_id ?? '',
    )
    const out: RouterSpec[] = []
    for (const r of routers) {
      const addresses = addressesOf.get(r.id) ?? []
      const ports = portsOf.get(r.id) ?? []
      const toPort = (p: (typeof ports)[number]): RouterPort => {
        const n = nets.get(p.network_id)!
        const mine = addresses.filter((a) => a.portId === p.id)
        return {
          portId: p.id, macAddress: p.mac_address, network: routerNetwork(n),
          addresses: mine.map((a) => `${a.ipAddress}/${a.cidr.split('/')[1]}`), cidrs: [...new Set(mine.map((a) => a.cidr))],
        }
      }
      const gwPort = ports.find((p) => p.id === r.gw_port_id)
      const gwV4 = addresses.find((a) => a.portId === r.gw_port_id && parseIp(a.ipAddress)?.version === 4)
      const fips = fipsOf.get(r.id) ?? []
      out.push({
        id: r.id,
        adminStateUp: r.admin_state_up !== 0,
        interfaces: ports.filter((p) => p.device_owner === ROUTER_INTERFACE_OWNER).map(toPort),
        ...(gwPort ? { gateway: { ...toPort(gwPort), nexthop: gwV4?.gatewayIp ?? '', enableSnat: r.enable_snat !== 0 } } : {}),
        routes: json<RouterRoute[]>(r.routes, []),
        floatingIps: gwPort ? fips.map((f) => ({ id: f.id, floatingIpAddress: f.floating_ip_address, fixedIpAddress: f.fixed_ip_address ?? '' })) : [],
      })
    }
    return out
  }

  /** The views of `rows`: their addresses and their gateways' networks read in two queries, whatever their number. */
  private async toRouters(db: Trx, rows: RouterTable[], actor: Actor): Promise<Router[]> {
    const addressesOf = await addressesOfRouters(db, rows.map((r) => r.id))
    const gwPortIds = rows.flatMap((r) => (r.gw_port_id ? [r.gw_port_id] : []))
    const gwNetworks = new Map(gwPortIds.length ? (await db.selectFrom('ports').select(['id', 'network_id']).where('id', 'in', gwPortIds).execute()).map((p) => [p.id, p.network_id]) : [])
    return rows.map((r) => toRouter(r, addressesOf.get(r.id) ?? [], r.gw_port_id ? gwNetworks.get(r.gw_port_id) : undefined, actor))
  }
}

function toRouter(r: RouterTable, addresses: RouterAddress[], gwNetworkId: string | undefined, actor: Actor): Router {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    projectId: r.project_id,
    status: r.status,
    adminStateUp: r.admin_state_up !== 0,
    externalGatewayInfo: gwNetworkId !== undefined
      ? {
          networkId: gwNetworkId,
          enableSnat: r.enable_snat !== 0,
          externalFixedIps: addresses.filter((a) => a.portId === r.gw_port_id).map((a) => ({ subnetId: a.subnetId, ipAddress: a.ipAddress })),
        }
      : undefined,
    routes: json<RouterRoute[]>(r.routes, []),
    interfacesInfo: addresses.filter((a) => a.owner === ROUTER_INTERFACE_OWNER).map((a) => ({ portId: a.portId, subnetId: a.subnetId, ipAddress: a.ipAddress })),
    l3AgentHost: actor.isAdmin ? r.l3_host : '',
    revisionNumber: r.revision_number,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  }
}

function routerNetwork(n: NetworkTable): RouterPort['network'] {
  return { networkId: n.id, networkType: n.network_type, physicalNetwork: n.physical_network ?? '', segmentationId: Number(n.segmentation_id ?? 0), mtu: n.mtu }
}

/** A subnet joins a router only once, and never overlapping another of its subnets (Neutron's _check_for_dup_router_subnets). */
function checkJoins(routerId: string, ifaces: RouterAddress[], subnets: Array<Pick<SubnetTable, 'id' | 'cidr'>>): void {
  for (const s of subnets) {
    if (ifaces.some((a) => a.subnetId === s.id)) throw new InvalidArgument(`Router ${routerId} already has a port on subnet ${s.id}`, { field: 'subnet_id' })
    const c = cidrOf(s.cidr)
    const other = ifaces.find((a) => cidrsOverlap(c, cidrOf(a.cidr)))
    if (other) throw new InvalidArgument(`Cidr ${s.cidr} of subnet ${s.id} overlaps with cidr ${other.cidr} of subnet ${other.subnetId} (already on router ${routerId})`, { field: 'subnet_id' })
  }
}

/** Routes checked and normalised: each nexthop on a subnet of the router, not one of its own addresses (Neutron's _validate_routes). */
function checkRoutes(routes: RouterRoute[], addresses: RouterAddress[]): RouterRoute[] {
  if (routes.length > MAX_ROUTES) throw new InvalidArgument(`Number of routes exceeds the maximum ${MAX_ROUTES}, got ${routes.length}`, { field: 'routes' })
  const out: RouterRoute[] = []
  for (const [i, r] of routes.entries()) {
    const field = `routes[${i}]`
    const dest = parseCidr(`${field}.destination`, r.destination, { strict: true })
    const hop = requireIp(`${field}.nexthop`, r.nexthop, dest.version)
    const norm = { destination: cidrText(dest), nexthop: formatIp(hop.version, hop.value) }
    const shown = `{destination: ${norm.destination}, nexthop: ${norm.nexthop}}`
    if (out.some((o) => o.destination === norm.destination && o.nexthop === norm.nexthop)) throw new InvalidArgument(`route ${shown} is listed twice`, { field })
    if (addresses.some((a) => a.ipAddress === norm.nexthop)) throw new InvalidArgument(`Invalid format for routes: ${shown}, the nexthop is used by router`, { field: `${field}.nexthop` })
    if (!addresses.some((a) => cidrContains(cidrOf(a.cidr), hop))) {
      throw new InvalidArgument(`Invalid format for routes: ${shown}, the nexthop is not connected with router (it is on none of its subnets${addresses.length ? `: ${[...new Set(addresses.map((a) => a.cidr))].join(', ')}` : ''})`, { field: `${field}.nexthop` })
    }
    out.push(norm)
  }
  return out
}

/** After a change of ports, every route's nexthop must still be on a subnet of the router. */
function routesStillConnected(router: RouterTable, remaining: RouterAddress[], what: string): void {
  for (const r of json<RouterRoute[]>(router.routes, [])) {
    const hop = parseIp(r.nexthop)
    if (hop && !remaining.some((a) => cidrContains(cidrOf(a.cidr), hop))) {
      throw new Conflict(`Router ${router.id} cannot lose ${what}: it is required by one or more routes (${r.destination} via ${r.nexthop}); remove the route first`)
    }
  }
}
