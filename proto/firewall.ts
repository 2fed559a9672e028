/**
 * Security-group filtering as the controller resolves it for a host and the
 * agent applies it (agent.v1 FirewallRequest / Firewall on the wire; here the
 * one plain-object shape both sides use).
 */
export interface FirewallRule {
  direction: 'ingress' | 'egress'
  ethertype: 'IPv4' | 'IPv6'
  /** IP protocol number; -1 for any. */
  protocol: number
  /** Port protocols: the range (0: any). ICMP: min is the type, max the code (-1: any). */
  portMin: number
  portMax: number
  /** CIDR of the other end; '' for anywhere. */
  remotePrefix: string
}

export interface PortFirewall {
  portId: string
  macAddress: string
  /** The addresses the guest may send from (anti-spoofing). */
  fixedIps: string[]
  /** The rules of all the port's groups, remote groups resolved to their members' addresses. */
  rules: FirewallRule[]
}
