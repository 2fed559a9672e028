/**
 * Networks (Neutron ML2 semantics): `shared`, `router:external` and the
 * provider attributes are admin-only; flat networks take a whole physical
 * network (one each), vlan networks a VLAN id from the configured range,
 * unique per physical network (allocated when not given); anything else is a
 * local project network. Counted against the `networks` quota in the creating
 * transaction.
 */
import { randomUUID } from 'node:crypto'
import { Conflict, InvalidArgument, NotFound, PermissionDenied, ResourceExhausted } from '../../proto/errors.js'
import { groupBy, isUniqueViolation, type Db } from '../store/db.js'
import { KeptListings } from '../store/kept-listings.js'
import type { NetworkTable } from '../store/schema.js'
import type { QuotaEngine, Trx } from '../quota/quota.js'
import { checkText } from '../identity/validate.js'
import { actorKey, loadNetwork, now, owningProject, readableProjects, requireModify, type Actor } from './access.js'
import { DHCP_OWNER } from '../../proto/dhcp.js'

export interface NetworkConfig {
  physicalNetworks: string[]
  vlanRanges: Record<string, [number, number]>
  /** What a network created without provider attributes gets, first that can be had (ML2 `tenant_network_types`). */
  tenantNetworkTypes: Array<'local' | 'vlan'>
}

export interface Network {
  id: string
  name: string
  description: string
  projectId: string
  status: string
  adminStateUp: boolean
  shared: boolean
  routerExternal: boolean
  providerNetworkType: string
  providerPhysicalNetwork: string
  providerSegmentationId: number | undefined
  mtu: number
  subnets: string[]
  portSecurityEnabled: boolean
  revisionNumber: number
  createdAt: Date
  updatedAt: Date
}

export interface CreateNetwork {
  name?: string
  description?: string
  adminStateUp?: boolean
  shared?: boolean
  routerExternal?: boolean
  providerNetworkType?: string
  providerPhysicalNetwork?: string
  providerSegmentationId?: number
  projectId?: string
}

export interface NetworkFilter {
  name?: string
  shared?: boolean
  routerExternal?: boolean
  projectId?: string
  status?: string
}

const NETWORK_TYPES = ['flat', 'vlan', 'local'] as const
const MTU = 1500

export class NetworkCatalog {
  /** Called after a network is deleted with its DHCP ports (the hosts' DHCP follows; see bus.dhcpChanged). */
  onChange: () => void = () => undefined

  /** Listings by who asks and the filters, kept while the database stands still. */
  private readonly listings: KeptListings<Network>

  constructor(
    private readonly db: Db,
    private readonly quota: QuotaEngine,
    private readonly cfg: NetworkConfig,
  ) {
    this.listings = new KeptListings(db)
    quota.registerRowCount('networks', 'networks')
  }

  async create(req: CreateNetwork, actor: Actor): Promise<Network> {
    const projectId = owningProject(actor, req.projectId)
    const adminOnly = { shared: req.shared, router_external: req.routerExternal, provider_network_type: req.providerNetworkType, provider_physical_network: req.providerPhysicalNetwork, provider_segmentation_id: req.providerSegmentationId }
    if (!actor.isAdmin) {
      const set = Object.entries(adminOnly).find(([, v]) => v !== undefined && v !== '' && v !== false)
      if (set) throw new PermissionDenied(`only admins may set ${set[0]} on a network`, { field: set[0] })
    }
    const name = checkText('name', req.name, 255)
    const description = checkText('description', req.description, 255)
    const provider = req.providerNetworkType || req.providerPhysicalNetwork || req.providerSegmentationId !== undefined
    // A self-service (project) network: the segment comes from the tenant types.
    const type = req.providerNetworkType || (provider ? '' : await this.tenantType())
    if (!(NETWORK_TYPES as readonly string[]).includes(type)) {
      throw new InvalidArgument(`provider_network_type must be one of ${NETWORK_TYPES.join(', ')}${type ? `, got '${type}'` : ' when a physical network or segmentation id is given'}`, { field: 'provider_network_type' })
    }
    let physnet: string | null = req.providerPhysicalNetwork || null
    const segId = req.providerSegmentationId
    if (type === 'local') {
      if (physnet) throw new InvalidArgument('a local network has no physical network', { field: 'provider_physical_network' })
      if (segId !== undefined) throw new InvalidArgument('a local network has no segmentation id', { field: 'provider_segmentation_id' })
    }
    if (type === 'flat') {
      if (!physnet) throw new InvalidArgument('a flat network needs provider_physical_network', { field: 'provider_physical_network' })
      if (segId !== undefined) throw new InvalidArgument('a flat network has no segmentation id', { field: 'provider_segmentation_id' })
    }
    if (type === 'vlan') {
      physnet ??= Object.keys(this.cfg.vlanRanges)[0] ?? null
      if (!physnet || !this.cfg.vlanRanges[physnet]) {
        throw new InvalidArgument(`physical network '${physnet ?? ''}' has no VLAN range configured (network.vlanRanges has: ${Object.keys(this.cfg.vlanRanges).join(', ') || 'none'})`, { field: 'provider_physical_network' })
      }
      const [min, max] = this.cfg.vlanRanges[physnet]!
      if (segId !== undefined && (!Number.isInteger(segId) || segId < min || segId > max)) {
        throw new InvalidArgument(`provider_segmentation_id ${segId} is outside the VLAN range ${min}-${max} of physical network '${physnet}'`, { field: 'provider_segmentation_id' })
      }
    }
    if (physnet && !this.cfg.physicalNetworks.includes(physnet)) {
      throw new InvalidArgument(`unknown physical network '${physnet}'; configured: ${this.cfg.physicalNetworks.join(', ') || 'none'}`, { field: 'provider_physical_network' })
    }
    const id = randomUUID()
    const ts = now()
    try {
      await this.db.transaction().execute(async (trx) => {
        await this.quota.check(trx, { projectId }, { networks: 1 })
        let segmentation: number | null = null
        if (type === 'flat') {
          const taken = await trx.selectFrom('networks').select('id').where('network_type', '=', 'flat').where('physical_network', '=', physnet).executeTakeFirst()
          if (taken) throw new Conflict(`physical network '${physnet}' is already used by flat network ${taken.id}`, { field: 'provider_physical_network' })
        }
        if (type === 'vlan') segmentation = await this.vlanId(trx, physnet!, segId)
        await trx.insertInto('networks').values({
          id, project_id: projectId, name, description, admin_state_up: req.adminStateUp === false ? 0 : 1, shared: req.shared ? 1 : 0, router_external: req.routerExternal ? 1 : 0,
          network_type: type, physical_network: physnet, segmentation_id: segmentation, mtu: MTU, status: 'ACTIVE', revision_number: 1, created_at: ts, updated_at: ts,
        }).execute()
      })
    } catch (err) {
      if (isUniqueViolation(err)) throw new Conflict(`the segment of physical network '${physnet}' is already in use`, { cause: err, field: 'provider_segmentation_id' })
      throw err
    }
    return this.get({ id }, actor)
  }

  /**
   * The first tenant network type that can be had now: `local` always; `vlan`
   * while a configured range has a free VLAN id.
   */
  private async tenantType(): Promise<string> {
    for (const t of this.cfg.tenantNetworkTypes) {
      if (t === 'local') return t
      for (const [physnet, [min, max]] of Object.entries(this.cfg.vlanRanges)) {
        const used = await this.db.selectFrom('networks').select((eb) => eb.fn.countAll<number>().as('n')).where('network_type', '=', 'vlan').where('physical_network', '=', physnet).executeTakeFirst()
        if (Number(used?.n ?? 0) < max - min + 1) return t
      }
    }
    throw new ResourceExhausted(`no tenant network type has a free segment (network.tenantNetworkTypes: ${this.cfg.tenantNetworkTypes.join(', ')})`)
  }

  /** The VLAN id asked for if free, else the lowest free one of the range. */
  private async vlanId(trx: Trx, physnet: string, wanted: number | undefined): Promise<number> {
    const used = await trx.selectFrom('networks').select('segmentation_id').where('network_type', '=', 'vlan').where('physical_network', '=', physnet).orderBy('segmentation_id').execute()
    const taken = new Set(used.map((u) => u.segmentation_id))
    if (wanted !== undefined) {
      if (taken.has(wanted)) throw new Conflict(`VLAN ${wanted} on physical network '${physnet}' is already in use`, { field: 'provider_segmentation_id' })
      return wanted
    }
    const [min, max] = this.cfg.vlanRanges[physnet]!
    for (let v = min; v <= max; v++) if (!taken.has(v)) return v
    throw new ResourceExhausted(`no free VLAN id on physical network '${physnet}' (range ${min}-${max} is used up)`)
  }

  async get(ref: { id?: string; name?: string }, actor: Actor): Promise<Network> {
    if (ref.id) return (await this.toNetworks([await loadNetwork(this.db, actor, ref.id, 'id')]))[0]!
    if (!ref.name) throw new InvalidArgument('give the network id or name', { field: 'id' })
    const found = await this.list({ name: ref.name }, actor)
    if (found.length === 0) throw new NotFound(`network '${ref.name}' not found`, { field: 'name' })
    if (found.length > 1) throw new InvalidArgument(`${found.length} networks are named '${ref.name}'; use the id`, { field: 'name' })
    return found[0]!
  }

  async list(filter: NetworkFilter, actor: Actor): Promise<readonly Network[]> {
    return this.listings.list(`${actorKey(actor)} ${JSON.stringify(filter)}`, () => this.read(filter, actor))
  }

  private async read(filter: NetworkFilter, actor: Actor): Promise<Network[]> {
    let q = this.db.selectFrom('networks').selectAll().orderBy('created_at').orderBy('id')
    if (filter.name) q = q.where('name', '=', filter.name)
    if (filter.shared !== undefined) q = q.where('shared', '=', filter.shared ? 1 : 0)
    if (filter.routerExternal !== undefined) q = q.where('router_external', '=', filter.routerExternal ? 1 : 0)
    if (filter.projectId) q = q.where('project_id', '=', filter.projectId)
    if (filter.status) q = q.where('status', '=', filter.status)
    const projects = await readableProjects(this.db, actor)
    if (projects) q = q.where((eb) => eb.or([eb('shared', '=', 1), eb('router_external', '=', 1), ...(projects.length ? [eb('project_id', 'in', projects)] : [])]))
    return this.toNetworks(await q.execute())
  }

  async update(id: string | undefined, patch: { name?: string; description?: string; adminStateUp?: boolean; shared?: boolean; routerExternal?: boolean }, actor: Actor): Promise<Network> {
    const cur = await loadNetwork(this.db, actor, id, 'id')
    requireModify(actor, cur.project_id, `network ${cur.id}`)
    if (!actor.isAdmin) {
      if (patch.shared !== undefined) throw new PermissionDenied('only admins may change shared', { field: 'shared' })
      if (patch.routerExternal !== undefined) throw new PermissionDenied('only admins may change router_external', { field: 'router_external' })
    }
    const set: Partial<NetworkTable> = {}
    if (patch.name !== undefined) set.name = checkText('name', patch.name, 255)
    if (patch.description !== undefined) set.description = checkText('description', patch.description, 255)
    if (patch.adminStateUp !== undefined) set.admin_state_up = patch.adminStateUp ? 1 : 0
    if (patch.shared !== undefined) set.shared = patch.shared ? 1 : 0
    if (patch.routerExternal !== undefined) set.router_external = patch.routerExternal ? 1 : 0
    await this.db.transaction().execute(async (trx) => {
      if (patch.routerExternal === false && cur.router_external) {
        const fip = await trx.selectFrom('floating_ips').select('id').where('floating_network_id', '=', cur.id).executeTakeFirst()
        if (fip) throw new Conflict(`network ${cur.id} still has floating IPs (e.g. ${fip.id}); it must stay external`, { field: 'router_external' })
      }
      await trx.updateTable('networks').set({ ...set, revision_number: cur.revision_number + 1, updated_at: now() }).where('id', '=', cur.id).execute()
    })
    return this.get({ id: cur.id }, actor)
  }

  /**
   * Refused while any port other than a DHCP port is on the network; its
   * subnets and DHCP ports go with it (Neutron's auto-delete port owners), and
   * so do the floating IPs of an external network that map to no port
   * (Neutron's delete_disassociated_floatingips). An associated floating IP
   * keeps its port, and so the network, in use.
   */
  async delete(id: string | undefined, actor: Actor): Promise<void> {
    const cur = await loadNetwork(this.db, actor, id, 'id')
    requireModify(actor, cur.project_id, `network ${cur.id}`)
    const dhcp = await this.db.transaction().execute(async (trx) => {
      const idle = await trx.selectFrom('floating_ips').select(['id', 'floating_port_id']).where('floating_network_id', '=', cur.id).where('port_id', 'is', null).execute()
      if (idle.length > 0) {
        await trx.deleteFrom('floating_ips').where('id', 'in', idle.map((f) => f.id)).execute()
        await trx.deleteFrom('ports').where('id', 'in', idle.map((f) => f.floating_port_id)).execute()
      }
      const port = await trx.selectFrom('ports').select(['id', 'device_owner']).where('network_id', '=', cur.id).where('device_owner', '!=', DHCP_OWNER).executeTakeFirst()
      if (port) throw new Conflict(`network ${cur.id} is in use: port ${port.id}${port.device_owner ? ` (${port.device_owner})` : ''} is on it; delete its ports first`)
      const r = await trx.deleteFrom('ports').where('network_id', '=', cur.id).where('device_owner', '=', DHCP_OWNER).executeTakeFirst()
      await trx.deleteFrom('networks').where('id', '=', cur.id).execute()
      return Number(r.numDeletedRows)
    })
    if (dhcp) this.onChange()
  }

  /** The networks of `rows`, with their subnets read in one query. */
  private async toNetworks(rows: NetworkTable[]): Promise<Network[]> {
    if (rows.length === 0) return []
    const subnets = await this.db.selectFrom('subnets').select(['id', 'network_id']).where('network_id', 'in', rows.map((r) => r.id)).orderBy('created_at').orderBy('id').execute()
    const subnetsOf = groupBy(subnets, (s) => s.network_id)
    return rows.map((r) => ({
      id: r.id,
      name: r.name,
      description: r.description,
      projectId: r.project_id,
      status: r.status,
      adminStateUp: r.admin_state_up !== 0,
      shared: r.shared !== 0,
      routerExternal: r.router_external !== 0,
      providerNetworkType: r.network_type,
      providerPhysicalNetwork: r.physical_network ?? '',
      providerSegmentationId: r.segmentation_id ?? undefined,
      mtu: r.mtu,
      subnets: (subnetsOf.get(r.id) ?? []).map((s) => s.id),
      portSecurityEnabled: true,
      revisionNumber: r.revision_number,
      createdAt: new Date(r.created_at),
      updatedAt: new Date(r.updated_at),
    }))
  }
}
