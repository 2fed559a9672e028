/**
 * What compute reads about the ports bound to its servers (Nova asking
 * Neutron for a device's ports): their addresses and groups for the server
 * views, and their NICs for a build spec. Read-only; the writes are
 * PortCatalog's (`bindIn`, `releaseDeviceIn`, `setDeviceStatusIn`).
 */
import type { Trx } from '../quota/quota.js'
import type { BuildSpec } from '../../proto/build-spec.js'

/** One port of a device, as a server view shows it. */
export interface DevicePort {
  id: string
  deviceId: string
  macAddress: string
  networkId: string
  networkName: string
  /** Fixed IPs, in allocation order. */
  fixedIps: string[]
  floatingIps: string[]
  /** Names of its security groups. */
  securityGroups: string[]
}

const json = <T>(text: string, fallback: T): T => {
  try {
    return JSON.parse(text) as T
  } catch {
    return fallback
  }
}

/** The ports bound to any of `deviceIds`, oldest first. */
export async function portsOfDevices(db: Trx, deviceIds: string[]): Promise<DevicePort[]> {
  if (deviceIds.length === 0) return []
  const ports = await db
    .selectFrom('ports as p')
    .innerJoin('networks as n', 'n.id', 'p.network_id')
    .select(['p.id', 'p.device_id', 'p.mac_address', 'p.network_id', 'n.name as network_name', 'p.created_at'])
    .where('p.device_id', 'in', deviceIds)
    .orderBy('p.created_at')
    .orderBy('p.id')
    .execute()
  const portIds = ports.map((p) => p.id)
  if (portIds.length === 0) return []
  const ips = await db.selectFrom('ip_allocations').select(['port_id', 'ip_address']).where('port_id', 'in', portIds).orderBy('ip_key').execute()
  const floats = await db.selectFrom('floating_ips').select(['port_id', 'floating_ip_address']).where('port_id', 'in', portIds).execute()
  const groups = await db.selectFrom('port_security_groups as ps').innerJoin('security_groups as g', 'g.id', 'ps.security_group_id').select(['ps.port_id', 'g.name']).where('ps.port_id', 'in', portIds).execute()
  // By port, each in the order of its query (a listing has a port per server: no scan per port).
  const ipsOf = byPort(ips, (i) => i.ip_address)
  const floatsOf = byPort(floats, (f) => f.floating_ip_address)
  const groupsOf = byPort(groups, (g) => g.name)
  return ports.map((p) => ({
    id: p.id,
    deviceId: p.device_id,
    macAddress: p.mac_address,
    networkId: p.network_id,
    networkName: p.network_name,
    fixedIps: ipsOf.get(p.id) ?? [],
    floatingIps: floatsOf.get(p.id) ?? [],
    securityGroups: groupsOf.get(p.id) ?? [],
  }))
}

function byPort<T extends { port_id: string | null }>(rows: readonly T[], value: (r: T) => string): Map<string, string[]> {
  const out = new Map<string, string[]>()
  for (const r of rows) {
    if (r.port_id === null) continue
    const list = out.get(r.port_id)
    if (list) list.push(value(r))
    else out.set(r.port_id, [value(r)])
  }
  return out
}

/** The NICs of a device's build spec: its ports with their networks' segments and their subnets' settings, oldest first. */
export async function nicsOfDevice(db: Trx, deviceId: string): Promise<BuildSpec['nics']> {
  const ports = await db
    .selectFrom('ports as p')
    .innerJoin('networks as n', 'n.id', 'p.network_id')
    .select(['p.id', 'p.mac_address', 'p.network_id', 'n.network_type', 'n.physical_network', 'n.segmentation_id'])
    .where('p.device_id', '=', deviceId)
    .orderBy('p.created_at')
    .orderBy('p.id')
    .execute()
  const ips = ports.length
    ? await db
      .selectFrom('ip_allocations as a')
      .innerJoin('subnets as s', 's.id', 'a.subnet_id')
      .select(['a.port_id', 'a.ip_address', 'a.subnet_id', 's.ip_version', 's.cidr', 's.gateway_ip', 's.dns_nameservers', 's.host_routes'])
      .where('a.port_id', 'in', ports.map((p) => p.id))
      .orderBy('s.ip_version')
      .orderBy('s.created_at')
      .execute()
    : []
  return ports.map((p) => ({
    portId: p.id, macAddress: p.mac_address, networkId: p.network_id, networkType: p.network_type, physicalNetwork: p.physical_network ?? '',
    segmentationId: Number(p.segmentation_id ?? 0), fixedIps: ips.filter((i) => i.port_id === p.id).map((i) => i.ip_address),
    ips: ips.filter((i) => i.port_id === p.id).map((i) => ({
      address: i.ip_address, subnetId: i.subnet_id, ipVersion: Number(i.ip_version), cidr: i.cidr, gatewayIp: i.gateway_ip ?? '',
      dnsNameservers: json<string[]>(i.dns_nameservers, []), hostRoutes: json<Array<{ destination: string; nexthop: string }>>(i.host_routes, []),
    })),
  }))
}
