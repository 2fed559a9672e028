/** `strato router …` — openstackclient 6.0's router commands (Neutron L3). */
import { isUuid } from '../../../proto/ids.js'
import { RoutersClient, type ExternalGatewayInfo, type HostRoute, type Router } from '../../../proto/gen/strato/network/v1/network.js'
import type { Context } from '../context.js'
import { CliError, UsageError } from '../errors.js'
import { flag, opt } from '../identity.js'
import { Column, pyJson } from '../output.js'
import type { Args, Command, OptionSpec } from '../registry.js'
import { findNetwork, findPort, findSubnet, iso, maybe, multiKeyValue, noSuch } from '../resources.js'
import { deleteEach } from './delete.js'
import { adminStateOf, adminStateOpts, listOpt, namingOf, projectFilterOpts, projectIdOf, projectOpts, upDown } from './network.js'

async function findRouter(ctx: Context, ref: string): Promise<Router> {
  if (isUuid(ref.toLowerCase())) {
    const byId = await maybe(ctx.call(RoutersClient, 'getRouter', { id: ref }))
    if (byId) return byId
  }
  const named = (await ctx.call(RoutersClient, 'listRouters', { name: ref })).routers ?? []
  if (named.length > 1) throw new CliError(`More than one router exists with the name '${ref}' (${named.length} of them); use the ID instead.`)
  if (!named[0]) throw noSuch('router', ref)
  return named[0]
}

/** Neutron's external_gateway_info as the API shows it (openstackclient prints it with json.dumps). */
function gatewayJson(g: ExternalGatewayInfo | undefined): Record<string, unknown> | null {
  if (!g) return null
  return {
    network_id: g.networkId ?? '',
    external_fixed_ips: (g.externalFixedIps ?? []).map((f) => ({ subnet_id: f.subnetId ?? '', ip_address: f.ipAddress ?? '' })),
    enable_snat: g.enableSnat ?? true,
  }
}

const jsonColumn = (v: unknown) => new Column(v === null ? 'None' : pyJson(v), v)

/** openstackclient's RoutesColumn: `destination='…', gateway='…'` per line; the API's list in json. */
const routesColumn = (routes: HostRoute[] | undefined) =>
  new Column((routes ?? []).map((r) => `destination='${r.destination}', gateway='${r.nexthop}'`).join('\n'), (routes ?? []).map((r) => ({ destination: r.destination ?? '', nexthop: r.nexthop ?? '' })))

function routerFields(r: Router, show = false): Record<string, unknown> {
  return {
    admin_state_up: upDown(r.adminStateUp),
    availability_zone_hints: [],
    availability_zones: [],
    created_at: iso(r.createdAt),
    description: r.description ?? '',
    external_gateway_info: jsonColumn(gatewayJson(r.externalGatewayInfo)),
    flavor_id: null,
    id: r.id ?? '',
    name: r.name ?? '',
    project_id: r.projectId ?? '',
    revision_number: r.revisionNumber ?? 0,
    routes: routesColumn(r.routes),
    status: r.status ?? '',
    tags: [],
    updated_at: iso(r.updatedAt),
    ...(show ? { interfaces_info: jsonColumn((r.interfacesInfo ?? []).map((i) => ({ port_id: i.portId ?? '', ip_address: i.ipAddress ?? '', subnet_id: i.subnetId ?? '' }))) } : {}),
    // Admins only (the API shows it to them): the host whose L3 agent holds the router.
    ...(r.l3AgentHost ? { l3_agent_host: r.l3AgentHost } : {}),
  }
}

const gatewayOpts: OptionSpec[] = [
  opt('--external-gateway', 'external_gateway', '<network>', "External Network used as router's gateway (name or ID)"),
  flag('--enable-snat', 'enable_snat', 'Enable Source NAT on external gateway'),
  flag('--disable-snat', 'enable_snat', 'Disable Source NAT on external gateway', false),
  listOpt('--fixed-ip', 'fixed_ip', 'subnet=<subnet>,ip-address=<ip-address>', 'Desired IP and/or subnet (name or ID) on external gateway: subnet=<subnet>,ip-address=<ip-address> (repeat option to set multiple fixed IP addresses)'),
]

/** `--external-gateway NET [--enable-snat|--disable-snat] [--fixed-ip …]` → the gateway to set, or undefined. */
async function gatewayOf(ctx: Context, c: string, a: Args): Promise<ExternalGatewayInfo | undefined> {
  const net = a.str('external_gateway')
  const snat = a.bool('enable_snat')
  const fixed = a.list('fixed_ip')
  if (!net) {
    if (snat !== undefined || fixed.length) throw new UsageError(`strato ${c}: You must specify '--external-gateway' in order to specify SNAT or fixed-ip values`)
    return undefined
  }
  const n = await findNetwork(ctx, net)
  const ips = []
  for (const v of fixed) {
    const kv = multiKeyValue(c, '--fixed-ip', v, [], ['subnet', 'ip-address'])
    if (!kv.subnet && !kv['ip-address']) throw new UsageError(`strato ${c}: --fixed-ip '${v}' needs subnet=<subnet> and/or ip-address=<ip-address>`)
    ips.push({ subnetId: kv.subnet ? (await findSubnet(ctx, kv.subnet, n.id)).id ?? '' : '', ipAddress: kv['ip-address'] ?? '' })
  }
  return { networkId: n.id ?? '', ...(snat !== undefined ? { enableSnat: snat } : {}), externalFixedIps: ips }
}

const routeOf = (c: string, v: string): HostRoute => {
  const kv = multiKeyValue(c, '--route', v, ['destination', 'gateway'])
  return { destination: kv.destination!, nexthop: kv.gateway! }
}

const routeOpt = (help: string): OptionSpec => listOpt('--route', 'route', 'destination=<subnet>,gateway=<ip-address>', help)

/** `router add|remove subnet|port ROUTER X`: one interface of the router, named by its subnet or its port. */
function interfaceCommand(verb: 'add' | 'remove', kind: 'subnet' | 'port', routerHelp: string, help: string): Command {
  return {
    name: `router ${verb} ${kind}`,
    summary: verb === 'add' ? `Add a ${kind} to a router` : `Remove a ${kind} from a router`,
    output: 'none',
    positionals: [{ name: 'router', help: routerHelp }, { name: kind, help }],
    async run(ctx, a) {
      const r = await findRouter(ctx, a.pos('router'))
      const which = kind === 'subnet' ? { subnetId: (await findSubnet(ctx, a.pos('subnet'))).id ?? '' } : { portId: (await findPort(ctx, a.pos('port'))).id ?? '' }
      await ctx.call(RoutersClient, verb === 'add' ? 'addRouterInterface' : 'removeRouterInterface', { routerId: r.id ?? '', ...which })
      return { kind: 'none' }
    },
  }
}

export const routerCommands: Command[] = [
  {
    name: 'router create',
    summary: 'Create a new router',
    output: 'show',
    positionals: [{ name: 'name', help: 'New router name' }],
    options: [
      ...adminStateOpts('Enable router (default)', 'Disable router'),
      opt('--description', 'description', '<description>', 'Set router description'),
      ...gatewayOpts,
      ...projectOpts,
    ],
    async run(ctx, a) {
      const gw = await gatewayOf(ctx, 'router create', a)
      const r = await ctx.call(RoutersClient, 'createRouter', {
        name: a.pos('name'),
        description: a.str('description') ?? '',
        ...adminStateOf(a),
        ...(gw ? { externalGatewayInfo: gw } : {}),
        projectId: await projectIdOf(ctx, a),
      })
      return { kind: 'show', data: routerFields(r) }
    },
  },
  {
    name: 'router list',
    summary: 'List routers',
    output: 'list',
    options: [
      opt('--name', 'name', '<name>', 'List routers according to their name'),
      ...adminStateOpts('List enabled routers', 'List disabled routers'),
      ...projectFilterOpts('List routers according to their project (name or ID)'),
      flag('--long', 'long', 'List additional fields in output'),
    ],
    async run(ctx, a) {
      let routers = (await ctx.call(RoutersClient, 'listRouters', { name: a.str('name') ?? '', projectId: await projectIdOf(ctx, a) })).routers ?? []
      const up = a.bool('admin_state_up')
      if (up !== undefined) routers = routers.filter((r) => (r.adminStateUp ?? true) === up)
      const columns = ['ID', 'Name', 'Status', 'State', 'Project']
      const row = (r: Router): unknown[] => [r.id ?? '', r.name ?? '', r.status ?? '', upDown(r.adminStateUp), r.projectId ?? '']
      if (a.flag('long')) {
        return {
          kind: 'list',
          columns: [...columns, 'Routes', 'External gateway info', 'Availability zones', 'Tags'],
          rows: routers.map((r) => [...row(r), routesColumn(r.routes), jsonColumn(gatewayJson(r.externalGatewayInfo)), [], []]),
        }
      }
      return { kind: 'list', columns, rows: routers.map(row) }
    },
  },
  {
    name: 'router show',
    summary: 'Display router details',
    output: 'show',
    positionals: [{ name: 'router', help: 'Router to display (name or ID)' }],
    async run(ctx, a) {
      return { kind: 'show', data: routerFields(await findRouter(ctx, a.pos('router')), true) }
    },
  },
  {
    name: 'router set',
    summary: 'Set router properties',
    output: 'none',
    positionals: [{ name: 'router', help: 'Router to modify (name or ID)' }],
    options: [
      opt('--name', 'name', '<name>', 'Set router name'),
      opt('--description', 'description', '<description>', 'Set router description'),
      ...adminStateOpts('Enable router', 'Disable router'),
      routeOpt('Add routes to the router: destination specifies the destination subnet (in CIDR notation) and gateway the nexthop IP address (repeat option to add multiple routes)'),
      flag('--no-route', 'no_route', "Clear routes associated with the router. Specify both --route and --no-route to overwrite current value of routes."),
      ...gatewayOpts,
    ],
    async run(ctx, a) {
      const c = 'router set'
      const r = await findRouter(ctx, a.pos('router'))
      const gw = await gatewayOf(ctx, c, a)
      const added = a.list('route').map((v) => routeOf(c, v))
      let routes: HostRoute[] | undefined
      // As openstackclient: --route appends to the current routes, --no-route clears them first.
      if (a.flag('no_route')) routes = added
      else if (added.length) routes = [...added, ...(r.routes ?? [])]
      await ctx.call(RoutersClient, 'updateRouter', {
        id: r.id ?? '',
        ...namingOf(a),
        ...adminStateOf(a),
        ...(gw ? { externalGatewayInfo: gw } : {}),
        ...(routes ? { routes: { routes } } : {}),
      })
      return { kind: 'none' }
    },
  },
  {
    name: 'router unset',
    summary: 'Unset router properties',
    output: 'none',
    positionals: [{ name: 'router', help: 'Router to modify (name or ID)' }],
    options: [
      routeOpt('Routes to be removed from the router: destination specifies the destination subnet (in CIDR notation) and gateway the nexthop IP address (repeat option to unset multiple routes)'),
      flag('--external-gateway', 'external_gateway', 'Remove external gateway information from the router'),
    ],
    async run(ctx, a) {
      const c = 'router unset'
      const r = await findRouter(ctx, a.pos('router'))
      const remove = a.list('route').map((v) => routeOf(c, v))
      let routes: HostRoute[] | undefined
      if (remove.length) {
        routes = [...(r.routes ?? [])]
        for (const x of remove) {
          const i = routes.findIndex((y) => y.destination === x.destination && y.nexthop === x.nexthop)
          if (i < 0) throw new CliError(`Router does not contain route destination='${x.destination}', gateway='${x.nexthop}'`)
          routes.splice(i, 1)
        }
      }
      if (!routes && !a.flag('external_gateway')) return { kind: 'none' }
      await ctx.call(RoutersClient, 'updateRouter', {
        id: r.id ?? '',
        ...(a.flag('external_gateway') ? { clearExternalGateway: true } : {}),
        ...(routes ? { routes: { routes } } : {}),
      })
      return { kind: 'none' }
    },
  },
  interfaceCommand('add', 'subnet', 'Router to which subnet will be added (name or ID)', 'Subnet to be added (name or ID)'),
  interfaceCommand('remove', 'subnet', 'Router from which the subnet will be removed (name or ID)', 'Subnet to be removed (name or ID)'),
  interfaceCommand('add', 'port', 'Router to which port will be added (name or ID)', 'Port to be added (name or ID)'),
  interfaceCommand('remove', 'port', 'Router from which port will be removed (name or ID)', 'Port to be removed and deleted (name or ID)'),
  {
    name: 'router delete',
    summary: 'Delete router(s)',
    output: 'none',
    positionals: [{ name: 'router', help: 'Router(s) to delete (name or ID)', variadic: true }],
    async run(ctx, a) {
      await deleteEach(ctx, 'router', 'routers', a.posList('router'), async (ref) => {
        const r = await findRouter(ctx, ref)
        await ctx.call(RoutersClient, 'deleteRouter', { id: r.id ?? '' })
      })
      return { kind: 'none' }
    },
  },
]
