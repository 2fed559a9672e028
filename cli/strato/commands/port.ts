/** `strato port …`, `strato floating ip …` — openstackclient's network port and floating IP commands. */
import { FloatingIpsClient, PortsClient, type FixedIp, type FloatingIp, type Port } from '../../../proto/gen/strato/network/v1/network.js'
import type { Context } from '../context.js'
import { UsageError } from '../errors.js'
import { flag, opt } from '../identity.js'
import type { Args, Command } from '../registry.js'
import { findFloatingIp, findNetwork, findPort, findSecurityGroup, findSubnet, iso, multiKeyValue } from '../resources.js'
import { deleteEach } from './delete.js'
import { adminStateOf, adminStateOpts, listOpt, namingOf, projectFilterOpts, projectIdOf, projectOpts } from './network.js'

const fixedIpsText = (ips: FixedIp[] | undefined) => (ips ?? []).map((f) => `ip_address='${f.ipAddress ?? ''}', subnet_id='${f.subnetId ?? ''}'`).join('\n')

const portFields = (p: Port) => ({
  admin_state_up: p.adminStateUp === false ? 'DOWN' : 'UP',
  binding_host_id: p.bindingHostId ?? '',
  created_at: iso(p.createdAt),
  description: p.description ?? '',
  device_id: p.deviceId ?? '',
  device_owner: p.deviceOwner ?? '',
  fixed_ips: fixedIpsText(p.fixedIps),
  id: p.id ?? '',
  mac_address: p.macAddress ?? '',
  name: p.name ?? '',
  network_id: p.networkId ?? '',
  project_id: p.projectId ?? '',
  revision_number: p.revisionNumber ?? 0,
  security_group_ids: p.securityGroups ?? [],
  status: p.status ?? '',
  tags: [],
  updated_at: iso(p.updatedAt),
})

const floatingIpFields = (f: FloatingIp) => ({
  created_at: iso(f.createdAt),
  description: f.description ?? '',
  fixed_ip_address: f.fixedIpAddress || null,
  floating_ip_address: f.floatingIpAddress ?? '',
  floating_network_id: f.floatingNetworkId ?? '',
  id: f.id ?? '',
  name: f.floatingIpAddress ?? '',
  port_id: f.portId || null,
  project_id: f.projectId ?? '',
  revision_number: f.revisionNumber ?? 0,
  router_id: f.routerId || null,
  status: f.status ?? '',
  tags: [],
  updated_at: iso(f.updatedAt),
})

/** `--fixed-ip subnet=S,ip-address=A` → FixedIp, resolving the subnet name within the network. */
async function fixedIpOf(ctx: Context, c: string, v: string, networkId: string): Promise<FixedIp> {
  const kv = multiKeyValue(c, '--fixed-ip', v, [], ['subnet', 'ip-address'])
  if (!kv.subnet && !kv['ip-address']) throw new UsageError(`strato ${c}: --fixed-ip '${v}' needs subnet=<subnet> and/or ip-address=<ip-address>`)
  return {
    subnetId: kv.subnet ? (await findSubnet(ctx, kv.subnet, networkId)).id ?? '' : '',
    ipAddress: kv['ip-address'] ?? '',
  }
}

async function groupIds(ctx: Context, a: Args): Promise<string[]> {
  const ids: string[] = []
  for (const g of a.list('security_group')) ids.push((await findSecurityGroup(ctx, g)).id ?? '')
  return ids
}

export const portCommands: Command[] = [
  {
    name: 'port create',
    summary: 'Create a new port',
    output: 'show',
    positionals: [{ name: 'name', help: 'Name of this port' }],
    options: [
      opt('--network', 'network', '<network>', 'Network this port belongs to (name or ID)'),
      opt('--description', 'description', '<description>', 'Description of this port'),
      listOpt('--fixed-ip', 'fixed_ip', 'subnet=<subnet>,ip-address=<ip-address>', 'Desired IP and/or subnet for this port (name or ID): subnet=<subnet>,ip-address=<ip-address> (repeat option to set multiple fixed IP addresses)'),
      flag('--no-fixed-ip', 'no_fixed_ip', 'No IP or subnet for this port (accepted; a port gets an address when its network has a subnet)'),
      { ...opt('--device', 'device', '<device-id>', 'Port device ID'), flags: ['--device', '--device-id'] },
      opt('--device-owner', 'device_owner', '<device-owner>', 'Device owner of this port, e.g. compute:nova'),
      opt('--mac-address', 'mac_address', '<mac-address>', 'MAC address of this port (admin only)'),
      ...adminStateOpts('Enable port (default)', 'Disable port'),
      listOpt('--security-group', 'security_group', '<security-group>', 'Security group to associate with this port (name or ID) (repeat option to set multiple security groups)'),
      flag('--no-security-group', 'no_security_group', 'Associate no security groups with this port'),
      ...projectOpts,
    ],
    async run(ctx, a) {
      const c = 'port create'
      const network = a.str('network')
      if (!network) throw new UsageError(`strato ${c}: give the network with --network <network>`)
      if (a.flag('no_security_group') && a.list('security_group').length) throw new UsageError(`strato ${c}: give --security-group or --no-security-group, not both`)
      const net = await findNetwork(ctx, network)
      const fixedIps: FixedIp[] = []
      for (const v of a.list('fixed_ip')) fixedIps.push(await fixedIpOf(ctx, c, v, net.id ?? ''))
      const p = await ctx.call(PortsClient, 'createPort', {
        name: a.pos('name'),
        description: a.str('description') ?? '',
        networkId: net.id ?? '',
        macAddress: a.str('mac_address') ?? '',
        fixedIps,
        deviceOwner: a.str('device_owner') ?? '',
        deviceId: a.str('device') ?? '',
        ...adminStateOf(a),
        securityGroups: await groupIds(ctx, a),
        noSecurityGroups: a.flag('no_security_group'),
        projectId: await projectIdOf(ctx, a),
      })
      return { kind: 'show', data: portFields(p) }
    },
  },
  {
    name: 'port list',
    summary: 'List ports',
    output: 'list',
    options: [
      opt('--network', 'network', '<network>', 'List only ports attached to this network (name or ID)'),
      opt('--device-owner', 'device_owner', '<device-owner>', 'List only ports with this device owner'),
      { ...opt('--device-id', 'device', '<device-id>', 'List only ports with this device ID'), flags: ['--device-id', '--server'] },
      opt('--mac-address', 'mac_address', '<mac-address>', 'List only ports with this MAC address'),
      opt('--name', 'name', '<name>', 'List only ports with this name'),
      ...projectFilterOpts('List only ports of this project (name or ID)'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const network = a.str('network')
      const ports = (await ctx.call(PortsClient, 'listPorts', {
        networkId: network ? (await findNetwork(ctx, network)).id ?? '' : '',
        deviceOwner: a.str('device_owner') ?? '',
        deviceId: a.str('device') ?? '',
        macAddress: a.str('mac_address') ?? '',
        name: a.str('name') ?? '',
        projectId: await projectIdOf(ctx, a),
      })).ports ?? []
      const columns = ['ID', 'Name', 'MAC Address', 'Fixed IP Addresses', 'Status']
      const row = (p: Port) => [p.id ?? '', p.name ?? '', p.macAddress ?? '', fixedIpsText(p.fixedIps), p.status ?? '']
      if (a.flag('long')) {
        return { kind: 'list', columns: [...columns, 'Security Groups', 'Device Owner', 'Tags'], rows: ports.map((p) => [...row(p), p.securityGroups ?? [], p.deviceOwner ?? '', []]) }
      }
      return { kind: 'list', columns, rows: ports.map(row) }
    },
  },
  {
    name: 'port show',
    summary: 'Display port details',
    output: 'show',
    positionals: [{ name: 'port', help: 'Port to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: portFields(await findPort(ctx, a.pos('port'))) }
    },
  },
  {
    name: 'port set',
    summary: 'Set port properties',
    output: 'none',
    positionals: [{ name: 'port', help: 'Port to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<name>', 'Set port name'),
      opt('--description', 'description', '<description>', 'Description of this port'),
      { ...opt('--device', 'device', '<device-id>', 'Port device ID'), flags: ['--device', '--device-id'] },
      opt('--device-owner', 'device_owner', '<device-owner>', 'Device owner of this port'),
      ...adminStateOpts('Enable port', 'Disable port'),
      listOpt('--security-group', 'security_group', '<security-group>', 'Security group to add to this port (name or ID) (repeat option to set multiple security groups)'),
      flag('--no-security-group', 'no_security_group', 'Clear existing security groups associated with this port'),
    ],
    async run(ctx, a) {
      const p = await findPort(ctx, a.pos('port'))
      const add = await groupIds(ctx, a)
      const groups = add.length || a.flag('no_security_group') ? [...new Set([...(a.flag('no_security_group') ? [] : p.securityGroups ?? []), ...add])] : undefined
      await ctx.call(PortsClient, 'updatePort', {
        id: p.id ?? '',
        ...namingOf(a),
        ...(a.str('device') !== undefined ? { deviceId: a.str('device') } : {}),
        ...(a.str('device_owner') !== undefined ? { deviceOwner: a.str('device_owner') } : {}),
        ...adminStateOf(a),
        ...(groups ? { securityGroups: { ids: groups } } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'port delete',
    summary: 'Delete port(s)',
    output: 'none',
    positionals: [{ name: 'port', help: 'Port(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'port', 'ports', a.posList('port'), async (ref) => {
        const p = await findPort(ctx, ref)
        await ctx.call(PortsClient, 'deletePort', { id: p.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'floating ip create',
    summary: 'Create floating IP',
    output: 'show',
    positionals: [{ name: 'network', help: 'Network to allocate floating IP from (name or ID)' }],
    options: [
      opt('--subnet', 'subnet', '<subnet>', 'Subnet on which you want to create the floating IP (name or ID)'),
      opt('--port', 'port', '<port>', 'Port to be associated with the floating IP (name or ID)'),
      opt('--floating-ip-address', 'floating_ip_address', '<ip-address>', 'Floating IP address'),
      opt('--fixed-ip-address', 'fixed_ip_address', '<ip-address>', "Fixed IP address mapped to the floating IP (when the port has several)"),
      opt('--description', 'description', '<description>', 'Set floating IP description'),
      ...projectOpts,
    ],
    async run(ctx, a) {
      const net = await findNetwork(ctx, a.pos('network'))
      const subnet = a.str('subnet')
      const port = a.str('port')
      const f = await ctx.call(FloatingIpsClient, 'createFloatingIp', {
        floatingNetworkId: net.id ?? '',
        floatingIpAddress: a.str('floating_ip_address') ?? '',
        subnetId: subnet ? (await findSubnet(ctx, subnet, net.id)).id ?? '' : '',
        portId: port ? (await findPort(ctx, port)).id ?? '' : '',
        fixedIpAddress: a.str('fixed_ip_address') ?? '',
        description: a.str('description') ?? '',
        projectId: await projectIdOf(ctx, a),
      })
      return { kind: 'show', data: floatingIpFields(f) }
    },
  },
  {
    name: 'floating ip list',
    summary: 'List floating IP(s)',
    output: 'list',
    options: [
      opt('--network', 'network', '<network>', 'List floating IP(s) according to given network (name or ID)'),
      opt('--port', 'port', '<port>', 'List floating IP(s) according to given port (name or ID)'),
      opt('--floating-ip-address', 'floating_ip_address', '<ip-address>', 'List floating IP(s) according to given floating IP address'),
      opt('--status', 'status', '<status>', 'List floating IP(s) according to given status (ACTIVE, DOWN)'),
      ...projectFilterOpts('List floating IP(s) according to given project (name or ID)'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      const network = a.str('network')
      const port = a.str('port')
      const fips = (await ctx.call(FloatingIpsClient, 'listFloatingIps', {
        floatingNetworkId: network ? (await findNetwork(ctx, network)).id ?? '' : '',
        portId: port ? (await findPort(ctx, port)).id ?? '' : '',
        floatingIpAddress: a.str('floating_ip_address') ?? '',
        status: a.str('status') ?? '',
        projectId: await projectIdOf(ctx, a),
      })).floatingIps ?? []
      const columns = ['ID', 'Floating IP Address', 'Fixed IP Address', 'Port', 'Floating Network', 'Project']
      const row = (f: FloatingIp) => [f.id ?? '', f.floatingIpAddress ?? '', f.fixedIpAddress || null, f.portId || null, f.floatingNetworkId ?? '', f.projectId ?? '']
      if (a.flag('long')) {
        return { kind: 'list', columns: [...columns, 'Router', 'Status', 'Description', 'Tags'], rows: fips.map((f) => [...row(f), f.routerId || null, f.status ?? '', f.description ?? '', []]) }
      }
      return { kind: 'list', columns, rows: fips.map(row) }
    },
  },
  {
    name: 'floating ip show',
    summary: 'Display floating IP details',
    output: 'show',
    positionals: [{ name: 'floating-ip', help: 'Floating IP to display (IP address or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: floatingIpFields(await findFloatingIp(ctx, a.pos('floating-ip'))) }
    },
  },
  {
    name: 'floating ip set',
    summary: 'Set floating IP properties',
    output: 'none',
    positionals: [{ name: 'floating-ip', help: 'Floating IP to modify (IP address or ID)' }],
    options: [
      opt('--port', 'port', '<port>', 'Associate the floating IP with port (name or ID)'),
      opt('--fixed-ip-address', 'fixed_ip_address', '<ip-address>', 'Fixed IP of the port (required only if port has multiple IPs)'),
      opt('--description', 'description', '<description>', 'Set floating IP description'),
    ],
    async run(ctx, a) {
      const f = await findFloatingIp(ctx, a.pos('floating-ip'))
      const port = a.str('port')
      if (a.str('fixed_ip_address') !== undefined && !port) throw new UsageError('strato floating ip set: --fixed-ip-address goes with --port <port>')
      await ctx.call(FloatingIpsClient, 'updateFloatingIp', {
        id: f.id ?? '',
        ...(port ? { portId: (await findPort(ctx, port)).id ?? '' } : {}),
        fixedIpAddress: a.str('fixed_ip_address') ?? '',
        ...(a.str('description') !== undefined ? { description: a.str('description') } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'floating ip unset',
    summary: 'Unset floating IP properties',
    output: 'none',
    positionals: [{ name: 'floating-ip', help: 'Floating IP to disassociate (IP address or ID)' }],
    options: [flag('--port', 'port', 'Disassociate any port associated with the floating IP')],
    async run(ctx, a) {
      const f = await findFloatingIp(ctx, a.pos('floating-ip'))
      if (a.flag('port')) await ctx.call(FloatingIpsClient, 'updateFloatingIp', { id: f.id ?? '', portId: '' })
      return { kind: 'none' }
    },
  },
  {
    name: 'floating ip delete',
    summary: 'Delete floating IP(s)',
    output: 'none',
    positionals: [{ name: 'floating-ip', help: 'Floating IP(s) to delete (IP address or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'floating IP', 'floating IPs', a.posList('floating-ip'), async (ref) => {
        const f = await findFloatingIp(ctx, ref)
        await ctx.call(FloatingIpsClient, 'deleteFloatingIp', { id: f.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
]
