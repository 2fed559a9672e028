/**
 * DHCP ports and what a host's DHCP agent serves (Neutron's DhcpRpcCallback:
 * get_active_networks_info + create_dhcp_port). A host serves every network
 * that has ports of servers placed on it and a DHCP-enabled IPv4 subnet; for
 * each, it holds one `network:dhcp` port (device id `dhcp<uuid5(host)>-<network id>`,
 * binding:host_id the host) with one fixed IP per DHCP-enabled subnet.
 *
 * The ports are made and removed when the host's agent asks for its DHCP
 * networks, as Neutron's DHCP agent creates its port over RPC at sync time:
 * the agent asks whenever ports or subnets change (the `strato.dhcp.changed`
 * notice) and on a timer, so the port follows the network's ports on the host
 * without compute knowing about DHCP. Like every RPC-made port, a DHCP port is
 * not checked against the port quota (it is counted in the network owner's
 * usage, as Neutron counts it).
 */
import { createHash } from 'node:crypto'
import type { Db } from '../store/db.js'
import type { Trx } from '../quota/quota.js'
import { DHCP_OWNER, dhcpHostname, type DhcpAddress, type DhcpNetwork, type DhcpSubnet } from '../../proto/dhcp.js'
import { allocate, ipamOf, nextFree } from './ipam.js'
import type { PortCatalog } from './ports.js'

export { DHCP_OWNER }

const NAMESPACE_DNS = '6ba7b810-9dad-11d1-80b4-00c04fd430c8'

/** RFC 4122 name-based uuid (SHA-1), as Python's uuid.uuid5. */
export function uuid5(name: string, namespace = NAMESPACE_DNS): string {
  const h = createHash('sha1').update(Buffer.from(namespace.replaceAll('-', ''), 'hex')).update(name, 'utf8').digest()
  h[6] = (h[6]! & 0x0f) | 0x50
  h[8] = (h[8]! & 0x3f) | 0x80
  const x = h.subarray(0, 16).toString('hex')
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`
}

/** Neutron's get_dhcp_device_id: `dhcp` + uuid5(DNS, host) + `-` + network id. */
export function dhcpDeviceId(host: string, networkId: string): string {
  return `dhcp${uuid5(host)}-${networkId}`
}

const json = <T>(text: string, fallback: T): T => {
  try {
    return JSON.parse(text) as T
  } catch {
    return fallback
  }
}

export interface DhcpOptions {
  /** Lease time handed to guests, in seconds (Neutron `dhcp_lease_duration`). */
  leaseSeconds: number
}

export class DhcpPorts {
  constructor(private readonly db: Db, private readonly ports: PortCatalog, private readonly o: DhcpOptions) {}

  /**
   * The networks `host` serves DHCP for, each with the host's DHCP port
   * (made here when missing; the host's DHCP ports of networks it no longer
   * serves are deleted).
   */
  async forHost(host: string): Promise<DhcpNetwork[]> {
    const served = await this.db.transaction().execute((trx) => this.reconcileIn(trx, host))
    const out: DhcpNetwork[] = []
    for (const networkId of served) {
      const n = await this.describe(host, networkId)
      if (n) out.push(n)
    }
    return out
  }

  /** Makes the host's DHCP ports match the networks it serves; returns those networks. */
  private async reconcileIn(trx: Trx, host: string): Promise<string[]> {
    const onHost = await trx
      .selectFrom('ports as p')
      .innerJoin('servers as s', 's.uuid', 'p.device_id')
      .select('p.network_id')
      .distinct()
      .where('s.host', '=', host)
      .where('s.deleted', '=', 0)
      .execute()
    const networkIds = onHost.map((r) => r.network_id)
    const subnets = networkIds.length
      ? await trx.selectFrom('subnets').selectAll().where('network_id', 'in', networkIds).where('ip_version', '=', 4).where('enable_dhcp', '=', 1).orderBy('created_at').orderBy('id').execute()
      : []
    const existing = await trx.selectFrom('ports').select(['id', 'network_id', 'device_id']).where('device_owner', '=', DHCP_OWNER).where('binding_host_id', '=', host).execute()
    const served: string[] = []
    const keep = new Set<string>()
    for (const networkId of networkIds) {
      const dhcpSubnets = subnets.filter((s) => s.network_id === networkId).map(ipamOf)
      if (dhcpSubnets.length === 0) continue
      const deviceId = dhcpDeviceId(host, networkId)
      const port = existing.find((p) => p.device_id === deviceId && p.network_id === networkId)
      const held = port ? await trx.selectFrom('ip_allocations').select(['subnet_id']).where('port_id', '=', port.id).execute() : []
      const wanted = new Set(dhcpSubnets.map((s) => s.id))
      // Only subnets with a free address: a full subnet is not served rather than failing every network.
      const missing = []
      for (const s of dhcpSubnets) if (!held.some((h) => h.subnet_id === s.id) && (await nextFree(trx, s)) !== undefined) missing.push(s)
      if (!port) {
        if (missing.length === 0) continue
        const net = await trx.selectFrom('networks').selectAll().where('id', '=', networkId).executeTakeFirstOrThrow()
        const id = await this.ports.createIn(trx, net, {
          projectId: net.project_id, deviceOwner: DHCP_OWNER, deviceId, bindingHostId: host, fixedIps: missing.map((s) => ({ subnetId: s.id })),
        })
        // Its agent is the one asking, and serves it from now on.
        await this.ports.setDeviceStatusIn(trx, deviceId, 'ACTIVE')
        keep.add(id)
      } else {
        keep.add(port.id)
        const stale = held.filter((h) => !wanted.has(h.subnet_id)).map((h) => h.subnet_id)
        if (stale.length) await trx.deleteFrom('ip_allocations').where('port_id', '=', port.id).where('subnet_id', 'in', stale).execute()
        if (missing.length) {
          const all = (await trx.selectFrom('subnets').selectAll().where('network_id', '=', networkId).orderBy('created_at').orderBy('id').execute()).map(ipamOf)
          await allocate(trx, port.id, networkId, all, missing.map((s) => ({ subnetId: s.id })), { networkName: networkId })
        }
        if (stale.length || missing.length) this.ports.onChange()
        if (held.length - stale.length + missing.length === 0) {
          keep.delete(port.id)
          continue
        }
      }
      served.push(networkId)
    }
    for (const p of existing) if (!keep.has(p.id)) await this.ports.deleteIn(trx, p.id)
    return served
  }

  /** One served network as the agent needs it; undefined when it went away meanwhile. */
  private async describe(host: string, networkId: string): Promise<DhcpNetwork | undefined> {
    const net = await this.db.selectFrom('networks').selectAll().where('id', '=', networkId).executeTakeFirst()
    const port = await this.db.selectFrom('ports').select(['id', 'mac_address']).where('device_id', '=', dhcpDeviceId(host, networkId)).where('device_owner', '=', DHCP_OWNER).executeTakeFirst()
    if (!net || !port) return undefined
    const subnetRows = await this.db.selectFrom('subnets').selectAll().where('network_id', '=', networkId).where('ip_version', '=', 4).orderBy('created_at').orderBy('id').execute()
    const cidrOf = new Map(subnetRows.map((s) => [s.id, s.cidr]))
    const dhcpOn = new Set(subnetRows.filter((s) => s.enable_dhcp !== 0).map((s) => s.id))
    const ports = await this.db.selectFrom('ports').select(['id', 'mac_address', 'device_owner']).where('network_id', '=', networkId).orderBy('created_at').orderBy('id').execute()
    const ips = await this.db.selectFrom('ip_allocations').select(['port_id', 'subnet_id', 'ip_address']).where('network_id', '=', networkId).orderBy('ip_key').execute()
    const addresses = (portId: string): DhcpAddress[] =>
      ips.filter((i) => i.port_id === portId && dhcpOn.has(i.subnet_id)).map((i) => ({ subnetId: i.subnet_id, ipAddress: i.ip_address, cidr: cidrOf.get(i.subnet_id)! }))
    const subnets: DhcpSubnet[] = subnetRows.map((s) => ({
      id: s.id, ipVersion: 4, cidr: s.cidr, gatewayIp: s.gateway_ip ?? '', dnsNameservers: json<string[]>(s.dns_nameservers, []),
      hostRoutes: json<Array<{ destination: string; nexthop: string }>>(s.host_routes, []), enableDhcp: s.enable_dhcp !== 0,
      // Always false, also behind a router (Neutron's force_metadata): metadata stays
      // served through the DHCP port, so dnsmasq keeps pushing the classless route
      // to 169.254.169.254 — with the default route in the same option 121, as
      // clients that take option 121 ignore option 3 — and the router's namespace
      // needs no metadata proxy of its own.
      hasRouter: false,
    }))
    return {
      networkId, networkType: net.network_type, physicalNetwork: net.physical_network ?? '', segmentationId: Number(net.segmentation_id ?? 0), mtu: net.mtu,
      port: { id: port.id, macAddress: port.mac_address, fixedIps: addresses(port.id) },
      subnets,
      hosts: ports.filter((p) => p.device_owner !== DHCP_OWNER).map((p) => ({ p, fixed: addresses(p.id) })).filter(({ fixed }) => fixed.length > 0)
        .map(({ p, fixed }) => ({ portId: p.id, macAddress: p.mac_address, fixedIps: fixed, hostname: dhcpHostname(fixed[0]!.ipAddress) })),
      leaseSeconds: this.o.leaseSeconds,
    }
  }
}
