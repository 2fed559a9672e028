/**
 * A host's DHCP service as the controller resolves it and the agent runs it
 * (agent.v1 DhcpRequest / Dhcp on the wire; here the one plain-object shape
 * both sides use). See controller/network/dhcp.ts and agent/net/dhcp.ts.
 */

/** Neutron's DHCP port owner. */
export const DHCP_OWNER = 'network:dhcp'

/** Neutron's `dhcp_lease_duration` default, in seconds. */
export const DEFAULT_LEASE_SECONDS = 86_400

export interface DhcpAddress {
  subnetId: string
  ipAddress: string
  /** The subnet's CIDR. */
  cidr: string
}

export interface DhcpRoute {
  destination: string
  nexthop: string
}

export interface DhcpSubnet {
  id: string
  ipVersion: 4
  cidr: string
  /** '' when the subnet has no gateway. */
  gatewayIp: string
  dnsNameservers: string[]
  hostRoutes: DhcpRoute[]
  enableDhcp: boolean
  /** A router serves the subnet; without one, metadata is reached through the DHCP port. */
  hasRouter: boolean
}

export interface DhcpHost {
  portId: string
  macAddress: string
  /** Fixed IPs on DHCP-enabled subnets. */
  fixedIps: DhcpAddress[]
  hostname: string
}

export interface DhcpNetwork {
  networkId: string
  networkType: string
  physicalNetwork: string
  segmentationId: number
  mtu: number
  /** This host's network:dhcp port. */
  port: { id: string; macAddress: string; fixedIps: DhcpAddress[] }
  subnets: DhcpSubnet[]
  /** Every port of the network, on any host. */
  hosts: DhcpHost[]
  leaseSeconds: number
}

/** Neutron's name for a port without a DNS name: `host-` + its address, dots (or colons) as dashes. */
export function dhcpHostname(ipAddress: string): string {
  return `host-${ipAddress.replaceAll(/[.:]/g, '-')}`
}
