/**
 * What the security groups of a host's ports allow, resolved for the host's
 * firewall (Neutron's security_group_info_for_devices): for every port of the
 * servers placed on the host, the rules of all its groups, with protocols as
 * numbers (icmp under IPv6 is ipv6-icmp, as Neutron takes it) and remote
 * groups expanded to the fixed addresses of their member ports of the rule's
 * ethertype. Agents turn this into packet filtering; see agent/net/firewall.ts.
 */
import type { Db } from '../store/db.js'
import type { FirewallRule, PortFirewall } from '../../proto/firewall.js'
import { IP_PROTOCOLS } from './sg-rules.js'

/** A port's filtering, and the server it belongs to. */
export type HostPortFirewall = PortFirewall & { instanceUuid: string }

const PORT_PROTOCOLS = new Set([6, 17, 33, 132, 136])

export async function hostFirewall(db: Db, host: string): Promise<HostPortFirewall[]> {
  const ports = await db
    .selectFrom('ports as p')
    .innerJoin('servers as s', 's.uuid', 'p.device_id')
    .select(['p.id', 'p.mac_address', 's.uuid'])
    .where('s.host', '=', host)
    .where('s.deleted', '=', 0)
    .orderBy('p.id')
    .execute()
  if (ports.length === 0) return []
  const portIds = ports.map((p) => p.id)
  const ips = await db.selectFrom('ip_allocations').select(['port_id', 'ip_address']).where('port_id', 'in', portIds).orderBy('ip_address').execute()
  const memberships = await db.selectFrom('port_security_groups').select(['port_id', 'security_group_id']).where('port_id', 'in', portIds).execute()
  const groupIds = [...new Set(memberships.map((m) => m.security_group_id))]
  const rules = groupIds.length
    ? await db.selectFrom('security_group_rules').selectAll().where('security_group_id', 'in', groupIds).orderBy('created_at').orderBy('id').execute()
    : []
  const remoteIds = [...new Set(rules.map((r) => r.remote_group_id).filter((g): g is string => !!g))]
  const members = remoteIds.length
    ? await db
      .selectFrom('port_security_groups as m')
      .innerJoin('ip_allocations as a', 'a.port_id', 'm.port_id')
      .select(['m.security_group_id', 'a.ip_address'])
      .where('m.security_group_id', 'in', remoteIds)
      .orderBy('a.ip_address')
      .execute()
    : []

  const resolved = new Map<string, FirewallRule[]>()
  for (const r of rules) {
    const v6 = r.ethertype === 'IPv6'
    let protocol = r.protocol === null || r.protocol === '' ? -1 : /^\d+$/.test(r.protocol) ? Number(r.protocol) : (IP_PROTOCOLS[r.protocol] ?? -1)
    if (v6 && protocol === 1) protocol = 58
    const icmp = protocol === 1 || protocol === 58
    const portMin = icmp ? (r.port_range_min ?? -1) : PORT_PROTOCOLS.has(protocol) ? (r.port_range_min ?? 0) : 0
    const portMax = icmp ? (r.port_range_max ?? -1) : PORT_PROTOCOLS.has(protocol) ? (r.port_range_max ?? 0) : 0
    const prefixes = r.remote_group_id
      ? members.filter((m) => m.security_group_id === r.remote_group_id && m.ip_address.includes(':') === v6).map((m) => `${m.ip_address}/${v6 ? 128 : 32}`)
      // 0.0.0.0/0 and ::/0 are anywhere, as no prefix is.
      : [r.remote_ip_prefix === '0.0.0.0/0' || r.remote_ip_prefix === '::/0' ? '' : (r.remote_ip_prefix ?? '')]
    const list = resolved.get(r.security_group_id) ?? []
    for (const remotePrefix of [...new Set(prefixes)]) {
      list.push({ direction: r.direction as FirewallRule['direction'], ethertype: v6 ? 'IPv6' : 'IPv4', protocol, portMin, portMax, remotePrefix })
    }
    resolved.set(r.security_group_id, list)
  }

  return ports.map((p) => ({
    portId: p.id,
    macAddress: p.mac_address,
    instanceUuid: p.uuid,
    fixedIps: ips.filter((i) => i.port_id === p.id).map((i) => i.ip_address),
    rules: memberships.filter((m) => m.port_id === p.id).flatMap((m) => resolved.get(m.security_group_id) ?? []),
  }))
}
