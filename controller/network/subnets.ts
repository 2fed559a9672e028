/**
 * Subnets (Neutron semantics): a normalised IPv4 or IPv6 CIDR on a network,
 * no two overlapping on one network; the gateway defaults to the first
 * address (or none); allocation pools default to the usable range minus the
 * gateway; a gateway inside a pool is a CONFLICT; overlapping pools, pools
 * outside the subnet and reversed pools are INVALID_ARGUMENT naming the pool.
 */
import { randomUUID } from 'node:crypto'
import { Conflict, InvalidArgument, NotFound } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import { KeptListings } from '../store/kept-listings.js'
import type { SubnetTable } from '../store/schema.js'
import type { QuotaEngine } from '../quota/quota.js'
import { checkText } from '../identity/validate.js'
import { actorKey, loadNetwork, networkVisible, now, owningProject, readableProjects, requireModify, type Actor } from './access.js'
import { cidrsOverlap, cidrText, formatIp, ipKey, parseCidr, requireIp, type Cidr } from './ip.js'
import { defaultPools, usableRange, type Pool } from './ipam.js'
import { DHCP_OWNER } from '../../proto/dhcp.js'
import { ROUTER_INTERFACE_OWNER } from '../../proto/router.js'

export interface AllocationPool {
  start: string
  end: string
}

export interface HostRoute {
  destination: string
  nexthop: string
}

export interface Subnet {
  id: string
  name: string
  description: string
  projectId: string
  networkId: string
  ipVersion: number
  cidr: string
  gatewayIp: string
  allocationPools: AllocationPool[]
  dnsNameservers: string[]
  hostRoutes: HostRoute[]
  enableDhcp: boolean
  revisionNumber: number
  createdAt: Date
  updatedAt: Date
}

export interface CreateSubnet {
  name?: string
  description?: string
  networkId?: string
  ipVersion?: number
  cidr?: string
  gatewayIp?: string
  noGateway?: boolean
  allocationPools?: AllocationPool[]
  dnsNameservers?: string[]
  hostRoutes?: HostRoute[]
  enableDhcp?: boolean
  projectId?: string
}

export interface UpdateSubnet {
  name?: string
  description?: string
  gatewayIp?: string
  noGateway?: boolean
  allocationPools?: AllocationPool[]
  dnsNameservers?: string[]
  hostRoutes?: HostRoute[]
  enableDhcp?: boolean
}

/** Neutron's max_dns_nameservers and max_subnet_host_routes. */
const MAX_DNS = 5
const MAX_ROUTES = 20

function checkGateway(c: Cidr, text: string): bigint {
  const ip = requireIp('gateway_ip', text, c.version)
  const r = usableRange(c)
  if (ip.value < r.first || ip.value > r.last) throw new InvalidArgument(`gateway_ip ${text} is not a usable address of ${cidrText(c)}`, { field: 'gateway_ip' })
  return ip.value
}

function checkPools(c: Cidr, pools: AllocationPool[]): Pool[] {
  const r = usableRange(c)
  const out = pools.map((p, i) => {
    const field = `allocation_pools[${i}]`
    const first = requireIp(`${field}.start`, p.start, c.version).value
    const last = requireIp(`${field}.end`, p.end, c.version).value
    if (first > last) throw new InvalidArgument(`allocation pool ${p.start}-${p.end} starts after it ends`, { field })
    if (first < r.first || last > r.last) {
      throw new InvalidArgument(`allocation pool ${p.start}-${p.end} is outside the usable addresses of ${cidrText(c)} (${formatIp(c.version, r.first)}-${formatIp(c.version, r.last)})`, { field })
    }
    return { first, last, i }
  })
  const sorted = [...out].sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0))
  for (let k = 1; k < sorted.length; k++) {
    const a = sorted[k - 1]!
    const b = sorted[k]!
    if (b.first <= a.last) {
      throw new InvalidArgument(`allocation pools ${formatIp(c.version, a.first)}-${formatIp(c.version, a.last)} and ${formatIp(c.version, b.first)}-${formatIp(c.version, b.last)} overlap`, { field: `allocation_pools[${b.i}]` })
    }
  }
  return sorted.map(({ first, last }) => ({ first, last }))
}

function checkGatewayOutsidePools(c: Cidr, gateway: bigint | undefined, pools: Pool[]): void {
  if (gateway === undefined) return
  const p = pools.find((x) => gateway >= x.first && gateway <= x.last)
  if (p) {
    throw new Conflict(`gateway_ip ${formatIp(c.version, gateway)} is inside allocation pool ${formatIp(c.version, p.first)}-${formatIp(c.version, p.last)}; move the gateway or shrink the pool`, { field: 'gateway_ip' })
  }
}

function checkDns(list: string[]): string[] {
  if (list.length > MAX_DNS) throw new InvalidArgument(`at most ${MAX_DNS} dns_nameservers are allowed, got ${list.length}`, { field: 'dns_nameservers' })
  const out: string[] = []
  for (const [i, text] of list.entries()) {
    const ip = requireIp(`dns_nameservers[${i}]`, text)
    const norm = formatIp(ip.version, ip.value)
    if (out.includes(norm)) throw new InvalidArgument(`dns nameserver ${norm} is listed twice`, { field: `dns_nameservers[${i}]` })
    out.push(norm)
  }
  return out
}

function checkRoutes(c: Cidr, routes: HostRoute[]): HostRoute[] {
  if (routes.length > MAX_ROUTES) throw new InvalidArgument(`at most ${MAX_ROUTES} host_routes are allowed, got ${routes.length}`, { field: 'host_routes' })
  const out: HostRoute[] = []
  for (const [i, r] of routes.entries()) {
    const dest = parseCidr(`host_routes[${i}].destination`, r.destination, { strict: true })
    if (dest.version !== c.version) throw new InvalidArgument(`host route destination ${r.destination} is not IPv${c.version}`, { field: `host_routes[${i}].destination` })
    const hop = requireIp(`host_routes[${i}].nexthop`, r.nexthop, c.version)
    const norm = { destination: cidrText(dest), nexthop: formatIp(hop.version, hop.value) }
    if (out.some((o) => o.destination === norm.destination && o.nexthop === norm.nexthop)) throw new InvalidArgument(`host route ${norm.destination} via ${norm.nexthop} is listed twice`, { field: `host_routes[${i}]` })
    out.push(norm)
  }
  return out
}

const poolsJson = (c: Cidr, pools: Pool[]) => JSON.stringify(pools.map((p) => ({ start: formatIp(c.version, p.first), end: formatIp(c.version, p.last) })))

export class SubnetCatalog {
  /** Listings by who asks and the filters, kept while the database stands still. */
  private readonly subnetListings: KeptListings<Subnet>

  /** Called after a subnet is created, changed or deleted (the hosts' DHCP follows; see bus.dhcpChanged). */
  onChange: () => void = () => undefined

  constructor(
    private readonly db: Db,
    private readonly quota: QuotaEngine,
  ) {
    this.subnetListings = new KeptListings(db)
    quota.registerRowCount('subnets', 'subnets')
  }

  async create(req: CreateSubnet, actor: Actor): Promise<Subnet> {
    const net = await loadNetwork(this.db, actor, req.networkId)
    requireModify(actor, net.project_id, `network ${net.id}`)
    const projectId = owningProject(actor, req.projectId)
    const name = checkText('name', req.name, 255)
    const description = checkText('description', req.description, 255)
    const c = parseCidr('cidr', req.cidr, { strict: true })
    const maxPrefix = c.version === 4 ? 30 : 126
    if (c.prefix === 0) throw new InvalidArgument(`cidr ${cidrText(c)}: a prefix length of 0 is not allowed`, { field: 'cidr' })
    if (c.prefix > maxPrefix) throw new InvalidArgument(`cidr ${cidrText(c)} leaves no addresses to allocate; the longest IPv${c.version} prefix is /${maxPrefix}`, { field: 'cidr' })
    const version = req.ipVersion || c.version
    if (version !== 4 && version !== 6) throw new InvalidArgument(`ip_version must be 4 or 6, got ${version}`, { field: 'ip_version' })
    if (version !== c.version) throw new InvalidArgument(`ip_version is ${version} but cidr ${cidrText(c)} is IPv${c.version}`, { field: 'ip_version' })
    if (req.noGateway && req.gatewayIp) throw new InvalidArgument('give gateway_ip or no_gateway, not both', { field: 'gateway_ip' })
    const gateway = req.noGateway ? undefined : req.gatewayIp ? checkGateway(c, req.gatewayIp) : c.first + 1n
    const pools = req.allocationPools?.length ? checkPools(c, req.allocationPools) : defaultPools(c, gateway)
    checkGatewayOutsidePools(c, gateway, pools)
    const dns = checkDns(req.dnsNameservers ?? [])
    const routes = checkRoutes(c, req.hostRoutes ?? [])
    const id = randomUUID()
    const ts = now()
    await this.db.transaction().execute(async (trx) => {
      await this.quota.check(trx, { projectId }, { subnets: 1 })
      const others = await trx.selectFrom('subnets').select(['id', 'cidr']).where('network_id', '=', net.id).execute()
      for (const o of others) {
        if (cidrsOverlap(c, parseCidr('cidr', o.cidr, { strict: true }))) throw new InvalidArgument(`cidr ${cidrText(c)} overlaps subnet ${o.id} (${o.cidr}) of network ${net.id}`, { field: 'cidr' })
      }
      await trx.insertInto('subnets').values({
        id, network_id: net.id, project_id: projectId, name, description, ip_version: version, cidr: cidrText(c),
        gateway_ip: gateway === undefined ? null : formatIp(c.version, gateway), enable_dhcp: req.enableDhcp === false ? 0 : 1,
        allocation_pools: poolsJson(c, pools), dns_nameservers: JSON.stringify(dns), host_routes: JSON.stringify(routes),
        revision_number: 1, created_at: ts, updated_at: ts,
      }).execute()
    })
    this.onChange()
    return this.get({ id }, actor)
  }

  private async load(id: string | undefined, actor: Actor): Promise<SubnetTable> {
    const row = id ? await this.db.selectFrom('subnets').selectAll().where('id', '=', id).executeTakeFirst() : undefined
    const net = row ? await this.db.selectFrom('networks').selectAll().where('id', '=', row.network_id).executeTakeFirst() : undefined
    if (!row || !net || !(await networkVisible(this.db, actor, net))) throw new NotFound(`subnet ${id || "''"} not found`, { field: 'id' })
    return row
  }

  async get(ref: { id?: string; name?: string }, actor: Actor): Promise<Subnet> {
    if (ref.id) return toSubnet(await this.load(ref.id, actor))
    if (!ref.name) throw new InvalidArgument('give the subnet id or name', { field: 'id' })
    const found = await this.list({ name: ref.name }, actor)
    if (found.length === 0) throw new NotFound(`subnet '${ref.name}' not found`, { field: 'name' })
    if (found.length > 1) throw new InvalidArgument(`${found.length} subnets are named '${ref.name}'; use the id`, { field: 'name' })
    return found[0]!
  }

  async list(filter: { name?: string; networkId?: string; ipVersion?: number; cidr?: string; projectId?: string }, actor: Actor): Promise<readonly Subnet[]> {
    return this.subnetListings.list(`${actorKey(actor)} ${JSON.stringify(filter)}`, () => this.read(filter, actor))
  }

  private async read(filter: { name?: string; networkId?: string; ipVersion?: number; cidr?: string; projectId?: string }, actor: Actor): Promise<Subnet[]> {
    let q = this.db.selectFrom('subnets as s').innerJoin('networks as n', 'n.id', 's.network_id').selectAll('s').orderBy('s.created_at').orderBy('s.id')
    if (filter.name) q = q.where('s.name', '=', filter.name)
    if (filter.networkId) q = q.where('s.network_id', '=', filter.networkId)
    if (filter.ipVersion) q = q.where('s.ip_version', '=', filter.ipVersion)
    if (filter.cidr) q = q.where('s.cidr', '=', filter.cidr)
    if (filter.projectId) q = q.where('s.project_id', '=', filter.projectId)
    const projects = await readableProjects(this.db, actor)
    if (projects) {
      q = q.where((eb) => eb.or([eb('n.shared', '=', 1), eb('n.router_external', '=', 1), ...(projects.length ? [eb('n.project_id', 'in', projects), eb('s.project_id', 'in', projects)] : [])]))
    }
    return (await q.execute()).map(toSubnet)
  }

  async update(id: string | undefined, patch: UpdateSubnet, actor: Actor): Promise<Subnet> {
    const cur = await this.load(id, actor)
    requireModify(actor, cur.project_id, `subnet ${cur.id}`)
    const c = parseCidr('cidr', cur.cidr, { strict: true })
    const set: Partial<SubnetTable> = {}
    if (patch.name !== undefined) set.name = checkText('name', patch.name, 255)
    if (patch.description !== undefined) set.description = checkText('description', patch.description, 255)
    if (patch.enableDhcp !== undefined) set.enable_dhcp = patch.enableDhcp ? 1 : 0
    if (patch.dnsNameservers) set.dns_nameservers = JSON.stringify(checkDns(patch.dnsNameservers))
    if (patch.hostRoutes) set.host_routes = JSON.stringify(checkRoutes(c, patch.hostRoutes))
    if (patch.noGateway && patch.gatewayIp) throw new InvalidArgument('give gateway_ip or no_gateway, not both', { field: 'gateway_ip' })
    const oldGateway = cur.gateway_ip ? requireIp('gateway_ip', cur.gateway_ip).value : undefined
    const gateway = patch.noGateway ? undefined : patch.gatewayIp ? checkGateway(c, patch.gatewayIp) : oldGateway
    const pools = patch.allocationPools ? checkPools(c, patch.allocationPools) : (JSON.parse(cur.allocation_pools) as AllocationPool[]).map((p) => ({ first: requireIp('allocation_pools', p.start).value, last: requireIp('allocation_pools', p.end).value }))
    if (gateway !== oldGateway || patch.allocationPools) checkGatewayOutsidePools(c, gateway, pools)
    set.gateway_ip = gateway === undefined ? null : formatIp(c.version, gateway)
    if (patch.allocationPools) set.allocation_pools = poolsJson(c, pools)
    await this.db.transaction().execute(async (trx) => {
      if (gateway !== oldGateway) {
        // The router's interface holds the gateway address: moving or removing it would leave the subnet's guests without their router.
        const iface = await trx.selectFrom('ip_allocations as a').innerJoin('ports as p', 'p.id', 'a.port_id').select(['p.id', 'p.device_id', 'a.ip_address'])
          .where('a.subnet_id', '=', cur.id).where('p.device_owner', '=', ROUTER_INTERFACE_OWNER).executeTakeFirst()
        if (iface) throw new Conflict(`subnet ${cur.id} is on router ${iface.device_id} (its interface ${iface.id} holds ${iface.ip_address}): remove the router interface before changing the gateway`, { field: 'gateway_ip' })
      }
      if (gateway !== undefined && gateway !== oldGateway) {
        const holder = await trx.selectFrom('ip_allocations').select('port_id').where('subnet_id', '=', cur.id).where('ip_key', '=', ipKey(c.version, gateway)).executeTakeFirst()
        if (holder) throw new Conflict(`gateway_ip ${formatIp(c.version, gateway)} is in use by port ${holder.port_id}`, { field: 'gateway_ip' })
      }
      await trx.updateTable('subnets').set({ ...set, revision_number: cur.revision_number + 1, updated_at: now() }).where('id', '=', cur.id).execute()
    })
    this.onChange()
    return this.get({ id: cur.id }, actor)
  }

  /** Refused while a port holds an address in the subnet. */
  async delete(id: string | undefined, actor: Actor): Promise<void> {
    const cur = await this.load(id, actor)
    requireModify(actor, cur.project_id, `subnet ${cur.id}`)
    await this.db.transaction().execute(async (trx) => {
      // DHCP ports give their address on the subnet back (Neutron); the host's agent drops or rebuilds them.
      const dhcp = trx.selectFrom('ports').select('id').where('network_id', '=', cur.network_id).where('device_owner', '=', DHCP_OWNER)
      await trx.deleteFrom('ip_allocations').where('subnet_id', '=', cur.id).where('port_id', 'in', dhcp).execute()
      const used = await trx.selectFrom('ip_allocations').select(['port_id', 'ip_address']).where('subnet_id', '=', cur.id).executeTakeFirst()
      if (used) throw new Conflict(`subnet ${cur.id} is in use: port ${used.port_id} holds ${used.ip_address}; delete its ports first`)
      await trx.deleteFrom('subnets').where('id', '=', cur.id).execute()
    })
    this.onChange()
  }
}

function toSubnet(r: SubnetTable): Subnet {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    projectId: r.project_id,
    networkId: r.network_id,
    ipVersion: r.ip_version,
    cidr: r.cidr,
    gatewayIp: r.gateway_ip ?? '',
    allocationPools: JSON.parse(r.allocation_pools) as AllocationPool[],
    dnsNameservers: JSON.parse(r.dns_nameservers) as string[],
    hostRoutes: JSON.parse(r.host_routes) as HostRoute[],
    enableDhcp: r.enable_dhcp !== 0,
    revisionNumber: r.revision_number,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  }
}
