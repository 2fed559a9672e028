/**
 * A router as the controller resolves it for the agent that holds it and the
 * agent's L3 data plane builds it (Neutron's L3 agent `sync_routers`): the one
 * plain-object shape both sides use (agent.v1 RoutersRequest / Routers on the
 * wire). See controller/network/routers.ts and agent/net/l3.ts.
 *
 * The agent maps each network to its bridge as for a guest NIC (flat: the
 * agent's bridge mapping of `physicalNetwork`; other types: `brq<network id>`).
 */

/** Neutron's device owners for a router's ports. */
export const ROUTER_INTERFACE_OWNER = 'network:router_interface'
export const ROUTER_GATEWAY_OWNER = 'network:router_gateway'
export const FLOATING_IP_OWNER = 'network:floatingip'

/** Which bridge a network's ports are on (what `bridgeFor` needs). */
export interface RouterNetwork {
  networkId: string
  networkType: string
  physicalNetwork: string
  segmentationId: number
  mtu: number
}

/** One port of the router: an interface on a project subnet, or the gateway on the external network. */
export interface RouterPort {
  /** Neutron port id; the agent names devices `qr-`/`qg-` + its first 11 characters. */
  portId: string
  macAddress: string
  network: RouterNetwork
  /** The port's addresses with their prefix length, e.g. `10.0.0.1/24`. */
  addresses: string[]
  /** The subnets' CIDRs the port is on, e.g. `10.0.0.0/24`. */
  cidrs: string[]
}

export interface RouterRoute {
  destination: string
  nexthop: string
}

export interface RouterFloatingIp {
  id: string
  /** The floating address (on the gateway's external subnet). */
  floatingIpAddress: string
  /** The fixed IPv4 address of the associated port it maps to, 1:1. */
  fixedIpAddress: string
}

export interface RouterSpec {
  id: string
  /** false: the router forwards nothing (its namespace keeps no interfaces up). */
  adminStateUp: boolean
  /** Interfaces on project subnets (`network:router_interface`). */
  interfaces: RouterPort[]
  /** The external gateway (`network:router_gateway`), if set. */
  gateway?: RouterPort & {
    /** The external subnet's gateway address: the router's default route. '' when none. */
    nexthop: string
    /** SNAT of the interfaces' subnets to the gateway's first address. */
    enableSnat: boolean
  }
  /** Extra routes (`router set --route`). */
  routes: RouterRoute[]
  /** Floating IPs associated through this router (only with a gateway). */
  floatingIps: RouterFloatingIp[]
}
