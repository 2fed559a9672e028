/**
 * Networking v2.0 (Neutron) over REST, as HTTP: discovery, the resources and
 * their Neutron JSON, query filters / fields / sorting / pagination, scoping
 * per project, and Neutron's error bodies. The real `openstack` client runs
 * the seed against the same API in network-client.test.ts.
 */
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call } from '../../helpers/grpc.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import type { Project } from '../../../proto/gen/strato/identity/v1/identity.js'

let s: TestController
let base: string
let member: Tenant
/** The admin token's project (admin's resources are made there). */
let adminProject: string

t.before(async () => {
  s = await startController()
  base = `${s.controller.rest!.origin}/network`
  member = await tenant(s, 'netrest')
  adminProject = (await call<Project>(s.clients.projects, 'getProject', { name: s.openrc.OS_PROJECT_NAME, domainId: 'default' }, s.adminToken)).id
})
t.teardown(() => s.close())

interface Answer {
  status: number
  body: any
  headers: Headers
}

async function api(method: string, path: string, body?: unknown, token = s.adminToken, headers: Record<string, string> = {}): Promise<Answer> {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { 'x-auth-token': token, ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : undefined, headers: r.headers }
}

t.test('discovery: versions, the v2.0 resources, and only the extensions Strato implements', async (t) => {
  let r = await fetch(`${base}/`)
  t.equal(r.status, 200)
  t.same(await r.json(), { versions: [{ id: 'v2.0', status: 'CURRENT', links: [{ href: `${base}/v2.0/`, rel: 'self' }] }] })
  r = await fetch(`${base}/v2.0`)
  const names = ((await r.json()) as any).resources.map((x: any) => x.name)
  t.match(names, ['network', 'subnet', 'port', 'security_group', 'security_group_rule', 'floatingip', 'router', 'quota'])
  const ext = await api('GET', '/v2.0/extensions')
  const aliases = ext.body.extensions.map((e: any) => e.alias)
  for (const a of ['security-group', 'quotas', 'provider', 'external-net', 'standard-attr-description', 'project-id', 'binding', 'net-mtu', 'router', 'ext-gw-mode', 'extraroute']) t.ok(aliases.includes(a), `extension ${a}`)
  for (const a of ['dvr', 'l3-ha', 'agent', 'port-security', 'allowed-address-pairs', 'standard-attr-tag']) t.notOk(aliases.includes(a), `no extension ${a}`)
  t.match((await api('GET', '/v2.0/extensions/provider')).body, { extension: { alias: 'provider', links: [] } })
  const missing = await api('GET', '/v2.0/extensions/dvr')
  t.equal(missing.status, 404)
  t.match(missing.body, { NeutronError: { type: 'ExtensionNotFound' } })
  t.match(missing.headers.get('x-openstack-request-id'), /^req-/)
})

t.test('the seed provider network and subnet, with Neutron fields (provider:* for admins only)', async (t) => {
  const net = await api('POST', '/v2.0/networks', { network: { name: 'provider', shared: true, 'router:external': true, 'provider:network_type': 'flat', 'provider:physical_network': 'provider', admin_state_up: true } })
  t.equal(net.status, 201)
  const n = net.body.network
  t.match(n, {
    name: 'provider', shared: true, 'router:external': true, 'provider:network_type': 'flat', 'provider:physical_network': 'provider', 'provider:segmentation_id': null,
    status: 'ACTIVE', admin_state_up: true, mtu: 1500, subnets: [], revision_number: 1, description: '', tags: [],
  })
  t.equal(n.project_id, adminProject)
  t.equal(n.tenant_id, adminProject)
  t.match(n.created_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
  const sub = await api('POST', '/v2.0/subnets', {
    subnet: { network_id: n.id, name: 'provider', ip_version: 4, cidr: '192.168.201.0/24', gateway_ip: '192.168.201.1', allocation_pools: [{ start: '192.168.201.200', end: '192.168.201.210' }], dns_nameservers: ['114.114.114.114'] },
  })
  t.equal(sub.status, 201)
  t.match(sub.body.subnet, {
    network_id: n.id, cidr: '192.168.201.0/24', ip_version: 4, gateway_ip: '192.168.201.1', allocation_pools: [{ start: '192.168.201.200', end: '192.168.201.210' }],
    dns_nameservers: ['114.114.114.114'], host_routes: [], enable_dhcp: true, ipv6_ra_mode: null, subnetpool_id: null,
  })
  t.same((await api('GET', `/v2.0/networks/${n.id}`)).body.network.subnets, [sub.body.subnet.id])
  // A member sees the shared network, without the provider attributes.
  const seen = await api('GET', `/v2.0/networks/${n.id}`, undefined, member.token)
  t.equal(seen.status, 200)
  t.notOk('provider:network_type' in seen.body.network)
  const overlap = await api('POST', '/v2.0/subnets', { subnet: { network_id: n.id, ip_version: 4, cidr: '192.168.201.128/25' } })
  t.equal(overlap.status, 400)
  t.match(overlap.body.NeutronError.message, /overlaps with another subnet/, "Neutron's words, which Tempest's create_subnet looks for")
  const noGw = await api('POST', '/v2.0/subnets', { subnet: { network_id: n.id, ip_version: 4, cidr: '10.9.0.0/24', gateway_ip: null } })
  t.equal(noGw.body.subnet.gateway_ip, null, 'gateway_ip null: no gateway')
  t.equal((await api('DELETE', `/v2.0/subnets/${noGw.body.subnet.id}`)).status, 204)
})

t.test('lists: filters, repeated keys, fields, sorting and pagination with links', async (t) => {
  const ids: string[] = []
  for (const name of ['pg-c', 'pg-a', 'pg-b']) ids.push((await api('POST', '/v2.0/networks', { network: { name } }, member.token)).body.network.id)
  let r = await api('GET', '/v2.0/networks?name=pg-a&name=pg-b&fields=name&fields=id', undefined, member.token)
  t.same(r.body.networks.map((x: any) => Object.keys(x).sort()), [['id', 'name'], ['id', 'name']])
  t.same(r.body.networks.map((x: any) => x.name).sort(), ['pg-a', 'pg-b'])
  r = await api('GET', '/v2.0/networks?router:external=True&fields=name', undefined, member.token)
  t.same(r.body.networks, [{ name: 'provider' }], 'boolean filter as the client sends it')
  r = await api('GET', `/v2.0/networks?shared=false&sort_key=name&sort_dir=desc&fields=name`, undefined, member.token)
  t.same(r.body.networks.map((x: any) => x.name), ['pg-c', 'pg-b', 'pg-a'])
  // Pagination: limit + marker, and the next link the SDK follows.
  r = await api('GET', '/v2.0/networks?shared=false&sort_key=name&limit=2', undefined, member.token)
  t.same(r.body.networks.map((x: any) => x.name), ['pg-a', 'pg-b'])
  const next = r.body.networks_links.find((l: any) => l.rel === 'next')
  t.ok(next, 'a next link')
  const page2 = await fetch(next.href, { headers: { 'x-auth-token': member.token } }).then((x) => x.json() as Promise<any>)
  t.same(page2.networks.map((x: any) => x.name), ['pg-c'])
  t.notOk(page2.networks_links?.some((l: any) => l.rel === 'next'), 'no next link on the last page')
  t.ok(page2.networks_links?.some((l: any) => l.rel === 'previous'))
  r = await api('GET', `/v2.0/networks/${ids[0]}?fields=id&fields=name&fields=mtu`, undefined, member.token)
  t.same(Object.keys(r.body.network).sort(), ['id', 'mtu', 'name'])
  // The Python list openstacksdk 0.101 sends as fields.
  r = await api('GET', `/v2.0/networks?name=pg-a&fields=${encodeURIComponent("['id', 'name']")}`, undefined, member.token)
  t.same(Object.keys(r.body.networks[0]).sort(), ['id', 'name'])
  r = await api('GET', '/v2.0/networks?name=pg-a&flavor=gold&fields=name', undefined, member.token)
  t.same(r.body.networks, [{ name: 'pg-a' }], 'a filter on an attribute networks lack is ignored')
  r = await api('GET', '/v2.0/networks?sort_dir=sideways&sort_key=name', undefined, member.token)
  t.equal(r.status, 400)
  // Scoping: the member's networks are not the admin project's, the admin sees all.
  const mine = (await api('GET', '/v2.0/networks?fields=id&fields=project_id', undefined, member.token)).body.networks
  t.ok(mine.every((x: any) => x.project_id === member.projectId || x.id !== undefined))
  const adminView = (await api('GET', `/v2.0/networks?project_id=${member.projectId}&fields=id`)).body.networks.map((x: any) => x.id)
  t.same(adminView.sort(), [...ids].sort())
  for (const id of ids) t.equal((await api('DELETE', `/v2.0/networks/${id}`, undefined, member.token)).status, 204)
})

t.test('bulk create is all or nothing', async (t) => {
  const ok = await api('POST', '/v2.0/networks', { networks: [{ name: 'bulk-1' }, { name: 'bulk-2' }] }, member.token)
  t.equal(ok.status, 201)
  t.same(ok.body.networks.map((x: any) => x.name), ['bulk-1', 'bulk-2'])
  const bad = await api('POST', '/v2.0/networks', { networks: [{ name: 'bulk-3' }, { name: 'bulk-4', color: 'red' }] }, member.token)
  t.equal(bad.status, 400)
  t.equal((await api('GET', '/v2.0/networks?name=bulk-3', undefined, member.token)).body.networks.length, 0, 'the first was undone')
  // Subnets in bulk too (Tempest's BulkNetworkOpsTest.test_bulk_create_delete_subnet, left to npm run test:tempest).
  const [n1, n2] = ok.body.networks
  const subs = await api('POST', '/v2.0/subnets', { subnets: [{ network_id: n1.id, ip_version: 4, cidr: '10.31.0.0/24' }, { network_id: n2.id, ip_version: 4, cidr: '10.32.0.0/24' }] }, member.token)
  t.equal(subs.status, 201, 'bulk subnets')
  t.match(subs.body.subnets, [{ network_id: n1.id, cidr: '10.31.0.0/24' }, { network_id: n2.id, cidr: '10.32.0.0/24' }])
  for (const x of subs.body.subnets) t.equal((await api('DELETE', `/v2.0/subnets/${x.id}`, undefined, member.token)).status, 204)
  for (const n of ok.body.networks) await api('DELETE', `/v2.0/networks/${n.id}`, undefined, member.token)
})

t.test('ports, floating IPs and their Neutron JSON; binding:host_id for admins only', async (t) => {
  const net = (await api('POST', '/v2.0/networks', { network: { name: 'priv' } }, member.token)).body.network
  const sub = (await api('POST', '/v2.0/subnets', { subnet: { network_id: net.id, ip_version: 4, cidr: '10.1.0.0/24' } }, member.token)).body.subnet
  const port = await api('POST', '/v2.0/ports', { port: { network_id: net.id, name: 'p1', fixed_ips: [{ subnet_id: sub.id, ip_address: '10.1.0.10' }] } }, member.token)
  t.equal(port.status, 201)
  const p = port.body.port
  t.match(p, { name: 'p1', network_id: net.id, fixed_ips: [{ subnet_id: sub.id, ip_address: '10.1.0.10' }], status: 'DOWN', admin_state_up: true, device_owner: '', device_id: '', mac_address: /^fa:16:3e(:[0-9a-f]{2}){3}$/ })
  t.equal(p.security_groups.length, 1, "the project's default group")
  t.notOk('binding:host_id' in p)
  t.equal((await api('GET', `/v2.0/ports/${p.id}`)).body.port['binding:host_id'], '')
  let r = await api('GET', `/v2.0/ports?fixed_ips=ip_address%3D10.1.0.10`, undefined, member.token)
  t.same(r.body.ports.map((x: any) => x.id), [p.id], 'fixed_ips=ip_address=… filter')
  r = await api('PUT', `/v2.0/ports/${p.id}`, { port: { name: 'p1b', security_groups: [] } }, member.token)
  t.match(r.body.port, { name: 'p1b', security_groups: [], revision_number: 2 })
  // Created with no security groups; with an address from the subnet's allocation pool (Tempest's
  // PortsTestJSON.test_create_port_with_no_securitygroups and test_create_port_in_allowed_allocation_pools,
  // left to npm run test:tempest: each spends 10 s in Tempest's subnet delete).
  const bare = await api('POST', '/v2.0/ports', { port: { network_id: net.id, name: 'p-nosg', security_groups: [] } }, member.token)
  t.equal(bare.status, 201)
  t.same(bare.body.port.security_groups, [], 'created with no security groups')
  t.equal((await api('DELETE', `/v2.0/ports/${bare.body.port.id}`, undefined, member.token)).status, 204)
  const poolNet = (await api('POST', '/v2.0/networks', { network: { name: 'pool' } }, member.token)).body.network
  const poolSub = (await api('POST', '/v2.0/subnets', { subnet: { network_id: poolNet.id, ip_version: 4, cidr: '10.33.0.0/24', allocation_pools: [{ start: '10.33.0.100', end: '10.33.0.110' }] } }, member.token)).body.subnet
  const pooled = await api('POST', '/v2.0/ports', { port: { network_id: poolNet.id } }, member.token)
  t.match(pooled.body.port.fixed_ips, [{ subnet_id: poolSub.id, ip_address: /^10\.33\.0\.1(0\d|10)$/ }], 'an address from the allocation pool')
  t.equal((await api('DELETE', `/v2.0/ports/${pooled.body.port.id}`, undefined, member.token)).status, 204)
  t.equal((await api('DELETE', `/v2.0/networks/${poolNet.id}`, undefined, member.token)).status, 204)
  r = await api('PUT', `/v2.0/ports/${p.id}`, { port: { mac_address: 'fa:16:3e:00:00:01' } }, member.token)
  t.equal(r.status, 400)
  t.match(r.body.NeutronError.message, /read-only attribute mac_address/)
  // A floating IP from the external provider network, associated with the port.
  const ext = (await api('GET', '/v2.0/networks?name=provider', undefined, member.token)).body.networks[0]
  const noRouter = await api('POST', '/v2.0/floatingips', { floatingip: { floating_network_id: ext.id, port_id: p.id } }, member.token)
  t.equal(noRouter.status, 404, 'no router joins the port\'s subnet to the external network')
  t.equal(noRouter.body.NeutronError.type, 'ExternalGatewayForFloatingIPNotFound')
  const router = (await api('POST', '/v2.0/routers', { router: { name: 'fip-router', external_gateway_info: { network_id: ext.id } } }, member.token)).body.router
  t.equal((await api('PUT', `/v2.0/routers/${router.id}/add_router_interface`, { subnet_id: sub.id }, member.token)).status, 200)
  const fip = await api('POST', '/v2.0/floatingips', { floatingip: { floating_network_id: ext.id, port_id: p.id } }, member.token)
  t.equal(fip.status, 201)
  t.match(fip.body.floatingip, { floating_network_id: ext.id, port_id: p.id, fixed_ip_address: '10.1.0.10', status: 'ACTIVE', router_id: router.id, floating_ip_address: /^192\.168\.201\.2\d\d$/ })
  r = await api('GET', `/v2.0/floatingips?floating_ip_address=${fip.body.floatingip.floating_ip_address}`, undefined, member.token)
  t.equal(r.body.floatingips.length, 1)
  r = await api('PUT', `/v2.0/floatingips/${fip.body.floatingip.id}`, { floatingip: { port_id: null } }, member.token)
  t.match(r.body.floatingip, { port_id: null, fixed_ip_address: null, status: 'DOWN', router_id: null })
  t.equal((await api('DELETE', `/v2.0/floatingips/${fip.body.floatingip.id}`, undefined, member.token)).status, 204)
  t.equal((await api('PUT', `/v2.0/routers/${router.id}/remove_router_interface`, { subnet_id: sub.id }, member.token)).status, 200)
  t.equal((await api('DELETE', `/v2.0/routers/${router.id}`, undefined, member.token)).status, 204)
  r = await api('DELETE', `/v2.0/networks/${net.id}`, undefined, member.token)
  t.equal(r.status, 409)
  t.equal(r.body.NeutronError.type, 'NetworkInUse')
  t.equal((await api('DELETE', `/v2.0/ports/${p.id}`, undefined, member.token)).status, 204)
  t.equal((await api('DELETE', `/v2.0/networks/${net.id}`, undefined, member.token)).status, 204)
  r = await api('GET', `/v2.0/subnets/${sub.id}`, undefined, member.token)
  t.equal(r.status, 404, "the network's subnets went with it")
})

t.test("deleting an external network releases its floating IPs that map to no port (Neutron's delete_disassociated_floatingips), in one transaction", async (t) => {
  const ext = (await api('POST', '/v2.0/networks', { network: { name: 'ext-del', 'router:external': true } })).body.network
  const sub = (await api('POST', '/v2.0/subnets', { subnet: { network_id: ext.id, ip_version: 4, cidr: '10.44.0.0/24', enable_dhcp: false } })).body.subnet
  const fip = (await api('POST', '/v2.0/floatingips', { floatingip: { floating_network_id: ext.id } })).body.floatingip
  t.match(fip, { floating_network_id: ext.id, port_id: null, status: 'DOWN' })
  const router = (await api('POST', '/v2.0/routers', { router: { name: 'ext-del-gw', external_gateway_info: { network_id: ext.id } } })).body.router
  let r = await api('DELETE', `/v2.0/networks/${ext.id}`)
  t.equal(r.status, 409, "the router's gateway port keeps it in use")
  t.equal(r.body.NeutronError.type, 'NetworkInUse')
  t.match(r.body.NeutronError.message, /network:router_gateway/)
  t.equal((await api('GET', `/v2.0/floatingips/${fip.id}`)).status, 200, 'a refused delete releases nothing')
  t.equal((await api('PUT', `/v2.0/routers/${router.id}`, { router: { external_gateway_info: {} } })).status, 200)
  t.equal((await api('DELETE', `/v2.0/networks/${ext.id}`)).status, 204)
  r = await api('GET', `/v2.0/floatingips/${fip.id}`)
  t.equal(r.status, 404, 'the unassociated floating IP went with its network')
  t.equal(r.body.NeutronError.type, 'FloatingIPNotFound')
  t.equal((await api('GET', `/v2.0/floatingips?floating_network_id=${ext.id}`)).body.floatingips.length, 0)
  t.equal((await api('GET', `/v2.0/subnets/${sub.id}`)).status, 404)
  t.equal((await api('DELETE', `/v2.0/routers/${router.id}`)).status, 204)
})

t.test('routers: CRUD, the gateway, add/remove_router_interface, routes, Neutron\'s errors', async (t) => {
  const ext = (await api('GET', '/v2.0/networks?name=provider', undefined, member.token)).body.networks[0]
  const net = (await api('POST', '/v2.0/networks', { network: { name: 'rtr-net' } }, member.token)).body.network
  const sub = (await api('POST', '/v2.0/subnets', { subnet: { network_id: net.id, ip_version: 4, cidr: '10.2.0.0/24' } }, member.token)).body.subnet
  let r = await api('POST', '/v2.0/routers', { router: { name: 'r1', admin_state_up: true } }, member.token)
  t.equal(r.status, 201)
  const router = r.body.router
  t.match(router, { name: 'r1', status: 'ACTIVE', admin_state_up: true, external_gateway_info: null, routes: [], project_id: member.projectId, tenant_id: member.projectId, revision_number: 1 })
  t.notOk('l3_agent_host' in router, 'which agent holds it is for admins')
  t.equal((await api('GET', `/v2.0/routers/${router.id}`)).body.router.l3_agent_host, null, 'an admin sees it (none: no gateway, no interface, no agent)')
  r = await api('POST', '/v2.0/routers', { router: { name: 'bad', distributed: true } }, member.token)
  t.equal(r.status, 400, 'no DVR')
  r = await api('PUT', `/v2.0/routers/${router.id}`, { router: { external_gateway_info: { network_id: net.id } } }, member.token)
  t.equal(r.status, 400)
  t.match(r.body.NeutronError.message, new RegExp(`Network ${net.id} is not a valid external network`))
  r = await api('PUT', `/v2.0/routers/${router.id}`, { router: { external_gateway_info: { network_id: ext.id } } }, member.token)
  t.equal(r.status, 200)
  t.match(r.body.router.external_gateway_info, { network_id: ext.id, enable_snat: true, external_fixed_ips: [{ ip_address: /^192\.168\.201\.2\d\d$/ }] })

  r = await api('PUT', `/v2.0/routers/${router.id}/add_router_interface`, { subnet_id: sub.id }, member.token)
  t.equal(r.status, 200)
  t.match(r.body, { id: router.id, subnet_id: sub.id, subnet_ids: [sub.id], network_id: net.id, tenant_id: member.projectId, port_id: /^[0-9a-f-]{36}$/ })
  const portId = r.body.port_id
  t.match((await api('GET', `/v2.0/ports/${portId}`, undefined, member.token)).body.port, { device_owner: 'network:router_interface', device_id: router.id, fixed_ips: [{ ip_address: '10.2.0.1' }] })
  t.same((await api('GET', `/v2.0/ports?device_id=${router.id}&device_owner=network:router_interface`, undefined, member.token)).body.ports.map((p: any) => p.id), [portId])
  r = await api('DELETE', `/v2.0/ports/${portId}`, undefined, member.token)
  t.equal(r.status, 409)
  t.equal(r.body.NeutronError.type, 'ServicePortInUse')
  r = await api('DELETE', `/v2.0/routers/${router.id}`, undefined, member.token)
  t.equal(r.status, 409)
  t.equal(r.body.NeutronError.type, 'RouterInUse')
  t.match(r.body.NeutronError.message, new RegExp(portId))

  r = await api('PUT', `/v2.0/routers/${router.id}`, { router: { routes: [{ destination: '172.30.0.0/16', nexthop: '10.2.0.9' }] } }, member.token)
  t.same(r.body.router.routes, [{ destination: '172.30.0.0/16', nexthop: '10.2.0.9' }])
  r = await api('PUT', `/v2.0/routers/${router.id}`, { router: { routes: [{ destination: '172.31.0.0/16', nexthop: '10.3.0.9' }] } }, member.token)
  t.equal(r.status, 400)
  t.match(r.body.NeutronError.message, /the nexthop is not connected with router/)
  r = await api('PUT', `/v2.0/routers/${router.id}/remove_router_interface`, { subnet_id: sub.id }, member.token)
  t.equal(r.status, 409)
  t.equal(r.body.NeutronError.type, 'RouterInterfaceInUseByRoute')
  t.equal((await api('PUT', `/v2.0/routers/${router.id}`, { router: { routes: null } }, member.token)).body.router.routes.length, 0, 'routes: null clears them')

  r = await api('PUT', `/v2.0/routers/${router.id}/remove_router_interface`, { port_id: '00000000-0000-4000-8000-000000000000' }, member.token)
  t.equal(r.status, 404)
  t.equal(r.body.NeutronError.type, 'RouterInterfaceNotFound')
  r = await api('PUT', `/v2.0/routers/${router.id}/remove_router_interface`, { subnet_id: sub.id }, member.token)
  t.equal(r.status, 200)
  t.match(r.body, { id: router.id, port_id: portId, subnet_id: sub.id })
  r = await api('PUT', `/v2.0/routers/${router.id}`, { router: { external_gateway_info: {} } }, member.token)
  t.equal(r.body.router.external_gateway_info, null, '{} clears the gateway (openstackclient\'s unset)')
  r = await api('GET', `/v2.0/routers?name=r1`, undefined, member.token)
  t.same(r.body.routers.map((x: any) => x.id), [router.id])
  t.equal((await api('GET', '/v2.0/routers', undefined, s.adminToken)).body.routers.some((x: any) => x.id === router.id), true)
  t.match((await api('GET', `/v2.0/quotas/${member.projectId}/details.json`, undefined, s.adminToken)).body.quota.router, { limit: 10, used: 1 })
  t.equal((await api('DELETE', `/v2.0/routers/${router.id}`, undefined, member.token)).status, 204)
  r = await api('GET', `/v2.0/routers/${router.id}`, undefined, member.token)
  t.equal(r.status, 404)
  t.equal(r.body.NeutronError.type, 'RouterNotFound')
  await api('DELETE', `/v2.0/networks/${net.id}`, undefined, member.token)
})

t.test('security groups and rules', async (t) => {
  const g = await api('POST', '/v2.0/security-groups', { security_group: { name: 'web', description: 'web servers' } }, member.token)
  t.equal(g.status, 201)
  t.match(g.body.security_group, { name: 'web', description: 'web servers', stateful: true, project_id: member.projectId })
  t.same(g.body.security_group.security_group_rules.map((r: any) => `${r.direction}/${r.ethertype}`).sort(), ['egress/IPv4', 'egress/IPv6'])
  const rule = await api('POST', '/v2.0/security-group-rules', { security_group_rule: { security_group_id: g.body.security_group.id, direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_ip_prefix: '0.0.0.0/0' } }, member.token)
  t.equal(rule.status, 201)
  t.match(rule.body.security_group_rule, { protocol: 'tcp', port_range_min: 22, port_range_max: 22, remote_group_id: null, remote_ip_prefix: null, security_group_id: g.body.security_group.id })
  const narrow = await api('POST', '/v2.0/security-group-rules', { security_group_rule: { security_group_id: g.body.security_group.id, direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 80, port_range_max: 80, remote_ip_prefix: '10.100.0.0/16' } }, member.token)
  t.equal(narrow.body.security_group_rule.remote_ip_prefix, '10.100.0.0/16')
  const dup = await api('POST', '/v2.0/security-group-rules', { security_group_rule: { security_group_id: g.body.security_group.id, direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', port_range_min: 22, port_range_max: 22 } }, member.token)
  t.equal(dup.status, 409)
  t.equal(dup.body.NeutronError.type, 'SecurityGroupRuleExists')
  const num = await api('POST', '/v2.0/security-group-rules', { security_group_rule: { security_group_id: g.body.security_group.id, direction: 'ingress', protocol: 17 } }, member.token)
  t.equal(num.body.security_group_rule.protocol, '17', 'a protocol number')
  t.equal((await api('GET', `/v2.0/security-group-rules/${rule.body.security_group_rule.id}`, undefined, member.token)).body.security_group_rule.id, rule.body.security_group_rule.id)
  t.equal((await api('GET', `/v2.0/security-group-rules/${rule.body.security_group_rule.id}`, undefined, s.adminToken)).status, 200)
  let r = await api('GET', `/v2.0/security-group-rules?security_group_id=${g.body.security_group.id}&direction=ingress`, undefined, member.token)
  t.equal(r.body.security_group_rules.length, 3)
  // Port ranges in Neutron's words (Tempest's negative tests match them).
  const gid = g.body.security_group.id
  for (const [protocol, min, max, msg] of [
    ['tcp', -16, 80, 'Invalid value for port -16'], ['tcp', 80, 79, 'port_range_min must be <= port_range_max'], ['tcp', 80, 65536, 'Invalid value for port 65536'],
    ['tcp', null, 6, 'port_range_min must be <= port_range_max'], ['icmp', 1, 256, 'Invalid value for ICMP code'], ['icmp', -1, 25, 'Invalid value for ICMP type'],
    ['icmp', null, 6, 'ICMP type (port-range-min) is missing'], ['icmp', 300, 1, 'Invalid value for ICMP type'],
  ] as const) {
    const bad = await api('POST', '/v2.0/security-group-rules', { security_group_rule: { security_group_id: gid, direction: 'ingress', ethertype: 'IPv4', protocol, port_range_min: min, port_range_max: max } }, member.token)
    t.equal(bad.status, 400, `${protocol} ${min}-${max}`)
    t.match(bad.body.NeutronError.message, msg)
  }
  const family = await api('POST', '/v2.0/security-group-rules', { security_group_rule: { security_group_id: gid, direction: 'ingress', ethertype: 'IPv6', protocol: 'tcp', remote_ip_prefix: '10.100.0.0/16' } }, member.token)
  t.equal(family.status, 400)
  t.match(family.body.NeutronError.message, /^Conflicting value ethertype IPv6 for CIDR 10\.100\.0\.0\/16/)
  r = await api('POST', '/v2.0/security-groups', { security_group: { name: 'default' } }, member.token)
  t.equal(r.status, 409, 'a second default group')
  r = await api('POST', '/v2.0/security-group-rules', { security_group_rule: { security_group_id: '00000000-0000-4000-8000-000000000000', direction: 'ingress' } }, member.token)
  t.equal(r.status, 404)
  t.equal(r.body.NeutronError.type, 'SecurityGroupNotFound')
  t.equal((await api('DELETE', `/v2.0/security-group-rules/${rule.body.security_group_rule.id}`, undefined, member.token)).status, 204)
  t.equal((await api('DELETE', `/v2.0/security-groups/${g.body.security_group.id}`, undefined, member.token)).status, 204)
})

t.test("`?name=default` without a project answers the caller's own default group, even for an admin who sees many", async (t) => {
  // The member's project has its default group (made on first use above); so does the admin's.
  const all = (await api('GET', '/v2.0/security-groups?fields=name&fields=project_id')).body.security_groups.filter((g: any) => g.name === 'default')
  t.ok(all.length >= 2, 'the admin sees several default groups in a plain listing')
  const r = await api('GET', '/v2.0/security-groups?name=default')
  t.equal(r.body.security_groups.length, 1)
  t.equal(r.body.security_groups[0].project_id, adminProject)
  const theirs = await api('GET', `/v2.0/security-groups?name=default&project_id=${member.projectId}`)
  t.same(theirs.body.security_groups.map((g: any) => g.project_id), [member.projectId], 'a named project still wins')
})

t.test("Neutron's errors: types, unknown attributes, bad values, policy, quota", async (t) => {
  let r = await api('GET', '/v2.0/networks/00000000-0000-4000-8000-000000000000')
  t.equal(r.status, 404)
  t.match(r.body, { NeutronError: { type: 'NetworkNotFound', message: /not found/, detail: '' } })
  r = await api('GET', '/v2.0/ports/nope')
  t.equal(r.body.NeutronError.type, 'PortNotFound')
  r = await api('POST', '/v2.0/ports', { port: { network_id: '00000000-0000-4000-8000-000000000000' } })
  t.equal(r.status, 404)
  t.equal(r.body.NeutronError.type, 'NetworkNotFound')
  r = await api('POST', '/v2.0/networks', { network: { name: 'x', colour: 'red' } })
  t.equal(r.status, 400)
  t.match(r.body.NeutronError, { type: 'BadRequest', message: "Unrecognized attribute(s) 'colour'" })
  r = await api('POST', '/v2.0/networks', { network: { name: 'x', admin_state_up: 'maybe' } })
  t.equal(r.status, 400)
  t.match(r.body.NeutronError.message, /admin_state_up/)
  r = await api('POST', '/v2.0/networks', { network: { name: 'x', port_security_enabled: false } })
  t.equal(r.status, 400, 'a Neutron attribute Strato cannot honour')
  r = await api('POST', '/v2.0/networks', { net: {} })
  t.equal(r.status, 400)
  r = await api('POST', '/v2.0/networks', 'name=x', s.adminToken, { 'content-type': 'text/plain' })
  t.equal(r.status, 415)
  r = await api('POST', '/v2.0/networks', { network: { name: 'x', shared: true } }, member.token)
  t.equal(r.status, 403, 'shared is for admins')
  r = await api('POST', '/v2.0/networks', { network: { name: 'x', project_id: adminProject } }, member.token)
  t.equal(r.status, 403, "a member cannot create in another project")
  r = await api('GET', '/v2.0/networks', undefined, 'not-a-token')
  t.equal(r.status, 401)
  t.equal(r.body.NeutronError.type, 'NotAuthorized')
  t.equal((await api('GET', '/v2.0/networks')).body.networks.filter((n: any) => n.name === 'x').length, 0, 'nothing was made')
  // Quotas: Neutron's names; a full quota is 409 OverQuota.
  r = await api('PUT', `/v2.0/quotas/${member.projectId}`, { quota: { network: 1 } })
  t.equal(r.status, 200)
  t.match(r.body.quota, { network: 1, subnet: 100, port: 500, floatingip: 50, security_group: 10, security_group_rule: 100 })
  t.equal((await api('PUT', `/v2.0/quotas/${member.projectId}`, { quota: { network: 5 } }, member.token)).status, 403, 'only admins set quotas')
  t.same((await api('GET', '/v2.0/quotas')).body.quotas.map((q: any) => [q.project_id, q.network]), [[member.projectId, 1]], 'projects with other than default quotas')
  t.equal((await api('GET', '/v2.0/quotas', undefined, member.token)).status, 403)
  t.same((await api('GET', '/v2.0/quotas/tenant', undefined, member.token)).body, { tenant: { tenant_id: member.projectId } })
  t.equal((await api('POST', '/v2.0/networks', { network: { name: 'q1' } }, member.token)).status, 201)
  r = await api('POST', '/v2.0/networks', { network: { name: 'q2' } }, member.token)
  t.equal(r.status, 409)
  t.equal(r.body.NeutronError.type, 'OverQuota')
  t.match(r.body.NeutronError.message, /^Quota exceeded for resources: \['network'\]/)
  r = await api('GET', `/v2.0/quotas/${member.projectId}/details`, undefined, member.token)
  t.same(r.body.quota.network, { limit: 1, used: 1, reserved: 0 })
  t.same((await api('GET', `/v2.0/quotas/${member.projectId}/details.json`, undefined, member.token)).body, r.body, 'with the .json suffix Tempest sends')
  t.equal((await api('DELETE', `/v2.0/quotas/${member.projectId}`)).status, 204)
  t.equal((await api('GET', `/v2.0/quotas/${member.projectId}`, undefined, member.token)).body.quota.network, 100)
  t.same((await api('GET', '/v2.0/quotas')).body.quotas, [], 'reset: back to the defaults')
  t.equal((await api('GET', `/v2.0/quotas/${member.projectId}/default`)).body.quota.network, 100)
})
