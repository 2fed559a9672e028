/** `strato network …`, `strato subnet …` — openstackclient's network (Neutron) commands for networks and subnets. */
import { NetworksClient, SubnetsClient, type AllocationPool, type HostRoute, type Network, type Subnet } from '../../../proto/gen/strato/network/v1/network.js'
import type { Context } from '../context.js'
import { UsageError } from '../errors.js'
import { findProject, flag, opt } from '../identity.js'
import type { Args, Command, OptionSpec } from '../registry.js'
import { findNetwork, findSubnet, intOpt, iso, multiKeyValue } from '../resources.js'
import { deleteEach } from './delete.js'

export const listOpt = (f: string, dest: string, metavar: string, help: string): OptionSpec => ({ ...opt(f, dest, metavar, help), kind: 'list' })
export const projectOpts: OptionSpec[] = [
  opt('--project', 'project', '<project>', "Owner's project (name or ID) (admin only)"),
  opt('--project-domain', 'project_domain', '<project-domain>', 'Domain the project belongs to (name or ID), to resolve a project name'),
]
export async function projectIdOf(ctx: Context, a: Args): Promise<string> {
  const p = a.str('project')
  return p ? (await findProject(ctx, p, a.str('project_domain'))).id ?? '' : ''
}

/** `--project`/`--project-domain` of a list command, the `--project` help saying what it filters. */
export const projectFilterOpts = (help: string): OptionSpec[] => projectOpts.map((o) => ({ ...o, help: o.dest === 'project' ? help : o.help }))

/** `--enable`/`--disable`: the resource's admin_state_up. */
export const adminStateOpts = (enable: string, disable: string): OptionSpec[] => [flag('--enable', 'admin_state_up', enable), flag('--disable', 'admin_state_up', disable, false)]

/** The request field of `--enable`/`--disable`, when one was given. */
export function adminStateOf(a: Args): { adminStateUp?: boolean } {
  const up = a.bool('admin_state_up')
  return up !== undefined ? { adminStateUp: up } : {}
}

/** A set command's `--name` and `--description`: only those given, so the rest stay as they are. */
export function namingOf(a: Args): { name?: string; description?: string } {
  const name = a.str('name'), description = a.str('description')
  return { ...(name !== undefined ? { name } : {}), ...(description !== undefined ? { description } : {}) }
}

export const upDown = (up: boolean | undefined) => (up === false ? 'DOWN' : 'UP')

export const networkFields = (n: Network) => ({
  admin_state_up: upDown(n.adminStateUp),
  availability_zone_hints: [],
  availability_zones: [],
  created_at: iso(n.createdAt),
  description: n.description ?? '',
  id: n.id ?? '',
  is_default: null,
  mtu: n.mtu ?? 0,
  name: n.name ?? '',
  port_security_enabled: n.portSecurityEnabled ?? true,
  project_id: n.projectId ?? '',
  'provider:network_type': n.providerNetworkType || null,
  'provider:physical_network': n.providerPhysicalNetwork || null,
  'provider:segmentation_id': n.providerSegmentationId ?? null,
  revision_number: n.revisionNumber ?? 0,
  'router:external': n.routerExternal ? 'External' : 'Internal',
  shared: n.shared ?? false,
  status: n.status ?? '',
  subnets: n.subnets ?? [],
  tags: [],
  updated_at: iso(n.updatedAt),
})

const pools = (p: AllocationPool[] | undefined) => (p ?? []).map((x) => `${x.start}-${x.end}`).join('\n')
const routes = (r: HostRoute[] | undefined) => (r ?? []).map((x) => `destination='${x.destination}', gateway='${x.nexthop}'`).join('\n')

export const subnetFields = (s: Subnet) => ({
  allocation_pools: pools(s.allocationPools),
  cidr: s.cidr ?? '',
  created_at: iso(s.createdAt),
  description: s.description ?? '',
  dns_nameservers: s.dnsNameservers ?? [],
  enable_dhcp: s.enableDhcp ?? true,
  gateway_ip: s.gatewayIp || null,
  host_routes: routes(s.hostRoutes),
  id: s.id ?? '',
  ip_version: s.ipVersion ?? 4,
  ipv6_address_mode: null,
  ipv6_ra_mode: null,
  name: s.name ?? '',
  network_id: s.networkId ?? '',
  project_id: s.projectId ?? '',
  revision_number: s.revisionNumber ?? 0,
  segment_id: null,
  service_types: [],
  subnetpool_id: null,
  tags: [],
  updated_at: iso(s.updatedAt),
})

const poolOf = (c: string, v: string): AllocationPool => {
  const kv = multiKeyValue(c, '--allocation-pool', v, ['start', 'end'])
  return { start: kv.start!, end: kv.end! }
}
const routeOf = (c: string, v: string): HostRoute => {
  const kv = multiKeyValue(c, '--host-route', v, ['destination', 'gateway'])
  return { destination: kv.destination!, nexthop: kv.gateway! }
}

const networkSetOpts: OptionSpec[] = [
  ...adminStateOpts('Enable network (default)', 'Disable network'),
  flag('--share', 'shared', 'Share the network between projects'),
  flag('--no-share', 'shared', 'Do not share the network between projects', false),
  flag('--external', 'external', 'The network has an external routing facility (floating IPs come from it)'),
  flag('--internal', 'external', 'Opposite of --external (default)', false),
  opt('--description', 'description', '<description>', 'Network description'),
]

const gatewayOpts = (verb: string): OptionSpec[] => [
  opt('--gateway', 'gateway', '<gateway>', `${verb} gateway: an IP address, 'auto' (the first address of the range) or 'none' (no gateway)`),
]

/** `--gateway IP|auto|none` and `--no-gateway` → the request's fields. */
function gatewayOf(c: string, a: Args): { gatewayIp?: string; noGateway?: boolean } {
  const g = a.str('gateway')
  if (a.flag('no_gateway')) {
    if (g !== undefined && g !== 'none') throw new UsageError(`strato ${c}: give --gateway or --no-gateway, not both`)
    return { noGateway: true }
  }
  if (g === undefined || g === 'auto') return {}
  if (g === 'none') return { noGateway: true }
  return { gatewayIp: g }
}

export const networkCommands: Command[] = [
  {
    name: 'network create',
    summary: 'Create new network',
    output: 'show',
    positionals: [{ name: 'name', help: 'New network name' }],
    options: [
      ...networkSetOpts,
      opt('--provider-network-type', 'provider_network_type', '<provider-network-type>', 'The physical mechanism by which the virtual network is implemented: flat, vlan or local (admin only)'),
      opt('--provider-physical-network', 'provider_physical_network', '<provider-physical-network>', 'Name of the physical network over which the virtual network is implemented (admin only)'),
      opt('--provider-segment', 'provider_segment', '<provider-segment>', 'VLAN ID for VLAN networks (admin only)'),
      ...projectOpts,
    ],
    async run(ctx, a) {
      const segment = intOpt('network create', a, 'provider_segment', '--provider-segment')
      const n = await ctx.call(NetworksClient, 'createNetwork', {
        name: a.pos('name'),
        description: a.str('description') ?? '',
        ...adminStateOf(a),
        shared: a.bool('shared') ?? false,
        routerExternal: a.bool('external') ?? false,
        providerNetworkType: a.str('provider_network_type') ?? '',
        providerPhysicalNetwork: a.str('provider_physical_network') ?? '',
        ...(segment !== undefined ? { providerSegmentationId: segment } : {}),
        projectId: await projectIdOf(ctx, a),
      })
      return { kind: 'show', data: networkFields(n) }
    },
  },
  {
    name: 'network list',
    summary: 'List networks',
    output: 'list',
    options: [
      flag('--external', 'external', 'List only external networks'),
      flag('--internal', 'external', 'List only internal networks', false),
      flag('--share', 'shared', 'List only networks shared between projects'),
      flag('--no-share', 'shared', 'List only networks not shared between projects', false),
      opt('--name', 'name', '<name>', 'List only networks with this name'),
      opt('--status', 'status', '<status>', 'List only networks with this status (ACTIVE, BUILD, DOWN, ERROR)'),
      ...projectFilterOpts('List only networks of this project (name or ID)'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const nets = (await ctx.call(NetworksClient, 'listNetworks', {
        name: a.str('name') ?? '',
        status: a.str('status') ?? '',
        projectId: await projectIdOf(ctx, a),
        ...(a.bool('external') !== undefined ? { routerExternal: a.bool('external') } : {}),
        ...(a.bool('shared') !== undefined ? { shared: a.bool('shared') } : {}),
      })).networks ?? []
      if (a.flag('long')) {
        return {
          kind: 'list',
          columns: ['ID', 'Name', 'Status', 'Project', 'State', 'Shared', 'Subnets', 'Network Type', 'Router Type', 'Availability Zones', 'Tags'],
          rows: nets.map((n) => [
            n.id ?? '', n.name ?? '', n.status ?? '', n.projectId ?? '', upDown(n.adminStateUp), n.shared ?? false, n.subnets ?? [],
            n.providerNetworkType ?? '', n.routerExternal ? 'External' : 'Internal', [], [],
          ]),
        }
      }
      return { kind: 'list', columns: ['ID', 'Name', 'Subnets'], rows: nets.map((n) => [n.id ?? '', n.name ?? '', n.subnets ?? []]) }
    },
  },
  {
    name: 'network show',
    summary: 'Show network details',
    output: 'show',
    positionals: [{ name: 'network', help: 'Network to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: networkFields(await findNetwork(ctx, a.pos('network'))) }
    },
  },
  {
    name: 'network set',
    summary: 'Set network properties',
    output: 'none',
    positionals: [{ name: 'network', help: 'Network to modify (name or ID)' }],
    options: [opt('--name', 'name', '<name>', 'Set network name'), ...networkSetOpts],
    async run(ctx, a) {
      const n = await findNetwork(ctx, a.pos('network'))
      await ctx.call(NetworksClient, 'updateNetwork', {
        id: n.id ?? '',
        ...namingOf(a),
        ...adminStateOf(a),
        ...(a.bool('shared') !== undefined ? { shared: a.bool('shared') } : {}),
        ...(a.bool('external') !== undefined ? { routerExternal: a.bool('external') } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'network delete',
    summary: 'Delete network(s)',
    output: 'none',
    positionals: [{ name: 'network', help: 'Network(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'network', 'networks', a.posList('network'), async (ref) => {
        const n = await findNetwork(ctx, ref)
        await ctx.call(NetworksClient, 'deleteNetwork', { id: n.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'subnet create',
    summary: 'Create a subnet',
    output: 'show',
    positionals: [{ name: 'name', help: 'New subnet name' }],
    options: [
      opt('--network', 'network', '<network>', 'Network this subnet belongs to (name or ID)'),
      opt('--subnet-range', 'subnet_range', '<subnet-range>', 'Subnet range in CIDR notation (e.g. 192.168.201.0/24)'),
      listOpt('--allocation-pool', 'allocation_pool', 'start=<ip-address>,end=<ip-address>', 'Allocation pool IP addresses for this subnet (repeat option to add multiple pools)'),
      listOpt('--dns-nameserver', 'dns_nameserver', '<dns-nameserver>', 'DNS server for this subnet (repeat option to set multiple DNS servers)'),
      ...gatewayOpts('Specify a'),
      flag('--no-gateway', 'no_gateway', 'The subnet has no gateway (the same as --gateway none)'),
      listOpt('--host-route', 'host_route', 'destination=<subnet>,gateway=<ip-address>', 'Additional route for this subnet (repeat option to set multiple routes)'),
      flag('--dhcp', 'dhcp', 'Enable DHCP (default)'),
      flag('--no-dhcp', 'dhcp', 'Disable DHCP', false),
      opt('--ip-version', 'ip_version', '{4,6}', 'IP version (default is 4)'),
      opt('--description', 'description', '<description>', 'Set subnet description'),
      ...projectOpts,
    ],
    async run(ctx, a) {
      const c = 'subnet create'
      const network = a.str('network')
      if (!network) throw new UsageError(`strato ${c}: give the network with --network <network>`)
      const range = a.str('subnet_range')
      if (!range) throw new UsageError(`strato ${c}: give the address range with --subnet-range <CIDR> (e.g. 192.168.201.0/24)`)
      const version = intOpt(c, a, 'ip_version', '--ip-version')
      if (version !== undefined && version !== 4 && version !== 6) throw new UsageError(`strato ${c}: argument --ip-version: invalid choice: ${version} (choose from 4, 6)`)
      const allocationPools = a.list('allocation_pool').map((p) => poolOf(c, p))
      const hostRoutes = a.list('host_route').map((r) => routeOf(c, r))
      const net = await findNetwork(ctx, network)
      const s = await ctx.call(SubnetsClient, 'createSubnet', {
        name: a.pos('name'),
        description: a.str('description') ?? '',
        networkId: net.id ?? '',
        ipVersion: version ?? 0,
        cidr: range,
        ...gatewayOf(c, a),
        allocationPools,
        dnsNameservers: a.list('dns_nameserver'),
        hostRoutes,
        ...(a.bool('dhcp') !== undefined ? { enableDhcp: a.bool('dhcp') } : {}),
        projectId: await projectIdOf(ctx, a),
      })
      return { kind: 'show', data: subnetFields(s) }
    },
  },
  {
    name: 'subnet list',
    summary: 'List subnets',
    output: 'list',
    options: [
      opt('--network', 'network', '<network>', 'List only subnets of this network (name or ID)'),
      opt('--ip-version', 'ip_version', '<ip-version>', 'List only subnets of this IP version (4 or 6)'),
      opt('--name', 'name', '<name>', 'List only subnets with this name'),
      opt('--subnet-range', 'subnet_range', '<subnet-range>', 'List only subnets with this range (CIDR)'),
      ...projectFilterOpts('List only subnets of this project (name or ID)'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const network = a.str('network')
      const subnets = (await ctx.call(SubnetsClient, 'listSubnets', {
        name: a.str('name') ?? '',
        networkId: network ? (await findNetwork(ctx, network)).id ?? '' : '',
        ipVersion: intOpt('subnet list', a, 'ip_version', '--ip-version') ?? 0,
        cidr: a.str('subnet_range') ?? '',
        projectId: await projectIdOf(ctx, a),
      })).subnets ?? []
      if (a.flag('long')) {
        return {
          kind: 'list',
          columns: ['ID', 'Name', 'Network', 'Subnet', 'Project', 'DHCP', 'Name Servers', 'Allocation Pools', 'Host Routes', 'IP Version', 'Gateway', 'Service Types', 'Tags'],
          rows: subnets.map((s) => [
            s.id ?? '', s.name ?? '', s.networkId ?? '', s.cidr ?? '', s.projectId ?? '', s.enableDhcp ?? true, s.dnsNameservers ?? [],
            pools(s.allocationPools), routes(s.hostRoutes), s.ipVersion ?? 4, s.gatewayIp || null, [], [],
          ]),
        }
      }
      return { kind: 'list', columns: ['ID', 'Name', 'Network', 'Subnet'], rows: subnets.map((s) => [s.id ?? '', s.name ?? '', s.networkId ?? '', s.cidr ?? '']) }
    },
  },
  {
    name: 'subnet show',
    summary: 'Display subnet details',
    output: 'show',
    positionals: [{ name: 'subnet', help: 'Subnet to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: subnetFields(await findSubnet(ctx, a.pos('subnet'))) }
    },
  },
  {
    name: 'subnet set',
    summary: 'Set subnet properties',
    description: '--allocation-pool, --dns-nameserver and --host-route add to what the subnet has; --no-allocation-pool, --no-dns-nameservers and --no-host-route clear it first.',
    output: 'none',
    positionals: [{ name: 'subnet', help: 'Subnet to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<name>', 'Updated name of the subnet'),
      opt('--description', 'description', '<description>', 'Set subnet description'),
      ...gatewayOpts('Set the'),
      flag('--dhcp', 'dhcp', 'Enable DHCP'),
      flag('--no-dhcp', 'dhcp', 'Disable DHCP', false),
      listOpt('--allocation-pool', 'allocation_pool', 'start=<ip-address>,end=<ip-address>', 'Allocation pool IP addresses to add (repeat option to add multiple pools)'),
      flag('--no-allocation-pool', 'no_allocation_pool', 'Clear the allocation pools first (with no --allocation-pool: none at all)'),
      listOpt('--dns-nameserver', 'dns_nameserver', '<dns-nameserver>', 'DNS server to add (repeat option to add multiple)'),
      flag('--no-dns-nameservers', 'no_dns', 'Clear the DNS servers first'),
      listOpt('--host-route', 'host_route', 'destination=<subnet>,gateway=<ip-address>', 'Route to add (repeat option to add multiple)'),
      flag('--no-host-route', 'no_host_route', 'Clear the host routes first'),
    ],
    async run(ctx, a) {
      const c = 'subnet set'
      const s = await findSubnet(ctx, a.pos('subnet'))
      const addPools = a.list('allocation_pool').map((p) => poolOf(c, p))
      const addRoutes = a.list('host_route').map((r) => routeOf(c, r))
      const addDns = a.list('dns_nameserver')
      const g = a.str('gateway')
      await ctx.call(SubnetsClient, 'updateSubnet', {
        id: s.id ?? '',
        ...namingOf(a),
        ...(g === 'none' ? { noGateway: true } : g !== undefined ? { gatewayIp: g } : {}),
        ...(a.bool('dhcp') !== undefined ? { enableDhcp: a.bool('dhcp') } : {}),
        ...(addPools.length || a.flag('no_allocation_pool') ? { allocationPools: { pools: [...(a.flag('no_allocation_pool') ? [] : s.allocationPools ?? []), ...addPools] } } : {}),
        ...(addDns.length || a.flag('no_dns') ? { dnsNameservers: { addresses: [...(a.flag('no_dns') ? [] : s.dnsNameservers ?? []), ...addDns] } } : {}),
        ...(addRoutes.length || a.flag('no_host_route') ? { hostRoutes: { routes: [...(a.flag('no_host_route') ? [] : s.hostRoutes ?? []), ...addRoutes] } } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'subnet delete',
    summary: 'Delete subnet(s)',
    output: 'none',
    positionals: [{ name: 'subnet', help: 'Subnet(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'subnet', 'subnets', a.posList('subnet'), async (ref) => {
        const s = await findSubnet(ctx, ref)
        await ctx.call(SubnetsClient, 'deleteSubnet', { id: s.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
]
