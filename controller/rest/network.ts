/**
 * Networking v2.0 (Neutron) over REST: version discovery, the extensions
 * Strato really implements, networks, subnets, ports, security groups and
 * their rules, floating IPs and quotas. Each resource is one table row below
 * (its policy path, how to read, list, create, change and delete it through
 * the same catalogs the gRPC adapter `api/network.ts` calls, and its JSON);
 * `resourceRoutes` turns a row into Neutron's five routes. The catalogs scope
 * what each caller sees (Neutron's `admin_or_owner`): lists are the caller's
 * project's (plus shared and external networks) unless the caller is admin.
 */
import { InvalidArgument, NotFound, StratoError, type StratoErrorOptions } from '../../proto/errors.js'
import { actorOf, type Actor } from '../network/access.js'
import { QUOTA_DEFAULTS } from '../quota/quota.js'
import { IP_PROTOCOLS } from '../network/sg-rules.js'
import { bodyObject, keptAnswer, REST_PREFIX, type RestRequest, type RestResult, type Route, type RestService } from './http.js'
import type { Network } from '../network/networks.js'
import {
  Body, floatingIpJson, isEmpty, isNullish, isTrue, networkJson, pick, portJson, query, routerInterfaceJson, routerJson, ruleJson, securityGroupJson, subnetJson, type Attributes, type Json,
} from './network-json.js'
import type { RestDomain } from './services.js'
import type { GatewayRequest } from '../network/routers.js'

const N = 'strato.network.v1'
const QUOTAS = 'strato.compute.v1.Quotas'

/** One Neutron resource: its names, its policy entries' service, and how it maps to its catalog. */
interface Resource {
  /** e.g. `network` (the body key) and `networks` (the collection's key); `path` is the URL segment when it differs (`security-groups`). */
  singular: string
  plural: string
  path?: string
  /** The gRPC service and method noun whose policy entries govern it, e.g. `Networks` + `Network`. */
  service: string
  kind: string
  /** Neutron's error type when the resource itself is missing. */
  notFound: string
  /** The policy method for reading one, when it is not `Get<kind>` (rules are read under their listing's entry). */
  getPolicy?: string
  /** Frozen when the catalog keeps the listing (its answer is kept with it); fresh otherwise. */
  list(req: RestRequest, actor: Actor): Promise<readonly Json[]>
  show(id: string, actor: Actor): Promise<Json>
  create?(b: Json, actor: Actor): Promise<Json>
  update?(id: string, b: Json, actor: Actor): Promise<Json>
  remove(id: string, actor: Actor): Promise<void>
}

const actor = (req: RestRequest) => actorOf(req.auth!)

/** Neutron's error type for a domain error: by the field it names, else by the route's resource. */
const TYPE_BY_FIELD: Array<[RegExp, string]> = [
  [/(^|\.)(network_id|floating_network_id)$/, 'NetworkNotFound'],
  [/(^|\.)(security_group_id|remote_group_id)$|^security_groups\[/, 'SecurityGroupNotFound'],
  [/(^|\.)port_id$/, 'PortNotFound'],
  [/(^|\.)subnet_id$/, 'SubnetNotFound'],
  [/(^|\.)router_id$/, 'RouterNotFound'],
]

/** Neutron's error types that only the message tells apart (L3's, mostly). */
const TYPE_BY_MESSAGE: Array<[RegExp, string]> = [
  [/^External network \S+ is not reachable from subnet/, 'ExternalGatewayForFloatingIPNotFound'],
  [/^Router interface for subnet \S+ on router \S+ cannot be deleted, as it is required by one or more floating IPs/, 'RouterInterfaceInUseByFloatingIP'],
  [/^Gateway cannot be updated for router \S+, since a gateway to external network \S+ is required by one or more floating IPs/, 'RouterExternalGatewayInUseByFloatingIp'],
  [/^Router \S+ does not have an interface with id/, 'RouterInterfaceNotFound'],
  [/^Router \S+ has no interface on subnet/, 'RouterInterfaceNotFoundForSubnet'],
  [/^Port \S+ cannot be deleted directly via the port API/, 'ServicePortInUse'],
  [/^Port \S+ is in use/, 'PortInUse'],
  [/^Router \S+ cannot lose .* required by one or more routes/, 'RouterInterfaceInUseByRoute'],
]

/**
 * Refusals that clients recognise by Neutron's words (Tempest matches them;
 * its create_subnet tries the next CIDR on "overlaps with another subnet"):
 * Strato's message, its Neutron wording (put first, Strato's kept after it)
 * and Neutron's type when the status alone does not give it.
 */
const NEUTRON_WORDS: Array<[RegExp, (m: RegExpExecArray) => string, string?]> = [
  [/^quota exceeded for (\w+):/, (m) => `Quota exceeded for resources: ['${QUOTA_NAMES[m[1]!] ?? m[1]}'].`, 'OverQuota'],
  [/^cidr (\S+) overlaps subnet \S+ \(\S+\) of network (\S+)$/, (m) => `Invalid input for operation: Requested subnet with cidr: ${m[1]} for network: ${m[2]} overlaps with another subnet.`],
  [/^remote_ip_prefix (\S+) is IPv\d but the rule's ethertype is (IPv\d)$/, (m) => `Conflicting value ethertype ${m[2]} for CIDR ${m[1]}.`],
]

/** A domain error with Neutron's type (and, where clients match them, Neutron's words). */
function typed(err: unknown, r: { notFound: string; kind: string }): unknown {
  if (!(err instanceof StratoError) || 'neutronType' in err) return err
  for (const [re, words, type] of NEUTRON_WORDS) {
    const m = re.exec(err.message)
    if (!m) continue
    const Class = err.constructor as new (message: string, o: StratoErrorOptions) => StratoError
    return Object.assign(new Class(`${words(m)} ${err.message}`, { cause: err, ...(err.field ? { field: err.field } : {}) }), type ? { neutronType: type } : {})
  }
  let type: string | undefined = TYPE_BY_MESSAGE.find(([re]) => re.test(err.message))?.[1]
  if (type) return Object.assign(err, { neutronType: type })
  if (err.code === 'NOT_FOUND') type = TYPE_BY_FIELD.find(([re]) => re.test(err.field ?? ''))?.[1] ?? r.notFound
  else if (err.code === 'RESOURCE_EXHAUSTED' && /^no more IP addresses/.test(err.message)) type = 'IpAddressGenerationFailure'
  else if (err.code === 'CONFLICT' && / is in use/.test(err.message)) type = `${r.kind}InUse`
  else if (err.code === 'ALREADY_EXISTS' && r.kind === 'SecurityGroupRule') type = 'SecurityGroupRuleExists'
  return type ? Object.assign(err, { neutronType: type }) : err
}

/** Runs a handler with the resource's Neutron error types. */
function guarded(r: { notFound: string; kind: string }, h: (req: RestRequest) => Promise<RestResult>): (req: RestRequest) => Promise<RestResult> {
  return async (req) => {
    try {
      return await h(req)
    } catch (err) {
      throw typed(err, r)
    }
  }
}

/** What a create's policy entry resolves: the project named in the body (the gRPC request's `projectId`). */
async function createTarget(req: RestRequest, singular: string, plural: string): Promise<{ projectId?: string }> {
  const b = await req.json()
  if (!b || typeof b !== 'object') return {}
  const one = (b as Json)[singular]
  const many = (b as Json)[plural]
  // Each project a bulk create names must pass the policy: the first one that is not the caller's stands for them all.
  const objects = (Array.isArray(many) ? many : [one]).filter((o): o is Json => !!o && typeof o === 'object')
  const projects = objects.map((o) => o.project_id ?? o.tenant_id).filter((p): p is string => typeof p === 'string' && p !== '')
  const other = projects.find((p) => p !== req.auth?.projectId) ?? projects[0]
  return other ? { projectId: other } : {}
}

/** The bodies of a bulk create (`{"networks": [{…}, …]}`), or undefined for a single one. */
async function bulkBodies(req: RestRequest, plural: string): Promise<Json[] | undefined> {
  const b = await req.json()
  const list = b && typeof b === 'object' && !Array.isArray(b) ? (b as Json)[plural] : undefined
  if (list === undefined) return undefined
  if (!Array.isArray(list) || list.some((o) => o === null || typeof o !== 'object' || Array.isArray(o))) {
    throw new InvalidArgument(`'${plural}' must be a list of objects`, { field: plural })
  }
  return list as Json[]
}

/** Neutron's bulk create is all or nothing: what was made before a failure is deleted again. */
async function createAll(r: Resource, bodies: Json[], a: Actor): Promise<Json[]> {
  const made: Json[] = []
  try {
    for (const b of bodies) made.push(await r.create!(b, a))
    return made
  } catch (err) {
    for (const m of made.reverse()) await r.remove(String(m.id), a).catch(() => undefined)
    throw err
  }
}

/** GET/POST the collection, GET/PUT/DELETE one member. */
function resourceRoutes(r: Resource): Route[] {
  const path = `/v2.0/${r.path ?? r.plural}`
  const policy = (verb: string, noun = r.kind) => `${N}.${r.service}/${verb}${noun}`
  const routes: Route[] = [
    {
      method: 'GET', path, policy: policy('List', `${r.kind}s`),
      handler: guarded(r, async (req) => {
        const all = await r.list(req, actor(req))
        // A kept (frozen) listing keeps its answer per query: filters, fields and pages are the query's.
        return {
          json: keptAnswer(all, `${req.baseUrl}${req.path}?${req.query.toString()}`, () => {
            const page = query(all, req.query, `${req.baseUrl}${req.path}`)
            return Buffer.from(JSON.stringify({ [r.plural]: page.items, ...(page.links.length ? { [`${r.plural}_links`]: page.links } : {}) }))
          }),
        }
      }),
    },
    {
      method: 'GET', path: `${path}/:id`, policy: r.getPolicy ? `${N}.${r.service}/${r.getPolicy}` : policy('Get'),
      handler: guarded(r, async (req) => ({ body: { [r.singular]: pick(await r.show(req.params.id!, actor(req)), req.query) } })),
    },
    {
      method: 'DELETE', path: `${path}/:id`, policy: policy('Delete'),
      handler: guarded(r, async (req) => (await r.remove(req.params.id!, actor(req)), { status: 204 })),
    },
  ]
  const create = r.create
  if (create) {
    routes.push({
      method: 'POST', path, policy: policy('Create'), target: (req) => createTarget(req, r.singular, r.plural),
      handler: guarded(r, async (req) => {
        const bulk = await bulkBodies(req, r.plural)
        if (!bulk) return { status: 201, body: { [r.singular]: await create(await bodyObject(req, r.singular), actor(req)) } }
        return { status: 201, body: { [r.plural]: await createAll(r, bulk, actor(req)) } }
      }),
    })
  }
  const update = r.update
  if (update) {
    routes.push({
      method: 'PUT', path: `${path}/:id`, policy: policy('Update'),
      handler: guarded(r, async (req) => ({ body: { [r.singular]: await update(req.params.id!, await bodyObject(req, r.singular), actor(req)) } })),
    })
  }
  return routes
}

// ------------------------------------------------------------------ the resources

const PROJECT: Attributes = { project_id: true, tenant_id: true }
const NETWORK_CREATE: Attributes = {
  ...PROJECT, name: true, description: true, admin_state_up: true, shared: true, 'router:external': true,
  'provider:network_type': true, 'provider:physical_network': true, 'provider:segmentation_id': true,
  port_security_enabled: (v) => isNullish(v) || isTrue(v), mtu: (v) => isNullish(v) || v === 1500, availability_zone_hints: isEmpty,
  is_default: (v) => isNullish(v) || v === false, qos_policy_id: isNullish, dns_domain: isEmpty,
}
const NETWORK_UPDATE: Attributes = {
  name: true, description: true, admin_state_up: true, shared: true, 'router:external': true,
  port_security_enabled: NETWORK_CREATE.port_security_enabled!, mtu: NETWORK_CREATE.mtu!, is_default: NETWORK_CREATE.is_default!, qos_policy_id: isNullish, dns_domain: isEmpty,
}
const SUBNET_UPDATE: Attributes = {
  name: true, description: true, gateway_ip: true, allocation_pools: true, dns_nameservers: true, host_routes: true, enable_dhcp: true,
  service_types: isEmpty, segment_id: isNullish,
}
const SUBNET_CREATE: Attributes = {
  ...PROJECT, ...SUBNET_UPDATE, network_id: true, ip_version: true, cidr: true,
  subnetpool_id: isNullish, use_default_subnetpool: (v) => isNullish(v) || v === false, prefixlen: isNullish, ipv6_ra_mode: isNullish, ipv6_address_mode: isNullish,
}
const PORT_UPDATE: Attributes = {
  name: true, description: true, admin_state_up: true, device_id: true, device_owner: true, security_groups: true,
  port_security_enabled: NETWORK_CREATE.port_security_enabled!, allowed_address_pairs: isEmpty, extra_dhcp_opts: isEmpty, 'binding:vnic_type': (v) => isNullish(v) || v === 'normal',
  'binding:profile': (v) => isNullish(v) || (typeof v === 'object' && Object.keys(v as object).length === 0), qos_policy_id: isNullish,
}
const PORT_CREATE: Attributes = { ...PROJECT, ...PORT_UPDATE, network_id: true, mac_address: true, fixed_ips: true, 'binding:host_id': isEmpty }
const SG_UPDATE: Attributes = { name: true, description: true, stateful: true }
const SG_CREATE: Attributes = { ...PROJECT, ...SG_UPDATE }
const RULE_CREATE: Attributes = {
  ...PROJECT, security_group_id: true, direction: true, ethertype: true, protocol: true, port_range_min: true, port_range_max: true,
  remote_ip_prefix: true, remote_group_id: true, description: true, remote_address_group_id: isNullish,
}
const FIP_UPDATE: Attributes = { port_id: true, fixed_ip_address: true, description: true, qos_policy_id: isNullish }
const FIP_CREATE: Attributes = { ...PROJECT, ...FIP_UPDATE, floating_network_id: true, floating_ip_address: true, subnet_id: true, dns_domain: isEmpty, dns_name: isEmpty }

const ROUTER_UPDATE: Attributes = {
  name: true, description: true, admin_state_up: true, external_gateway_info: true, routes: true,
  distributed: (v) => isNullish(v) || v === false, ha: (v) => isNullish(v) || v === false,
}
const ROUTER_CREATE: Attributes = {
  ...PROJECT, name: true, description: true, admin_state_up: true, external_gateway_info: true,
  distributed: ROUTER_UPDATE.distributed!, ha: ROUTER_UPDATE.ha!, availability_zone_hints: isEmpty, flavor_id: isNullish,
}

/**
 * `external_gateway_info`: an object sets the gateway; null or `{}` clears it
 * (openstackclient's `router unset --external-gateway` sends `{}`).
 */
function gatewayOf(b: Body): { externalGatewayInfo?: GatewayRequest; clearExternalGateway?: boolean } {
  if (!b.has('external_gateway_info')) return {}
  const v = b.b.external_gateway_info
  if (v === null || (typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length === 0)) return { clearExternalGateway: true }
  if (typeof v !== 'object' || Array.isArray(v)) throw new InvalidArgument(`Invalid input for external_gateway_info: ${JSON.stringify(v)} is not an object`, { field: 'router.external_gateway_info' })
  const g = new Body('router.external_gateway_info', v as Json, { network_id: true, enable_snat: true, external_fixed_ips: true, qos_policy_id: isNullish })
  const ips = g.objects('external_fixed_ips', ['subnet_id', 'ip_address'])
  return {
    externalGatewayInfo: {
      networkId: g.str('network_id') ?? '',
      ...(g.bool('enable_snat') !== undefined ? { enableSnat: g.bool('enable_snat') } : {}),
      ...(ips ? { externalFixedIps: ips.map((f) => ({ subnetId: f.subnet_id ?? '', ipAddress: f.ip_address ?? '' })) } : {}),
    },
  }
}

const pools = (b: Body, k = 'allocation_pools') => b.objects(k, ['start', 'end'])?.map((p) => ({ start: p.start ?? '', end: p.end ?? '' }))
const routesOf = (b: Body) => b.objects('host_routes', ['destination', 'nexthop'])?.map((r) => ({ destination: r.destination ?? '', nexthop: r.nexthop ?? '' }))
/** `gateway_ip: null` is "no gateway"; absent is "the default one". */
const gateway = (b: Body) => (b.has('gateway_ip') && b.b.gateway_ip === null ? { noGateway: true } : { gatewayIp: b.str('gateway_ip') })

/** Protocols whose rules take ports (tcp, udp, dccp, sctp, udplite) and ICMP ones, by number. */
const PORT_PROTOCOLS = new Set([6, 17, 33, 132, 136])
const ICMP_PROTOCOLS = new Set([1, 58])

/**
 * A rule's port range in Neutron's words (the API's contract: Tempest matches
 * them); the catalog checks the same again, in its own.
 */
function checkRulePorts(protocol: string | undefined, min: number | undefined, max: number | undefined): void {
  const p = (protocol ?? '').toLowerCase()
  const number = /^\d+$/.test(p) ? Number(p) : IP_PROTOCOLS[p]
  const bad = (m: string, field: string): never => {
    throw new InvalidArgument(m, { field: `security_group_rule.${field}` })
  }
  if (number !== undefined && PORT_PROTOCOLS.has(number)) {
    for (const [field, v] of [['port_range_min', min], ['port_range_max', max]] as const) if (v !== undefined && (v < 1 || v > 65535)) bad(`Invalid value for port ${v}`, field)
    if ((min === undefined) !== (max === undefined) || (min !== undefined && max !== undefined && min > max)) bad('For TCP/UDP protocols, port_range_min must be <= port_range_max', 'port_range_min')
  }
  if (number !== undefined && ICMP_PROTOCOLS.has(number)) {
    if (min !== undefined && (min < 0 || min > 255)) bad(`Invalid value for ICMP type (port-range-min): ${min}`, 'port_range_min')
    if (max !== undefined && (max < 0 || max > 255)) bad(`Invalid value for ICMP code (port-range-max): ${max}`, 'port_range_max')
    if (min === undefined && max !== undefined) bad(`ICMP code (port-range-max) ${max} is provided but ICMP type (port-range-min) is missing.`, 'port_range_min')
  }
}

/**
 * Security groups listed by name `default` with no project named: the
 * caller's own project's. `default` names one group per project, so "the
 * default group" without a project means the caller's. Neutron itself answers
 * an admin with every project's `default` (its listing is not scoped for
 * admins), and openstackclient resolves `security group rule create …
 * default` by that listing alone (`find_security_group`, no project filter),
 * so on Neutron the seed's rule commands fail for an admin once a second
 * project has its default group ("More than one SecurityGroup exists").
 * A plain listing (no name) still shows an admin every project's groups.
 */
function defaultGroupScope(req: RestRequest, a: Actor): { projectId?: string } {
  const names = req.query.getAll('name')
  const projectNamed = req.query.has('project_id') || req.query.has('tenant_id')
  return names.length === 1 && names[0] === 'default' && !projectNamed && a.projectId ? { projectId: a.projectId } : {}
}

/** Each kept listing's JSON, per shape (the role, where the JSON shows admin-only fields). */
const keptJsons = new WeakMap<readonly object[], Map<string, readonly Json[]>>()

/**
 * A listing as JSON: for a kept (frozen) listing, made once per shape and
 * kept with it, frozen, as the catalog hands the listing out again while
 * unchanged (so `keptAnswer` can keep the answer made from it); fresh
 * listings get fresh JSON.
 */
function listingJson<T extends object>(items: readonly T[], toJson: (item: T) => Json, shape = ''): readonly Json[] {
  if (!Object.isFrozen(items)) return items.map(toJson)
  let kept = keptJsons.get(items)
  if (!kept) keptJsons.set(items, (kept = new Map()))
  let json = kept.get(shape)
  if (!json) kept.set(shape, (json = Object.freeze(items.map(toJson))))
  return json
}

const roleOf = (a: Actor): string => (a.isAdmin ? 'admin' : 'member')

function resources(d: RestDomain): Resource[] {
  const { networks, subnets, ports, securityGroups: groups, floatingIps, routers } = d.network
  return [
    {
      singular: 'network', plural: 'networks', service: 'Networks', kind: 'Network', notFound: 'NetworkNotFound',
      list: async (_req, a) => listingJson(await networks.list({}, a), (n) => networkJson(n, a.isAdmin), roleOf(a)),
      show: async (id, a) => networkJson(await networks.get({ id }, a), a.isAdmin),
      create: async (o, a) => {
        const b = new Body('network', o, NETWORK_CREATE)
        const n = await networks.create({
          name: b.str('name'), description: b.str('description'), adminStateUp: b.bool('admin_state_up'), shared: b.bool('shared'), routerExternal: b.bool('router:external'),
          providerNetworkType: b.str('provider:network_type'), providerPhysicalNetwork: b.str('provider:physical_network'), providerSegmentationId: b.int('provider:segmentation_id'), projectId: b.project(),
        }, a)
        return networkJson(n, a.isAdmin)
      },
      update: async (id, o, a) => {
        const b = new Body('network', o, NETWORK_UPDATE, ['id', 'provider:network_type', 'provider:physical_network', 'provider:segmentation_id', 'project_id', 'tenant_id'])
        const n = await networks.update(id, { name: b.str('name'), description: b.str('description'), adminStateUp: b.bool('admin_state_up'), shared: b.bool('shared'), routerExternal: b.bool('router:external') }, a)
        return networkJson(n, a.isAdmin)
      },
      remove: (id, a) => networks.delete(id, a),
    },
    {
      singular: 'subnet', plural: 'subnets', service: 'Subnets', kind: 'Subnet', notFound: 'SubnetNotFound',
      list: async (_req, a) => listingJson(await subnets.list({}, a), subnetJson),
      show: async (id, a) => subnetJson(await subnets.get({ id }, a)),
      create: async (o, a) => {
        const b = new Body('subnet', o, SUBNET_CREATE)
        return subnetJson(await subnets.create({
          name: b.str('name'), description: b.str('description'), networkId: b.str('network_id'), ipVersion: b.int('ip_version'), cidr: b.str('cidr'), ...gateway(b),
          allocationPools: pools(b), dnsNameservers: b.strings('dns_nameservers'), hostRoutes: routesOf(b), enableDhcp: b.bool('enable_dhcp'), projectId: b.project(),
        }, a))
      },
      update: async (id, o, a) => {
        const b = new Body('subnet', o, SUBNET_UPDATE, ['id', 'network_id', 'cidr', 'ip_version', 'project_id', 'tenant_id'])
        return subnetJson(await subnets.update(id, {
          name: b.str('name'), description: b.str('description'), ...gateway(b), allocationPools: pools(b), dnsNameservers: b.strings('dns_nameservers'),
          hostRoutes: routesOf(b), enableDhcp: b.bool('enable_dhcp'),
        }, a))
      },
      remove: (id, a) => subnets.delete(id, a),
    },
    {
      singular: 'port', plural: 'ports', service: 'Ports', kind: 'Port', notFound: 'PortNotFound',
      list: async (_req, a) => listingJson(await ports.list({}, a), (p) => portJson(p, a.isAdmin), roleOf(a)),
      show: async (id, a) => portJson(await ports.get(id, a), a.isAdmin),
      create: async (o, a) => {
        const b = new Body('port', o, PORT_CREATE)
        const groups = b.strings('security_groups')
        const fixed = b.objects('fixed_ips', ['subnet_id', 'ip_address'])?.map((f) => ({ ...(f.subnet_id ? { subnetId: f.subnet_id } : {}), ...(f.ip_address ? { ipAddress: f.ip_address } : {}) }))
        const p = await ports.create({
          name: b.str('name'), description: b.str('description'), networkId: b.str('network_id'), macAddress: b.str('mac_address'), fixedIps: fixed,
          deviceOwner: b.str('device_owner'), deviceId: b.str('device_id'), adminStateUp: b.bool('admin_state_up'),
          ...(groups ? (groups.length ? { securityGroups: groups } : { noSecurityGroups: true }) : {}), projectId: b.project(),
        }, a)
        return portJson(p, a.isAdmin)
      },
      update: async (id, o, a) => {
        const b = new Body('port', o, PORT_UPDATE, ['id', 'network_id', 'mac_address', 'project_id', 'tenant_id'])
        const p = await ports.update(id, {
          name: b.str('name'), description: b.str('description'), deviceOwner: b.str('device_owner'), deviceId: b.str('device_id'),
          adminStateUp: b.bool('admin_state_up'), securityGroups: b.has('security_groups') ? b.strings('security_groups') ?? [] : undefined,
        }, a)
        return portJson(p, a.isAdmin)
      },
      remove: (id, a) => ports.delete(id, a),
    },
    {
      singular: 'security_group', plural: 'security_groups', path: 'security-groups', service: 'SecurityGroups', kind: 'SecurityGroup', notFound: 'SecurityGroupNotFound',
      list: async (req, a) => listingJson(await groups.list(defaultGroupScope(req, a), a), securityGroupJson),
      show: async (id, a) => securityGroupJson(await groups.get({ id }, a)),
      create: async (o, a) => {
        const b = new Body('security_group', o, SG_CREATE)
        return securityGroupJson(await groups.create({ name: b.str('name'), description: b.str('description'), stateful: b.bool('stateful'), projectId: b.project() }, a))
      },
      update: async (id, o, a) => {
        const b = new Body('security_group', o, SG_UPDATE, ['id', 'project_id', 'tenant_id'])
        return securityGroupJson(await groups.update(id, { name: b.str('name'), description: b.str('description'), stateful: b.bool('stateful') }, a))
      },
      remove: (id, a) => groups.delete(id, a),
    },
    {
      singular: 'security_group_rule', plural: 'security_group_rules', path: 'security-group-rules', service: 'SecurityGroups', kind: 'SecurityGroupRule', notFound: 'SecurityGroupRuleNotFound', getPolicy: 'ListSecurityGroupRules',
      list: async (_req, a) => listingJson(await groups.listRules({}, a), ruleJson),
      show: async (id, a) => {
        const rule = (await groups.listRules({}, a)).find((r) => r.id === id)
        if (!rule) throw new NotFound(`security group rule ${id} not found`, { field: 'id' })
        return ruleJson(rule)
      },
      create: async (o, a) => {
        const b = new Body('security_group_rule', o, RULE_CREATE)
        const protocol = typeof b.b.protocol === 'number' ? String(b.b.protocol) : b.str('protocol')
        checkRulePorts(protocol, b.int('port_range_min'), b.int('port_range_max'))
        const rule = await groups.createRule({
          securityGroupId: b.str('security_group_id'), direction: b.str('direction'), ethertype: b.str('ethertype'), protocol,
          portRangeMin: b.int('port_range_min'), portRangeMax: b.int('port_range_max'), remoteIpPrefix: b.str('remote_ip_prefix'), remoteGroupId: b.str('remote_group_id'), description: b.str('description'),
        }, a)
        return ruleJson(rule)
      },
      remove: (id, a) => groups.deleteRule(id, a),
    },
    {
      singular: 'router', plural: 'routers', service: 'Routers', kind: 'Router', notFound: 'RouterNotFound',
      list: async (_req, a) => listingJson(await routers.list({}, a), (r) => routerJson(r, a.isAdmin), roleOf(a)),
      show: async (id, a) => routerJson(await routers.get({ id }, a), a.isAdmin),
      create: async (o, a) => {
        const b = new Body('router', o, ROUTER_CREATE)
        const { externalGatewayInfo } = gatewayOf(b)
        const r = await routers.create({ name: b.str('name'), description: b.str('description'), adminStateUp: b.bool('admin_state_up'), externalGatewayInfo, projectId: b.project() }, a)
        return routerJson(r, a.isAdmin)
      },
      update: async (id, o, a) => {
        const b = new Body('router', o, ROUTER_UPDATE, ['id', 'project_id', 'tenant_id', 'status'])
        const routes = b.objects('routes', ['destination', 'nexthop'])?.map((r) => ({ destination: r.destination ?? '', nexthop: r.nexthop ?? '' }))
        // `routes: null` clears them, as an empty list does.
        const r = await routers.update(id, { name: b.str('name'), description: b.str('description'), adminStateUp: b.bool('admin_state_up'), ...gatewayOf(b), routes: b.has('routes') ? routes ?? [] : undefined }, a)
        return routerJson(r, a.isAdmin)
      },
      remove: (id, a) => routers.delete(id, a),
    },
    {
      singular: 'floatingip', plural: 'floatingips', service: 'FloatingIps', kind: 'FloatingIp', notFound: 'FloatingIPNotFound',
      list: async (_req, a) => listingJson(await floatingIps.list({}, a), floatingIpJson),
      show: async (id, a) => floatingIpJson(await floatingIps.get(id, a)),
      create: async (o, a) => {
        const b = new Body('floatingip', o, FIP_CREATE)
        return floatingIpJson(await floatingIps.create({
          floatingNetworkId: b.str('floating_network_id'), floatingIpAddress: b.str('floating_ip_address'), subnetId: b.str('subnet_id'), portId: b.str('port_id'),
          fixedIpAddress: b.str('fixed_ip_address'), description: b.str('description'), projectId: b.project(),
        }, a))
      },
      update: async (id, o, a) => {
        const b = new Body('floatingip', o, FIP_UPDATE, ['id', 'floating_network_id', 'floating_ip_address', 'project_id', 'tenant_id'])
        // `port_id: null` dissociates.
        const portId = b.has('port_id') ? b.str('port_id') ?? '' : undefined
        return floatingIpJson(await floatingIps.update(id, { portId, fixedIpAddress: b.str('fixed_ip_address'), description: b.str('description') }, a))
      },
      remove: (id, a) => floatingIps.delete(id, a),
    },
  ]
}

// ------------------------------------------------------------------ quotas

/** Neutron's quota names for Strato's resources. */
const QUOTA_NAMES: Record<string, string> = {
  networks: 'network', subnets: 'subnet', ports: 'port', floating_ips: 'floatingip', routers: 'router', security_groups: 'security_group', security_group_rules: 'security_group_rule',
}
const STRATO_NAME = Object.fromEntries(Object.entries(QUOTA_NAMES).map(([k, v]) => [v, k]))

function quotaRoutes(d: RestDomain): Route[] {
  const target = (req: RestRequest) => ({ projectId: req.params.project_id })
  const quotaType = { notFound: 'NotFound', kind: 'Quota' }
  const report = async (projectId: string) => (await d.quota.report(projectId)).filter((i) => i.resource in QUOTA_NAMES)
  const limits = async (projectId: string) => Object.fromEntries((await report(projectId)).map((i) => [QUOTA_NAMES[i.resource]!, i.limit]))
  return [
    {
      // Projects whose quotas differ from the defaults: admins only, under the admin-only quota entry.
      method: 'GET', path: '/v2.0/quotas', policy: `${QUOTAS}/UpdateQuota`,
      handler: async () => {
        const out: Json[] = []
        for (const p of await d.identity.listProjects({}, { kind: 'all' })) {
          const q = await limits(p.id)
          if (Object.entries(QUOTA_NAMES).some(([k, v]) => q[v] !== QUOTA_DEFAULTS[k])) out.push({ ...q, project_id: p.id, tenant_id: p.id })
        }
        return { body: { quotas: out } }
      },
    },
    {
      method: 'GET', path: '/v2.0/quotas/tenant', policy: `${QUOTAS}/GetDefaultQuota`,
      handler: async (req) => ({ body: { tenant: { tenant_id: req.auth!.projectId ?? null } } }),
    },
    {
      method: 'GET', path: '/v2.0/quotas/:project_id', policy: `${QUOTAS}/GetQuota`, target,
      handler: async (req) => ({ body: { quota: await limits(req.params.project_id!) } }),
    },
    // Neutron takes a `.json` suffix; Tempest's quotas client sends it here.
    ...['details', 'details.json'].map((leaf): Route => ({
      method: 'GET', path: `/v2.0/quotas/:project_id/${leaf}`, policy: `${QUOTAS}/GetQuota`, target,
      handler: async (req) => ({ body: { quota: Object.fromEntries((await report(req.params.project_id!)).map((i) => [QUOTA_NAMES[i.resource]!, { limit: i.limit, used: i.inUse, reserved: 0 }])) } }),
    })),
    {
      method: 'GET', path: '/v2.0/quotas/:project_id/default', policy: `${QUOTAS}/GetDefaultQuota`,
      handler: async () => ({ body: { quota: Object.fromEntries(Object.entries(QUOTA_NAMES).map(([k, v]) => [v, QUOTA_DEFAULTS[k]!])) } }),
    },
    {
      method: 'PUT', path: '/v2.0/quotas/:project_id', policy: `${QUOTAS}/UpdateQuota`,
      handler: guarded(quotaType, async (req) => {
        const b = new Body('quota', await bodyObject(req, 'quota'), Object.fromEntries(Object.keys(STRATO_NAME).map((k) => [k, true])))
        const set: Record<string, number> = {}
        for (const k of Object.keys(b.b)) set[STRATO_NAME[k]!] = b.int(k)!
        await d.quota.update(req.params.project_id!, set)
        return { body: { quota: await limits(req.params.project_id!) } }
      }),
    },
    {
      method: 'DELETE', path: '/v2.0/quotas/:project_id', policy: `${QUOTAS}/UpdateQuota`,
      handler: async (req) => {
        await d.quota.update(req.params.project_id!, Object.fromEntries(Object.keys(QUOTA_NAMES).map((k) => [k, QUOTA_DEFAULTS[k]!])))
        return { status: 204 }
      },
    },
  ]
}

/** `PUT /v2.0/routers/{id}/add_router_interface` and `…/remove_router_interface`, body `{subnet_id}` or `{port_id}` (not wrapped). */
function routerInterfaceRoutes(d: RestDomain): Route[] {
  const types = { notFound: 'RouterNotFound', kind: 'Router' }
  const attrs: Attributes = { subnet_id: true, port_id: true }
  const read = async (req: RestRequest) => {
    const o = await req.json()
    if (!o || typeof o !== 'object' || Array.isArray(o)) throw new InvalidArgument('the body must be an object with subnet_id or port_id', { field: 'body' })
    const b = new Body('router_interface', o as Json, attrs)
    return { subnetId: b.str('subnet_id'), portId: b.str('port_id') }
  }
  return [
    {
      method: 'PUT', path: '/v2.0/routers/:id/add_router_interface', policy: `${N}.Routers/AddRouterInterface`,
      handler: guarded(types, async (req) => ({ body: routerInterfaceJson(await d.network.routers.addInterface(req.params.id!, await read(req), actor(req))) })),
    },
    {
      method: 'PUT', path: '/v2.0/routers/:id/remove_router_interface', policy: `${N}.Routers/RemoveRouterInterface`,
      handler: guarded(types, async (req) => ({ body: routerInterfaceJson(await d.network.routers.removeInterface(req.params.id!, await read(req), actor(req))) })),
    },
  ]
}

// ------------------------------------------------------------------ discovery

/** The extensions Strato implements, by Neutron alias: clients and Tempest decide what to try from these. */
const EXTENSIONS: Array<{ alias: string; name: string; description: string }> = [
  { alias: 'security-group', name: 'security-group', description: 'The security groups extension.' },
  { alias: 'stateful-security-group', name: 'Stateful security group', description: 'Security groups may be stateless (stateful=false).' },
  { alias: 'quotas', name: 'Quota management support', description: 'Expose functions for quotas management per project.' },
  { alias: 'quota_details', name: 'Quota details management support', description: 'Expose functions for quotas usage statistics per project.' },
  { alias: 'provider', name: 'Provider Network', description: 'Expose mapping of virtual networks to physical networks (flat, vlan).' },
  { alias: 'external-net', name: 'Neutron external network', description: 'Adds external network attribute to network resource.' },
  { alias: 'router', name: 'Neutron L3 Router', description: 'Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.' },
  { alias: 'ext-gw-mode', name: 'Neutron L3 Configurable external gateway mode', description: 'Extension of the router abstraction for specifying whether SNAT should occur on the external gateway.' },
  { alias: 'extraroute', name: 'Neutron Extra Route', description: 'Extra routes configuration for L3 router.' },
  { alias: 'binding', name: 'Port Binding', description: 'Expose port bindings of a virtual port to external application.' },
  { alias: 'net-mtu', name: 'Network MTU', description: 'Provides MTU attribute for a network resource.' },
  { alias: 'project-id', name: 'project_id field enabled', description: 'Extension that indicates that project_id field is enabled.' },
  { alias: 'standard-attr-description', name: 'standard-attr-description', description: 'Extension to add descriptions to standard attributes.' },
  { alias: 'standard-attr-revisions', name: 'Resource revision numbers', description: 'This extension will display the revision number of neutron resources.' },
  { alias: 'standard-attr-timestamp', name: 'Resource timestamps', description: 'Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.' },
  { alias: 'pagination', name: 'Pagination support', description: 'Extension that indicates that pagination is enabled.' },
  { alias: 'sorting', name: 'Sorting support', description: 'Extension that indicates that sorting is enabled.' },
]
/** The aliases, for what configures clients (Tempest's `[network-feature-enabled] api_extensions`). */
export const NETWORK_EXTENSION_ALIASES: readonly string[] = EXTENSIONS.map((e) => e.alias)
const extensionJson = (e: (typeof EXTENSIONS)[number]) => ({ ...e, updated: '2013-01-01T10:00:00-00:00', links: [] })

const COLLECTIONS: Array<[string, string]> = [
  ['network', 'networks'], ['subnet', 'subnets'], ['port', 'ports'], ['security_group', 'security-groups'], ['security_group_rule', 'security-group-rules'],
  ['floatingip', 'floatingips'], ['router', 'routers'], ['quota', 'quotas'], ['extension', 'extensions'],
]

export function networkRest(d: RestDomain): RestService {
  return {
    type: 'network',
    prefix: REST_PREFIX.network,
    routes: [
      {
        method: 'GET', path: '/', policy: 'public',
        handler: async (req) => ({ body: { versions: [{ id: 'v2.0', status: 'CURRENT', links: [{ href: `${req.baseUrl}/v2.0/`, rel: 'self' }] }] } }),
      },
      {
        method: 'GET', path: '/v2.0', policy: 'public',
        handler: async (req) => ({ body: { resources: COLLECTIONS.map(([name, collection]) => ({ name, collection, links: [{ href: `${req.baseUrl}/v2.0/${collection}`, rel: 'self' }] })) } }),
      },
      { method: 'GET', path: '/v2.0/extensions', policy: 'public', handler: async () => ({ body: { extensions: EXTENSIONS.map(extensionJson) } }) },
      {
        method: 'GET', path: '/v2.0/extensions/:alias', policy: 'public',
        handler: guarded({ notFound: 'ExtensionNotFound', kind: 'Extension' }, async (req) => {
          const e = EXTENSIONS.find((x) => x.alias === req.params.alias)
          if (!e) throw new NotFound(`Extension with alias ${req.params.alias} does not exist`)
          return { body: { extension: extensionJson(e) } }
        }),
      },
      ...quotaRoutes(d),
      ...resources(d).flatMap(resourceRoutes),
      ...routerInterfaceRoutes(d),
    ],
  }
}
