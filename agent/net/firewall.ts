/**
 * Security groups on the host (Neutron's iptables firewall for linuxbridge):
 * every guest NIC is a tap device on a bridge, named `tap` + the first 11
 * characters of its port id, and bridged traffic passes the host's iptables
 * (br_netfilter), where a chain per port and direction decides.
 *
 *   FORWARD, INPUT → strato-fw-<host>
 *     to a port's tap   → strato-i-<port>: established → ok; DHCP answers → ok;
 *                                          each ingress rule → ok; else DROP
 *     from a port's tap → strato-o-<port>: DHCP discover/request from 0.0.0.0 → ok;
 *                                          strato-s-<port> (source MAC + fixed IP, else DROP);
 *                                          DHCP client → ok, DHCP server → DROP;
 *                                          established → ok; each egress rule → ok; else DROP
 *     what passed both ends (and was to or from one of them) → ACCEPT
 *
 * The whole state is applied at once with iptables-restore / ip6tables-restore
 * (IPv4 rules in the one, IPv6 in the other): chains of ports that are gone
 * are removed in the same transaction. Only the agent's own chains (its top
 * chain, named after its host, and the port chains that one jumps to) and one
 * jump at the top of FORWARD and INPUT are ever touched — so agents that share
 * a kernel (tests) leave each other's alone.
 */
import { createHash } from 'node:crypto'
import { Internal } from '../../proto/errors.js'
import type { FirewallRule, PortFirewall } from '../../proto/firewall.js'
import { run } from './exec.js'

export type { FirewallRule, PortFirewall }

/** Makes the host's filtering what `ports` say (all of this host's ports, every time). */
export interface Firewall {
  readonly name: string
  apply(ports: PortFirewall[]): Promise<void>
}

/** The tap device of a port (Nova's and Neutron's name). */
export function tapName(portId: string): string {
  return `tap${portId.slice(0, 11)}`
}

const chain = (kind: 'i' | 'o' | 's', portId: string) => `strato-${kind}-${portId.slice(0, 11)}`

/** The agent's top chain: `strato-fw-` + 8 hex of its host name's SHA-256. */
export function topChain(host: string): string {
  return `strato-fw-${createHash('sha256').update(host).digest('hex').slice(0, 8)}`
}

/** Protocols whose rules take a port range, matched with multiport. */
const PORT_PROTOCOLS = new Set([6, 17, 33, 132, 136])
const SAFE_ID = /^[0-9a-f-]{11,}$/
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/
const ADDRESS = /^[0-9a-fA-F.:]+(\/\d{1,3})?$/

function isV6(address: string): boolean {
  return address.includes(':')
}

/** The match part of one rule, or undefined when it cannot apply to this family. */
function ruleMatch(r: FirewallRule, v6: boolean): string | undefined {
  if ((r.ethertype === 'IPv6') !== v6) return undefined
  const parts: string[] = []
  const prefix = r.remotePrefix
  if (prefix && prefix !== '0.0.0.0/0' && prefix !== '::/0') {
    if (isV6(prefix) !== v6) return undefined
    parts.push(r.direction === 'ingress' ? '-s' : '-d', prefix)
  }
  if (r.protocol >= 0) {
    if (r.protocol === 1 || r.protocol === 58) {
      if ((r.protocol === 58) !== v6) return undefined
      parts.push('-p', v6 ? 'ipv6-icmp' : 'icmp')
      if (r.portMin >= 0) {
        const type = r.portMax >= 0 ? `${r.portMin}/${r.portMax}` : String(r.portMin)
        parts.push('-m', v6 ? 'icmp6' : 'icmp', v6 ? '--icmpv6-type' : '--icmp-type', type)
      }
    } else {
      parts.push('-p', String(r.protocol))
      if (PORT_PROTOCOLS.has(r.protocol) && r.portMin > 0) {
        const range = r.portMax > r.portMin ? `${r.portMin}:${r.portMax}` : String(r.portMin)
        parts.push('-m', 'multiport', '--dports', range)
      }
    }
  }
  return parts.join(' ')
}

/**
 * The iptables-restore input (IPv4, or IPv6 with `v6`) that makes the agent's
 * chains (`top` and the port chains below it) exactly `ports`; `existing` are
 * the agent's chains there now (those no port needs any more are emptied and
 * removed).
 */
export function renderRules(top: string, ports: PortFirewall[], v6: boolean, existing: string[] = []): string {
  const lines = ['*filter']
  const wanted = [top, ...ports.flatMap((p) => [chain('i', p.portId), chain('o', p.portId), chain('s', p.portId)])]
  const stale = existing.filter((c) => c.startsWith('strato-') && !wanted.includes(c))
  for (const c of [...wanted, ...stale]) lines.push(`:${c} - [0:0]`)
  const state = (s: string) => `-m state --state ${s}`
  for (const p of ports) {
    if (!SAFE_ID.test(p.portId) || !MAC.test(p.macAddress)) throw new Internal(`refusing a firewall for port ${JSON.stringify(p.portId)} with MAC ${JSON.stringify(p.macAddress)}`)
    const bad = [...p.fixedIps, ...p.rules.map((r) => r.remotePrefix).filter(Boolean)].find((a) => !ADDRESS.test(a))
    if (bad !== undefined) throw new Internal(`refusing a firewall for port ${p.portId}: ${JSON.stringify(bad)} is not an address or CIDR`)
    if (p.rules.some((r) => ![r.protocol, r.portMin, r.portMax].every(Number.isInteger))) throw new Internal(`refusing a firewall for port ${p.portId}: a rule with a protocol or port that is not an integer`)
    const tap = tapName(p.portId)
    lines.push(`-A ${top} -m physdev --physdev-out ${tap} --physdev-is-bridged -j ${chain('i', p.portId)}`)
    lines.push(`-A ${top} -m physdev --physdev-in ${tap} -j ${chain('o', p.portId)}`)
  }
  for (const p of ports) {
    const tap = tapName(p.portId)
    lines.push(`-A ${top} -m physdev --physdev-out ${tap} --physdev-is-bridged -j ACCEPT`)
    lines.push(`-A ${top} -m physdev --physdev-in ${tap} -j ACCEPT`)
  }
  for (const p of ports) {
    const i = chain('i', p.portId)
    const o = chain('o', p.portId)
    const s = chain('s', p.portId)
    // To the guest.
    lines.push(`-A ${i} ${state('RELATED,ESTABLISHED')} -j RETURN`, `-A ${i} ${state('INVALID')} -j DROP`)
    // DHCP answers reach the guest (a DHCP server on the network, Strato's or the provider's), as in Neutron.
    lines.push(v6 ? `-A ${i} -p udp -m udp --sport 547 --dport 546 -j RETURN` : `-A ${i} -p udp -m udp --sport 67 --dport 68 -j RETURN`)
    // IPv6 needs neighbour discovery and router advertisements to work at all.
    if (v6) for (const t of [130, 131, 132, 134, 135, 136]) lines.push(`-A ${i} -p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`)
    for (const r of p.rules.filter((x) => x.direction === 'ingress')) {
      const m = ruleMatch(r, v6)
      if (m !== undefined) lines.push(`-A ${i}${m ? ` ${m}` : ''} -j RETURN`)
    }
    lines.push(`-A ${i} -j DROP`)
    // From the guest: only its own MAC and addresses (IPv6 also link-local, and :: while it checks for duplicates).
    if (v6) {
      lines.push(`-A ${o} -s ::/128 -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN`)
      for (const t of [131, 133, 135, 136, 143]) lines.push(`-A ${o} -p ipv6-icmp -m icmp6 --icmpv6-type ${t} -m mac --mac-source ${p.macAddress} -j RETURN`)
    }
    // A DHCP client has no address yet: its requests pass before the spoofing check.
    if (!v6) lines.push(`-A ${o} -s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -j RETURN`)
    lines.push(`-A ${o} -j ${s}`)
    const own = p.fixedIps.filter((a) => isV6(a) === v6).map((a) => `${a}/${v6 ? 128 : 32}`)
    if (v6) own.push('fe80::/64')
    for (const a of own) lines.push(`-A ${s} -s ${a} -m mac --mac-source ${p.macAddress} -j RETURN`)
    lines.push(`-A ${s} -j DROP`)
    // Renewals from its own address; and no guest answers as a DHCP server.
    lines.push(v6 ? `-A ${o} -p udp -m udp --sport 546 --dport 547 -j RETURN` : `-A ${o} -p udp -m udp --sport 68 --dport 67 -j RETURN`)
    lines.push(v6 ? `-A ${o} -p udp -m udp --sport 547 --dport 546 -j DROP` : `-A ${o} -p udp -m udp --sport 67 --dport 68 -j DROP`)
    lines.push(`-A ${o} ${state('RELATED,ESTABLISHED')} -j RETURN`, `-A ${o} ${state('INVALID')} -j DROP`)
    for (const r of p.rules.filter((x) => x.direction === 'egress')) {
      const m = ruleMatch(r, v6)
      if (m !== undefined) lines.push(`-A ${o}${m ? ` ${m}` : ''} -j RETURN`)
    }
    lines.push(`-A ${o} -j DROP`)
  }
  for (const c of stale) lines.push(`-X ${c}`)
  lines.push('COMMIT', '')
  return lines.join('\n')
}

export interface IptablesOptions {
  /** This agent's host name (names its top chain). */
  host: string
  /** Network namespace to act in (`ip netns exec`); tests use their own. @default the agent's */
  netns?: string
}

/**
 * The agent's chains in an iptables-save dump: its top chain, and the port
 * chains reached from it — less any another chain also jumps to (a port two
 * agents filter for a while is not the first one's to remove).
 */
export function ownChains(dump: string, top: string): string[] {
  const lines = dump.split('\n')
  const declared = new Set(lines.filter((l) => l.startsWith(':strato-')).map((l) => l.slice(1).split(' ')[0]!))
  const edges = lines.map((l) => /^-A (\S+) .*-j (strato-\S+)/.exec(l)).filter((m): m is RegExpExecArray => m !== null).map((m) => [m[1]!, m[2]!] as const)
  const ours = new Set<string>(declared.has(top) ? [top] : [])
  for (let grew = true; grew;) {
    grew = false
    for (const [from, to] of edges) {
      if (ours.has(from) && !ours.has(to) && declared.has(to) && /^strato-[ios]-/.test(to)) {
        ours.add(to)
        grew = true
      }
    }
  }
  // Shared: jumped to from outside, and what those jump to.
  const shared = new Set(edges.filter(([from, to]) => from.startsWith('strato-') && !ours.has(from) && ours.has(to)).map(([, to]) => to))
  for (let grew = true; grew;) {
    grew = false
    for (const [from, to] of edges) {
      if (shared.has(from) && ours.has(to) && !shared.has(to)) {
        shared.add(to)
        grew = true
      }
    }
  }
  return [...ours].filter((c) => !shared.has(c))
}

/** The iptables firewall: strato-* chains in the filter table, for IPv4 and IPv6. */
export class IptablesFirewall implements Firewall {
  readonly name = 'iptables'
  private tail: Promise<void> = Promise.resolve()

  readonly top: string

  constructor(private readonly options: IptablesOptions) {
    this.top = topChain(options.host)
  }

  private exec(tool: string, args: string[]): Promise<string> {
    return run(tool, args, { netns: this.options.netns, timeoutMs: 30_000 })
  }

  private async restore(tool: string, input: string): Promise<void> {
    await run(tool, ['--noflush'], { netns: this.options.netns, timeoutMs: 30_000, input, what: 'apply the security group rules' })
  }

  /** Serialized: concurrent calls apply one after another, each the whole state. */
  apply(ports: PortFirewall[]): Promise<void> {
    const next = this.tail.then(() => this.applyNow(ports, true))
    this.tail = next.catch(() => undefined)
    return next
  }

  private async applyNow(ports: PortFirewall[], hook: boolean): Promise<void> {
    for (const v6 of [false, true]) {
      const [save, restore, tables] = v6 ? ['ip6tables-save', 'ip6tables-restore', 'ip6tables'] : ['iptables-save', 'iptables-restore', 'iptables']
      const dump = await this.exec(save, ['-t', 'filter'])
      await this.restore(restore, renderRules(this.top, ports, v6, ownChains(dump, this.top)))
      // The hooks, from the same dump (restore leaves the built-in chains alone).
      for (const builtin of hook ? ['FORWARD', 'INPUT'] : []) {
        if (!dump.split('\n').includes(`-A ${builtin} -j ${this.top}`)) await this.exec(tables, ['-I', builtin, '1', '-j', this.top])
      }
    }
  }

  /** Removes the hooks and every strato chain (tests; an agent leaves filtering in place when it stops). */
  async clear(): Promise<void> {
    const done = this.tail.then(async () => {
      for (const tables of ['iptables', 'ip6tables']) {
        for (const builtin of ['FORWARD', 'INPUT']) await this.exec(tables, ['-D', builtin, '-j', this.top]).catch(() => undefined)
      }
      await this.applyNow([], false)
      for (const tables of ['iptables', 'ip6tables']) await this.exec(tables, ['-X', this.top]).catch(() => undefined)
    })
    this.tail = done.catch(() => undefined)
    return done
  }
}

/** No filtering (STRATO_AGENT_FIREWALL=none); keeps what it was given, for tests. */
export class RecordingFirewall implements Firewall {
  readonly name = 'none'
  applied: PortFirewall[] = []

  async apply(ports: PortFirewall[]): Promise<void> {
    this.applied = structuredClone(ports)
  }
}
