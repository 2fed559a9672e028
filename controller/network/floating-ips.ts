/**
 * Floating IPs (Neutron semantics): an address of a router:external network,
 * held by a `network:floatingip` port, mapped to one fixed IPv4 address of a
 * port of the same project (`fixed_ip_address` chooses when the port has
 * several), through a router with an interface on the fixed IP's subnet and
 * its gateway on the floating IP's network (recorded as router_id). ACTIVE
 * while associated, DOWN otherwise.
 */
import { randomUUID } from 'node:crypto'
import { Conflict, InvalidArgument, NotFound } from '../../proto/errors.js'
import type { Db } from '../store/db.js'
import { KeptListings } from '../store/kept-listings.js'
import type { FloatingIpTable } from '../store/schema.js'
import type { QuotaEngine, Trx } from '../quota/quota.js'
import { checkText } from '../identity/validate.js'
import { actorKey, canRead, loadNetwork, now, owningProject, readableProjects, requireModify, type Actor } from './access.js'
import { parseIp } from './ip.js'
import { FLOATINGIP_OWNER, type PortCatalog } from './ports.js'
import { routerForFloatingIp } from './routers.js'

export interface FloatingIp {
  id: string
  projectId: string
  description: string
  floatingNetworkId: string
  floatingIpAddress: string
  portId: string
  fixedIpAddress: string
  status: string
  routerId: string
  revisionNumber: number
  createdAt: Date
  updatedAt: Date
}

export interface CreateFloatingIp {
  floatingNetworkId?: string
  floatingIpAddress?: string
  subnetId?: string
  portId?: string
  fixedIpAddress?: string
  description?: string
  projectId?: string
}

export class FloatingIpCatalog {
  /** Listings by who asks and the filters, kept while the database stands still. */
  private readonly floatingIpListings: KeptListings<FloatingIp>

  /** Called after an association changed (the routers' NAT follows; see bus.routerChanged). */
  onChange: () => void = () => undefined

  constructor(
    private readonly db: Db,
    private readonly quota: QuotaEngine,
    private readonly ports: PortCatalog,
  ) {
    this.floatingIpListings = new KeptListings(db)
    quota.registerRowCount('floating_ips', 'floating_ips')
  }

  async create(req: CreateFloatingIp, actor: Actor): Promise<FloatingIp> {
    const projectId = owningProject(actor, req.projectId)
    const description = checkText('description', req.description, 255)
    const id = randomUUID()
    await this.db.transaction().execute(async (trx) => {
      const net = await loadNetwork(trx, actor, req.floatingNetworkId, 'floating_network_id')
      if (!net.router_external) throw new InvalidArgument(`network ${net.id} is not external (router:external); floating IPs come from external networks only`, { field: 'floating_network_id' })
      await this.quota.check(trx, { projectId }, { floating_ips: 1 })
      const fixed = req.floatingIpAddress || req.subnetId ? [{ ...(req.subnetId ? { subnetId: req.subnetId } : {}), ...(req.floatingIpAddress ? { ipAddress: req.floatingIpAddress } : {}) }] : []
      // Like Neutron, the holding port belongs to no project: it is the network's.
      const portId = randomUUID()
      await this.ports.createIn(trx, net, { id: portId, projectId: '', deviceOwner: FLOATINGIP_OWNER, deviceId: id, fixedIps: fixed, noSecurityGroups: true })
      const addr = await trx.selectFrom('ip_allocations').select('ip_address').where('port_id', '=', portId).execute()
      const v4 = addr.find((a) => parseIp(a.ip_address)?.version === 4)
      if (!v4) throw new InvalidArgument(`network ${net.id} has no IPv4 subnet to allocate a floating IP from`, { field: 'floating_network_id' })
      const ts = now()
      await trx.insertInto('floating_ips').values({
        id, project_id: projectId, description, floating_network_id: net.id, floating_ip_address: v4.ip_address, floating_port_id: portId,
        port_id: null, fixed_ip_address: null, router_id: null, status: 'DOWN', revision_number: 1, created_at: ts, updated_at: ts,
      }).execute()
      if (req.portId) await this.associate(trx, id, projectId, net.id, req.portId, req.fixedIpAddress, actor)
    })
    if (req.portId) this.onChange()
    return this.get(id, actor)
  }

  private async associate(trx: Trx, fipId: string, projectId: string, floatingNetworkId: string, portId: string, fixedIpAddress: string | undefined, actor: Actor): Promise<void> {
    const port = await this.ports.getIn(trx, portId, actor, 'port_id')
    if (port.projectId !== projectId) throw new InvalidArgument(`port ${port.id} belongs to another project than floating IP ${fipId}`, { field: 'port_id' })
    if (port.networkId === floatingNetworkId) throw new InvalidArgument(`port ${port.id} is on the external network itself; associate a port of an internal network`, { field: 'port_id' })
    const v4 = port.fixedIps.filter((f) => parseIp(f.ipAddress)?.version === 4).map((f) => f.ipAddress)
    if (v4.length === 0) throw new InvalidArgument(`port ${port.id} has no IPv4 address to map the floating IP to`, { field: 'port_id' })
    let fixed: string
    if (fixedIpAddress) {
      const ip = parseIp(fixedIpAddress)
      const norm = ip ? v4.find((a) => parseIp(a)!.value === ip.value && ip.version === 4) : undefined
      if (!norm) throw new InvalidArgument(`port ${port.id} has no IPv4 address ${fixedIpAddress} (it has ${v4.join(', ')})`, { field: 'fixed_ip_address' })
      fixed = norm
    } else {
      if (v4.length > 1) throw new InvalidArgument(`port ${port.id} has several IPv4 addresses (${v4.join(', ')}); give fixed_ip_address`, { field: 'fixed_ip_address' })
      fixed = v4[0]!
    }
    const other = await trx.selectFrom('floating_ips').select(['id', 'floating_ip_address']).where('port_id', '=', port.id).where('fixed_ip_address', '=', fixed).where('id', '!=', fipId).executeTakeFirst()
    if (other) throw new Conflict(`${fixed} of port ${port.id} already has floating IP ${other.floating_ip_address} (${other.id})`, { field: 'port_id' })
    // The address is reachable only through a router with a gateway on the floating IP's network and an interface on the port's subnet.
    const routerId = await routerForFloatingIp(trx, floatingNetworkId, port.id, fixed)
    await trx.updateTable('floating_ips').set({ port_id: port.id, fixed_ip_address: fixed, router_id: routerId, status: 'ACTIVE', updated_at: now() }).where('id', '=', fipId).execute()
  }

  private async load(db: Trx, id: string | undefined, actor: Actor): Promise<FloatingIpTable> {
    const row = id ? await db.selectFrom('floating_ips').selectAll().where('id', '=', id).executeTakeFirst() : undefined
    if (!row || !(await canRead(db, actor, row.project_id))) throw new NotFound(`floating IP ${id || "''"} not found`, { field: 'id' })
    return row
  }

  async get(id: string | undefined, actor: Actor): Promise<FloatingIp> {
    return toFloatingIp(await this.load(this.db, id, actor))
  }

  async list(filter: { floatingNetworkId?: string; portId?: string; floatingIpAddress?: string; projectId?: string; status?: string }, actor: Actor): Promise<readonly FloatingIp[]> {
    return this.floatingIpListings.list(`${actorKey(actor)} ${JSON.stringify(filter)}`, () => this.read(filter, actor))
  }

  private async read(filter: { floatingNetworkId?: string; portId?: string; floatingIpAddress?: string; projectId?: string; status?: string }, actor: Actor): Promise<FloatingIp[]> {
    let q = this.db.selectFrom('floating_ips').selectAll().orderBy('created_at').orderBy('id')
    if (filter.floatingNetworkId) q = q.where('floating_network_id', '=', filter.floatingNetworkId)
    if (filter.portId) q = q.where('port_id', '=', filter.portId)
    if (filter.floatingIpAddress) q = q.where('floating_ip_address', '=', filter.floatingIpAddress)
    if (filter.projectId) q = q.where('project_id', '=', filter.projectId)
    if (filter.status) q = q.where('status', '=', filter.status)
    const projects = await readableProjects(this.db, actor)
    if (projects) q = q.where('project_id', 'in', projects.length ? projects : [''])
    return (await q.execute()).map(toFloatingIp)
  }

  async update(id: string | undefined, patch: { portId?: string; fixedIpAddress?: string; description?: string }, actor: Actor): Promise<FloatingIp> {
    await this.db.transaction().execute(async (trx) => {
      const cur = await this.load(trx, id, actor)
      requireModify(actor, cur.project_id, `floating IP ${cur.id}`)
      if (patch.description !== undefined) {
        await trx.updateTable('floating_ips').set({ description: checkText('description', patch.description, 255) }).where('id', '=', cur.id).execute()
      }
      if (patch.portId === '') {
        await trx.updateTable('floating_ips').set({ port_id: null, fixed_ip_address: null, router_id: null, status: 'DOWN' }).where('id', '=', cur.id).execute()
      } else if (patch.portId !== undefined) {
        await this.associate(trx, cur.id, cur.project_id, cur.floating_network_id, patch.portId, patch.fixedIpAddress, actor)
      } else if (patch.fixedIpAddress) {
        throw new InvalidArgument('fixed_ip_address needs port_id', { field: 'fixed_ip_address' })
      }
      await trx.updateTable('floating_ips').set({ revision_number: cur.revision_number + 1, updated_at: now() }).where('id', '=', cur.id).execute()
    })
    if (patch.portId !== undefined) this.onChange()
    return this.get(id, actor)
  }

  /** Releases the address (its holding port goes too). */
  async delete(id: string | undefined, actor: Actor): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const cur = await this.load(trx, id, actor)
      requireModify(actor, cur.project_id, `floating IP ${cur.id}`)
      await trx.deleteFrom('floating_ips').where('id', '=', cur.id).execute()
      await this.ports.deleteIn(trx, cur.floating_port_id)
    })
    this.onChange()
  }
}

function toFloatingIp(r: FloatingIpTable): FloatingIp {
  return {
    id: r.id,
    projectId: r.project_id,
    description: r.description,
    floatingNetworkId: r.floating_network_id,
    floatingIpAddress: r.floating_ip_address,
    portId: r.port_id ?? '',
    fixedIpAddress: r.fixed_ip_address ?? '',
    status: r.status,
    routerId: r.router_id ?? '',
    revisionNumber: r.revision_number,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
  }
}
