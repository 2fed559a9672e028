/**
 * LocalNetworkFilter: a network of type `local` is a bridge on each host, not
 * connected across hosts (this kernel has no VXLAN, VLAN or GRE devices), so
 * a server with a port on one goes where that network's other ports already
 * are — servers, its DHCP port, its router's interface — or anywhere while it
 * has none. With several local networks, only hosts where all of them are.
 * (Neutron has no such filter: its tenant networks span hosts.)
 */
import type { HostFilter } from '../model.js'

export const localNetworkFilter: HostFilter = {
  name: 'LocalNetworkFilter',
  hostPasses: (host, spec) => (spec.localNetworks ?? []).every((n) => n.hosts.length === 0 || n.hosts.includes(host.host)),
  describe: (spec) => {
    const placed = (spec.localNetworks ?? []).filter((n) => n.hosts.length)
    return placed.length ? placed.map((n) => `local network ${n.networkId} on ${[...new Set(n.hosts)].join(', ')}`).join('; ') : undefined
  },
  reason: (host, spec) => {
    const away = (spec.localNetworks ?? []).filter((n) => n.hosts.length && !n.hosts.includes(host.host))
    return `'${host.host}' is not where local network${away.length > 1 ? 's' : ''} ${away.map((n) => n.networkId).join(', ')} ${away.length > 1 ? 'are' : 'is'} (a local network does not reach across hosts)`
  },
}
