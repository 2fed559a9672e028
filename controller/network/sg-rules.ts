/**
 * Security group rule validation (Neutron semantics), pure: direction,
 * ethertype, protocol by name or number, port ranges checked against the
 * protocol, remote prefix XOR remote group; plus the canonical form that makes
 * two rules duplicates (protocol as its number, an all-addresses prefix the
 * same as none).
 */
import { InvalidArgument } from '../../proto/errors.js'
import { cidrText, parseCidr } from './ip.js'

/** Neutron's IP_PROTOCOL_MAP. */
export const IP_PROTOCOLS: Readonly<Record<string, number>> = {
  ah: 51, dccp: 33, egp: 8, esp: 50, gre: 47, hopopt: 0, icmp: 1, igmp: 2, ipip: 4, 'ipv6-encap': 41, 'ipv6-frag': 44,
  'ipv6-icmp': 58, icmpv6: 58, 'ipv6-nonxt': 59, 'ipv6-opts': 60, 'ipv6-route': 43, ospf: 89, pgm: 113, rsvp: 46,
  sctp: 132, tcp: 6, udp: 17, udplite: 136, vrrp: 112,
}
/** Protocols whose rules take a port range. */
const PORT_PROTOCOLS = new Set([6, 17, 33, 132, 136])
const ICMP_PROTOCOLS = new Set([1, 58])

export interface RuleInput {
  direction?: string
  ethertype?: string
  protocol?: string
  portRangeMin?: number
  portRangeMax?: number
  remoteIpPrefix?: string
  remoteGroupId?: string
}

export interface NormalRule {
  direction: 'ingress' | 'egress'
  ethertype: 'IPv4' | 'IPv6'
  protocol: string | null
  portRangeMin: number | null
  portRangeMax: number | null
  remoteIpPrefix: string | null
  remoteGroupId: string | null
  canonical: string
}

export function normaliseRule(r: RuleInput): NormalRule {
  const dir = (r.direction || 'ingress').toLowerCase()
  if (dir !== 'ingress' && dir !== 'egress') throw new InvalidArgument(`direction must be ingress or egress, got '${r.direction}'`, { field: 'direction' })
  const eth = (r.ethertype || 'IPv4').toLowerCase()
  if (eth !== 'ipv4' && eth !== 'ipv6') throw new InvalidArgument(`ethertype must be IPv4 or IPv6, got '${r.ethertype}'`, { field: 'ethertype' })
  const ethertype = eth === 'ipv4' ? 'IPv4' : 'IPv6'

  let protocol: string | null = (r.protocol ?? '').trim().toLowerCase() || null
  if (protocol === 'any') protocol = null
  let number: number | null = null
  if (protocol !== null) {
    if (/^\d+$/.test(protocol)) {
      number = Number(protocol)
      if (number > 255) throw new InvalidArgument(`protocol number ${protocol} is out of range 0-255`, { field: 'protocol' })
      protocol = String(number)
    } else {
      const n = IP_PROTOCOLS[protocol]
      if (n === undefined) throw new InvalidArgument(`unknown protocol '${r.protocol}': use any, a number 0-255 or one of ${Object.keys(IP_PROTOCOLS).join(', ')}`, { field: 'protocol' })
      number = n
    }
    if (ethertype === 'IPv6' && protocol === 'icmp') {
      protocol = 'ipv6-icmp'
      number = 58
    }
    if (protocol === 'icmpv6') protocol = 'ipv6-icmp'
    if (ethertype === 'IPv4' && number === 58) throw new InvalidArgument(`protocol ${protocol} is IPv6-only; the rule's ethertype is IPv4`, { field: 'protocol' })
  }

  const min = r.portRangeMin ?? null
  const max = r.portRangeMax ?? null
  if (min !== null || max !== null) {
    if (number === null || (!PORT_PROTOCOLS.has(number) && !ICMP_PROTOCOLS.has(number))) {
      throw new InvalidArgument(`port ranges apply only to tcp, udp, dccp, sctp, udplite (ports) and icmp (type/code); protocol is ${protocol ?? 'any'}`, { field: min !== null ? 'port_range_min' : 'port_range_max' })
    }
    if (PORT_PROTOCOLS.has(number)) {
      if (min === null || max === null) throw new InvalidArgument(`a ${protocol} rule needs both port_range_min and port_range_max, or neither`, { field: min === null ? 'port_range_min' : 'port_range_max' })
      for (const [field, v] of [['port_range_min', min], ['port_range_max', max]] as const) {
        if (!Number.isInteger(v) || v < 1 || v > 65535) throw new InvalidArgument(`${field} ${v} is not a port (1-65535)`, { field })
      }
      if (min > max) throw new InvalidArgument(`port_range_min ${min} is greater than port_range_max ${max}`, { field: 'port_range_min' })
    } else {
      if (min === null) throw new InvalidArgument('an ICMP code (port_range_max) needs an ICMP type (port_range_min)', { field: 'port_range_min' })
      if (!Number.isInteger(min) || min < 0 || min > 255) throw new InvalidArgument(`ICMP type (port_range_min) must be 0-255, got ${min}`, { field: 'port_range_min' })
      if (max !== null && (!Number.isInteger(max) || max < 0 || max > 255)) throw new InvalidArgument(`ICMP code (port_range_max) must be 0-255, got ${max}`, { field: 'port_range_max' })
    }
  }

  if (r.remoteIpPrefix && r.remoteGroupId) throw new InvalidArgument('give remote_ip_prefix or remote_group_id, not both', { field: 'remote_ip_prefix' })
  let remoteIpPrefix: string | null = null
  let anyAddress = true
  if (r.remoteGroupId) {
    anyAddress = false
  } else if (r.remoteIpPrefix) {
    const c = parseCidr('remote_ip_prefix', r.remoteIpPrefix, { strict: false, allowBare: true })
    if (`IPv${c.version}` !== ethertype) throw new InvalidArgument(`remote_ip_prefix ${r.remoteIpPrefix} is IPv${c.version} but the rule's ethertype is ${ethertype}`, { field: 'remote_ip_prefix' })
    remoteIpPrefix = cidrText(c)
    anyAddress = c.prefix === 0
  } else {
    // Neither remote: everything of the family, as openstackclient sends it.
    remoteIpPrefix = ethertype === 'IPv4' ? '0.0.0.0/0' : '::/0'
  }
  const remote = r.remoteGroupId ? `group:${r.remoteGroupId}` : anyAddress ? 'any' : `prefix:${remoteIpPrefix}`
  const canonical = [dir, ethertype, number ?? 'any', min ?? '', max ?? '', remote].join('|')
  return { direction: dir, ethertype, protocol, portRangeMin: min, portRangeMax: max, remoteIpPrefix, remoteGroupId: r.remoteGroupId || null, canonical }
}

/** Neutron's rules for every new group (egress allow-all), and for `default` (plus ingress from itself). */
export function defaultRules(groupId: string, isDefault: boolean): NormalRule[] {
  const out: NormalRule[] = []
  for (const ethertype of ['IPv4', 'IPv6'] as const) {
    out.push({ direction: 'egress', ethertype, protocol: null, portRangeMin: null, portRangeMax: null, remoteIpPrefix: null, remoteGroupId: null, canonical: `egress|${ethertype}|any|||any` })
  }
  if (isDefault) {
    for (const ethertype of ['IPv4', 'IPv6'] as const) {
      out.push({ direction: 'ingress', ethertype, protocol: null, portRangeMin: null, portRangeMax: null, remoteIpPrefix: null, remoteGroupId: groupId, canonical: `ingress|${ethertype}|any|||group:${groupId}` })
    }
  }
  return out
}
