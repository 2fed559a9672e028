/**
 * The names a certificate must carry for a service listening on this host:
 * one list for the controller's gRPC listener, the stack's nats-server and the
 * tests' nats-server, so a client dialling any of them by a usual name finds
 * it in the SANs.
 */
import { isIP } from 'node:net'
import { hostname, networkInterfaces } from 'node:os'

/** Where a service listens and what else clients may call it. */
export interface ServiceAddress {
  /** The listen address (IP or name); a wildcard (`0.0.0.0`, `::`, empty) stands for every interface's address. */
  listen: string
  /** The address clients are told to dial, `host` or `host:port` (the port is dropped). */
  publicAddress?: string | null
  /** More DNS names or IPs (e.g. the controller's `tls.names`). */
  names?: string[]
}

/** localhost, 127.0.0.1, ::1, this host's name, the listen address (every interface's when it is a wildcard), the public address, and `names`. */
export function certificateNames(a: ServiceAddress): { dnsNames: string[]; ips: string[] } {
  const dnsNames = new Set(['localhost'])
  const ips = new Set(['127.0.0.1', '::1'])
  const add = (name: string) => {
    const n = name.replace(/^\[|\]$/g, '')
    if (!n) return
    if (isIP(n)) ips.add(n)
    else dnsNames.add(n.toLowerCase())
  }
  // A host name DNS would not accept (an underscore, say) is no SAN a client could match: skip it.
  if (/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(hostname())) add(hostname())
  if (a.listen === '0.0.0.0' || a.listen === '::' || a.listen === '') {
    for (const addrs of Object.values(networkInterfaces())) for (const i of addrs ?? []) if (!i.address.startsWith('fe80:')) add(i.address)
  } else add(a.listen)
  if (a.publicAddress) add(a.publicAddress.replace(/:\d+$/, ''))
  for (const n of a.names ?? []) add(n)
  return { dnsNames: [...dnsNames], ips: [...ips] }
}
