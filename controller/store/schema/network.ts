/** Networking tables (Neutron's model). Lists and pools are JSON text. */

export interface NetworkTable {
  id: string
  project_id: string
  name: string
  description: string
  admin_state_up: number
  shared: number
  router_external: number
  network_type: string
  physical_network: string | null
  segmentation_id: number | null
  mtu: number
  status: string
  revision_number: number
  created_at: string
  updated_at: string
}

export interface SubnetTable {
  id: string
  network_id: string
  project_id: string
  name: string
  description: string
  ip_version: number
  cidr: string
  gateway_ip: string | null
  enable_dhcp: number
  /** JSON: Array<{ start: string; end: string }> */
  allocation_pools: string
  /** JSON: string[] */
  dns_nameservers: string
  /** JSON: Array<{ destination: string; nexthop: string }> */
  host_routes: string
  revision_number: number
  created_at: string
  updated_at: string
}

export interface PortTable {
  id: string
  network_id: string
  project_id: string
  name: string
  description: string
  mac_address: string
  admin_state_up: number
  status: string
  device_owner: string
  device_id: string
  /** binding:host_id; '' when unbound. */
  binding_host_id: string
  revision_number: number
  created_at: string
  updated_at: string
}

/** One fixed IP of a port. `ip_key` is the address as fixed-width hex, so it sorts numerically. */
export interface IpAllocationTable {
  port_id: string
  subnet_id: string
  network_id: string
  ip_address: string
  ip_key: string
}

export interface PortSecurityGroupTable {
  port_id: string
  security_group_id: string
}

export interface SecurityGroupTable {
  id: string
  project_id: string
  name: string
  description: string
  stateful: number
  is_default: number
  revision_number: number
  created_at: string
  updated_at: string
}

export interface SecurityGroupRuleTable {
  id: string
  security_group_id: string
  project_id: string
  direction: string
  ethertype: string
  protocol: string | null
  port_range_min: number | null
  port_range_max: number | null
  remote_ip_prefix: string | null
  remote_group_id: string | null
  description: string
  /** What makes two rules the same (protocol as a number, any-prefix as none): unique per group. */
  canonical: string
  created_at: string
}

export interface FloatingIpTable {
  id: string
  project_id: string
  description: string
  floating_network_id: string
  floating_ip_address: string
  /** The network:floatingip port holding the address. */
  floating_port_id: string
  port_id: string | null
  fixed_ip_address: string | null
  /** The router the association goes through; null when not associated. */
  router_id: string | null
  status: string
  revision_number: number
  created_at: string
  updated_at: string
}

export interface RouterTable {
  id: string
  project_id: string
  name: string
  description: string
  admin_state_up: number
  status: string
  /** The network:router_gateway port; null without a gateway. */
  gw_port_id: string | null
  enable_snat: number
  /** JSON: Array<{ destination: string; nexthop: string }> */
  routes: string
  /** The host whose L3 agent holds the router ('' when not placed). */
  l3_host: string
  revision_number: number
  created_at: string
  updated_at: string
}

export interface NetworkTables {
  networks: NetworkTable
  subnets: SubnetTable
  ports: PortTable
  ip_allocations: IpAllocationTable
  port_security_groups: PortSecurityGroupTable
  security_groups: SecurityGroupTable
  security_group_rules: SecurityGroupRuleTable
  floating_ips: FloatingIpTable
  routers: RouterTable
}
