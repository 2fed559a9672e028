// Networks and subnets through the real gRPC server (Neutron semantics).
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, failure, fieldOf, status } from '../../helpers/grpc.js'
import type { ListNetworksResponse, ListSubnetsResponse, Network, Port, Subnet } from '../../../proto/gen/strato/network/v1/network.js'
import type { Project, Role, User } from '../../../proto/gen/strato/identity/v1/identity.js'
import { member, netClients, tenant, type NetClients, type Tenant } from './fixtures.js'

let s: TestController
let c: NetClients
let demo: Tenant
let other: Tenant
let provider: { id: string }

t.before(async () => {
  s = await startController({ network: { physicalNetworks: ['provider', 'physnet2'], vlanRanges: { physnet2: [100, 102] } } })
  c = netClients(s.address)
  demo = await tenant(s, 'demo')
  other = await tenant(s, 'other')
})
t.teardown(async () => {
  c.close()
  await s.close()
})

const subnetCount = async () => (await call<ListSubnetsResponse>(c.subnets, 'listSubnets', {}, s.adminToken)).subnets.length

t.test('the seed: network create --share --external --provider-physical-network provider --provider-network-type flat provider', async (t) => {
  const n = await call<Network>(c.networks, 'createNetwork', { name: 'provider', shared: true, routerExternal: true, providerPhysicalNetwork: 'provider', providerNetworkType: 'flat' }, s.adminToken)
  provider = n
  t.match(n, {
    name: 'provider', shared: true, routerExternal: true, providerNetworkType: 'flat', providerPhysicalNetwork: 'provider', status: 'ACTIVE',
    adminStateUp: true, mtu: 1500, subnets: [], portSecurityEnabled: true, revisionNumber: 1, description: '',
  })
  t.match(n.id, /^[0-9a-f-]{36}$/)
  t.equal(n.providerSegmentationId, undefined, 'a flat network has no segmentation id')
  const adminProject = await call<Project>(s.clients.projects, 'getProject', { name: 'admin', domainId: 'default' }, s.adminToken)
  t.equal(n.projectId, adminProject.id, 'owned by the admin project')
  t.ok(n.createdAt instanceof Date && n.updatedAt instanceof Date)

  const again = await failure(call(c.networks, 'createNetwork', { name: 'provider2', providerPhysicalNetwork: 'provider', providerNetworkType: 'flat' }, s.adminToken))
  t.equal(again.code, status.ABORTED, 'one flat network per physical network (Neutron 409)')
  t.equal(fieldOf(again), 'provider_physical_network')
  t.match(again.details, /already used by flat network/)
})

t.test('the seed: subnet create --network provider --allocation-pool ... --dns-nameserver ... --gateway ... --subnet-range 192.168.201.0/24 provider', async (t) => {
  const sn = await call<Subnet>(c.subnets, 'createSubnet', {
    name: 'provider', networkId: provider.id, allocationPools: [{ start: '192.168.201.200', end: '192.168.201.210' }],
    dnsNameservers: ['114.114.114.114'], gatewayIp: '192.168.201.1', cidr: '192.168.201.0/24', ipVersion: 4,
  }, s.adminToken)
  t.match(sn, {
    name: 'provider', networkId: provider.id, ipVersion: 4, cidr: '192.168.201.0/24', gatewayIp: '192.168.201.1',
    allocationPools: [{ start: '192.168.201.200', end: '192.168.201.210' }], dnsNameservers: ['114.114.114.114'], hostRoutes: [],
    enableDhcp: true, description: '', revisionNumber: 1,
  })
  t.match(sn.id, /^[0-9a-f-]{36}$/)
  t.ok(sn.createdAt instanceof Date)
  const n = await call<Network>(c.networks, 'getNetwork', { name: 'provider' }, demo.token)
  t.same(n.subnets, [sn.id], 'the network lists its subnet; a member finds the shared network by name')
  t.equal((await call<Subnet>(c.subnets, 'getSubnet', { id: sn.id }, demo.token)).cidr, '192.168.201.0/24', 'subnets of a shared network are visible')
  const listed = await call<ListNetworksResponse>(c.networks, 'listNetworks', {}, demo.token)
  t.same(listed.networks.map((x) => x.name), ['provider'], "openstack network list: the provider network is there for the demo project")
})

t.test('subnet defaults: gateway first address, pools the rest; IPv6 normalised; no gateway', async (t) => {
  const net = await call<Network>(c.networks, 'createNetwork', { name: 'defaults' }, demo.token)
  t.match(net, { providerNetworkType: 'local', providerPhysicalNetwork: '', shared: false, routerExternal: false, projectId: demo.projectId })
  const v4 = await call<Subnet>(c.subnets, 'createSubnet', { networkId: net.id, cidr: '10.1.0.0/24' }, demo.token)
  t.match(v4, { ipVersion: 4, gatewayIp: '10.1.0.1', allocationPools: [{ start: '10.1.0.2', end: '10.1.0.254' }], enableDhcp: true })
  const mid = await call<Subnet>(c.subnets, 'createSubnet', { networkId: net.id, cidr: '10.2.0.0/24', gatewayIp: '10.2.0.100', enableDhcp: false }, demo.token)
  t.same(mid.allocationPools, [{ start: '10.2.0.1', end: '10.2.0.99' }, { start: '10.2.0.101', end: '10.2.0.254' }], 'pools skip a gateway in the middle')
  t.equal(mid.enableDhcp, false)
  const none = await call<Subnet>(c.subnets, 'createSubnet', { networkId: net.id, cidr: '10.3.0.0/28', noGateway: true }, demo.token)
  t.match(none, { gatewayIp: '', allocationPools: [{ start: '10.3.0.1', end: '10.3.0.14' }] })
  const v6 = await call<Subnet>(c.subnets, 'createSubnet', { networkId: net.id, cidr: '2001:DB8:0:0::/64', ipVersion: 6, dnsNameservers: ['2001:4860:4860:0:0:0:0:8888'], hostRoutes: [{ destination: '2001:db8:ffff::/48', nexthop: '2001:db8::fe' }] }, demo.token)
  t.match(v6, {
    ipVersion: 6, cidr: '2001:db8::/64', gatewayIp: '2001:db8::1', allocationPools: [{ start: '2001:db8::2', end: '2001:db8::ffff:ffff:ffff:ffff' }],
    dnsNameservers: ['2001:4860:4860::8888'], hostRoutes: [{ destination: '2001:db8:ffff::/48', nexthop: '2001:db8::fe' }],
  })
  const upd = await call<Subnet>(c.subnets, 'updateSubnet', { id: v4.id, name: 'renamed', dnsNameservers: { addresses: ['8.8.8.8', '8.8.4.4'] }, allocationPools: { pools: [{ start: '10.1.0.10', end: '10.1.0.20' }] } }, demo.token)
  t.match(upd, { name: 'renamed', dnsNameservers: ['8.8.8.8', '8.8.4.4'], allocationPools: [{ start: '10.1.0.10', end: '10.1.0.20' }], revisionNumber: 2 })
  const gw = await failure(call(c.subnets, 'updateSubnet', { id: v4.id, gatewayIp: '10.1.0.15' }, demo.token))
  t.equal(gw.code, status.ABORTED, 'moving the gateway into a pool conflicts')
  t.equal(fieldOf(gw), 'gateway_ip')
})

t.test('bad CIDRs, pools, gateways, nameservers and routes: INVALID_ARGUMENT (or CONFLICT) naming the field, nothing stored', async (t) => {
  const net = await call<Network>(c.networks, 'createNetwork', { name: 'bad-subnets' }, demo.token)
  await call(c.subnets, 'createSubnet', { networkId: net.id, cidr: '172.16.0.0/16' }, demo.token)
  const before = await subnetCount()
  const base = { networkId: net.id, cidr: '10.9.0.0/24' }
  const cases: Array<[string, object, number, string, RegExp]> = [
    ['host bits set', { ...base, cidr: '10.9.0.1/24' }, status.INVALID_ARGUMENT, 'cidr', /host bits set; did you mean 10\.9\.0\.0\/24/],
    ['IPv6 host bits', { ...base, cidr: '2001:db8::1/64' }, status.INVALID_ARGUMENT, 'cidr', /did you mean 2001:db8::\/64/],
    ['prefix too long', { ...base, cidr: '10.9.0.0/33' }, status.INVALID_ARGUMENT, 'cidr', /invalid prefix length '33'/],
    ['prefix not a number', { ...base, cidr: '10.9.0.0/x' }, status.INVALID_ARGUMENT, 'cidr', /invalid prefix length/],
    ['no prefix', { ...base, cidr: '10.9.0.0' }, status.INVALID_ARGUMENT, 'cidr', /prefix length is missing/],
    ['not an address', { ...base, cidr: '10.9.0.300/24' }, status.INVALID_ARGUMENT, 'cidr', /not an IP address/],
    ['empty', { ...base, cidr: '' }, status.INVALID_ARGUMENT, 'cidr', /must not be empty/],
    ['prefix 0', { ...base, cidr: '0.0.0.0/0' }, status.INVALID_ARGUMENT, 'cidr', /prefix length of 0/],
    ['no room', { ...base, cidr: '10.9.0.0/31' }, status.INVALID_ARGUMENT, 'cidr', /no addresses to allocate/],
    ['version mismatch', { ...base, ipVersion: 6 }, status.INVALID_ARGUMENT, 'ip_version', /ip_version is 6 but cidr 10\.9\.0\.0\/24 is IPv4/],
    ['bad version', { ...base, ipVersion: 5 }, status.INVALID_ARGUMENT, 'ip_version', /4 or 6/],
    ['overlaps another subnet of the network', { ...base, cidr: '172.16.5.0/24' }, status.INVALID_ARGUMENT, 'cidr', /overlaps subnet/],
    ['pool start after end', { ...base, allocationPools: [{ start: '10.9.0.50', end: '10.9.0.40' }] }, status.INVALID_ARGUMENT, 'allocation_pools[0]', /starts after it ends/],
    ['pool outside the CIDR', { ...base, allocationPools: [{ start: '10.9.0.10', end: '10.9.1.10' }] }, status.INVALID_ARGUMENT, 'allocation_pools[0]', /outside the usable addresses/],
    ['pool holds the broadcast address', { ...base, allocationPools: [{ start: '10.9.0.10', end: '10.9.0.255' }] }, status.INVALID_ARGUMENT, 'allocation_pools[0]', /outside/],
    ['overlapping pools', { ...base, allocationPools: [{ start: '10.9.0.10', end: '10.9.0.20' }, { start: '10.9.0.20', end: '10.9.0.30' }] }, status.INVALID_ARGUMENT, 'allocation_pools[1]', /overlap/],
    ['pool address of the wrong family', { ...base, allocationPools: [{ start: '2001:db8::1', end: '10.9.0.30' }] }, status.INVALID_ARGUMENT, 'allocation_pools[0].start', /IPv4 is required/],
    ['pool address garbage', { ...base, allocationPools: [{ start: '10.9.0.1', end: 'ten' }] }, status.INVALID_ARGUMENT, 'allocation_pools[0].end', /not an IPv4 or IPv6 address/],
    ['gateway inside a pool', { ...base, gatewayIp: '10.9.0.15', allocationPools: [{ start: '10.9.0.10', end: '10.9.0.20' }] }, status.ABORTED, 'gateway_ip', /inside allocation pool 10\.9\.0\.10-10\.9\.0\.20/],
    ['gateway outside the CIDR', { ...base, gatewayIp: '10.8.0.1' }, status.INVALID_ARGUMENT, 'gateway_ip', /not a usable address/],
    ['gateway and no_gateway', { ...base, gatewayIp: '10.9.0.1', noGateway: true }, status.INVALID_ARGUMENT, 'gateway_ip', /not both/],
    ['bad nameserver', { ...base, dnsNameservers: ['8.8.8.8', 'dns.google'] }, status.INVALID_ARGUMENT, 'dns_nameservers[1]', /not an IPv4 or IPv6 address/],
    ['duplicate nameserver', { ...base, dnsNameservers: ['8.8.8.8', '8.8.8.8'] }, status.INVALID_ARGUMENT, 'dns_nameservers[1]', /listed twice/],
    ['bad route', { ...base, hostRoutes: [{ destination: '10.10.0.0/16', nexthop: 'x' }] }, status.INVALID_ARGUMENT, 'host_routes[0].nexthop', /not an IPv4/],
    ['route of the other family', { ...base, hostRoutes: [{ destination: '::/0', nexthop: '10.9.0.1' }] }, status.INVALID_ARGUMENT, 'host_routes[0].destination', /not IPv4/],
    ['unknown network', { ...base, networkId: 'nope' }, status.NOT_FOUND, 'network_id', /network nope not found/],
  ]
  for (const [what, req, code, field, msg] of cases) {
    const e = await failure(call(c.subnets, 'createSubnet', req, demo.token))
    t.equal(e.code, code, `${what}: code`)
    t.equal(fieldOf(e), field, `${what}: names ${field}`)
    t.match(e.details, msg, `${what}: says why`)
  }
  t.equal(await subnetCount(), before, 'nothing was stored')
  t.ok(await call(c.subnets, 'createSubnet', { networkId: (await call<Network>(c.networks, 'createNetwork', { name: 'elsewhere' }, demo.token)).id, cidr: '172.16.5.0/24' }, demo.token), 'the same range on another network is fine')
})

t.test('provider attributes: admin only; flat, vlan (ranges from config, auto-allocated, unique), local', async (t) => {
  for (const [field, req] of [
    ['shared', { shared: true }],
    ['router_external', { routerExternal: true }],
    ['provider_network_type', { providerNetworkType: 'vlan' }],
    ['provider_physical_network', { providerPhysicalNetwork: 'physnet2' }],
    ['provider_segmentation_id', { providerSegmentationId: 100 }],
  ] as const) {
    const e = await failure(call(c.networks, 'createNetwork', { name: 'nope', ...req }, demo.token))
    t.equal(e.code, status.PERMISSION_DENIED, `a member may not set ${field}`)
    t.equal(fieldOf(e), field)
  }
  const v1 = await call<Network>(c.networks, 'createNetwork', { name: 'vlan-a', providerNetworkType: 'vlan', providerPhysicalNetwork: 'physnet2' }, s.adminToken)
  t.match(v1, { providerNetworkType: 'vlan', providerPhysicalNetwork: 'physnet2', providerSegmentationId: 100 })
  const v2 = await call<Network>(c.networks, 'createNetwork', { name: 'vlan-c', providerNetworkType: 'vlan', providerPhysicalNetwork: 'physnet2', providerSegmentationId: 102 }, s.adminToken)
  t.equal(v2.providerSegmentationId, 102)
  const v3 = await call<Network>(c.networks, 'createNetwork', { name: 'vlan-b', providerNetworkType: 'vlan' }, s.adminToken)
  t.match(v3, { providerPhysicalNetwork: 'physnet2', providerSegmentationId: 101 }, 'the lowest free VLAN of the configured range')
  const full = await failure(call(c.networks, 'createNetwork', { name: 'vlan-d', providerNetworkType: 'vlan', providerPhysicalNetwork: 'physnet2' }, s.adminToken))
  t.equal(full.code, status.RESOURCE_EXHAUSTED)
  t.match(full.details, /no free VLAN id on physical network 'physnet2' \(range 100-102/)
  const cases: Array<[object, number, string]> = [
    [{ providerNetworkType: 'vlan', providerPhysicalNetwork: 'physnet2', providerSegmentationId: 100 }, status.ABORTED, 'provider_segmentation_id'],
    [{ providerNetworkType: 'vlan', providerPhysicalNetwork: 'physnet2', providerSegmentationId: 4000 }, status.INVALID_ARGUMENT, 'provider_segmentation_id'],
    [{ providerNetworkType: 'vlan', providerPhysicalNetwork: 'provider' }, status.INVALID_ARGUMENT, 'provider_physical_network'],
    [{ providerNetworkType: 'flat', providerPhysicalNetwork: 'nowhere' }, status.INVALID_ARGUMENT, 'provider_physical_network'],
    [{ providerNetworkType: 'flat' }, status.INVALID_ARGUMENT, 'provider_physical_network'],
    [{ providerNetworkType: 'flat', providerPhysicalNetwork: 'physnet2', providerSegmentationId: 5 }, status.INVALID_ARGUMENT, 'provider_segmentation_id'],
    [{ providerNetworkType: 'local', providerPhysicalNetwork: 'physnet2' }, status.INVALID_ARGUMENT, 'provider_physical_network'],
    [{ providerNetworkType: 'vxlan' }, status.INVALID_ARGUMENT, 'provider_network_type'],
    [{ providerPhysicalNetwork: 'physnet2' }, status.INVALID_ARGUMENT, 'provider_network_type'],
  ]
  const count = (await call<ListNetworksResponse>(c.networks, 'listNetworks', {}, s.adminToken)).networks.length
  for (const [req, code, field] of cases) {
    const e = await failure(call(c.networks, 'createNetwork', { name: 'bad', ...req }, s.adminToken))
    t.equal(e.code, code, JSON.stringify(req))
    t.equal(fieldOf(e), field, `${JSON.stringify(req)} names ${field}`)
  }
  t.equal((await call<ListNetworksResponse>(c.networks, 'listNetworks', {}, s.adminToken)).networks.length, count, 'nothing was created')
  await call(c.networks, 'deleteNetwork', { id: v1.id }, s.adminToken)
  t.equal((await call<Network>(c.networks, 'createNetwork', { name: 'vlan-e', providerNetworkType: 'vlan' }, s.adminToken)).providerSegmentationId, 100, 'a deleted network frees its VLAN')
})

t.test('visibility: private networks stay in their project; shared ones reach everyone, across domains too', async (t) => {
  const mine = await call<Network>(c.networks, 'createNetwork', { name: 'demo-private' }, demo.token)
  const sn = await call<Subnet>(c.subnets, 'createSubnet', { networkId: mine.id, cidr: '10.50.0.0/24' }, demo.token)
  const names = async (token: string) => (await call<ListNetworksResponse>(c.networks, 'listNetworks', {}, token)).networks.map((n) => n.name)
  t.notOk((await names(other.token)).includes('demo-private'), 'another project does not list it')
  t.ok((await names(other.token)).includes('provider'), 'but lists the shared provider network')
  t.ok((await names(s.adminToken)).includes('demo-private'), 'admins see everything')
  // One at a time: started together, a refusal could arrive before its turn to be awaited (an unhandled rejection).
  for (const [what, p] of [
    ['get network', () => call(c.networks, 'getNetwork', { id: mine.id }, other.token)],
    ['get network by name', () => call(c.networks, 'getNetwork', { name: 'demo-private' }, other.token)],
    ['get subnet', () => call(c.subnets, 'getSubnet', { id: sn.id }, other.token)],
    ['update network', () => call(c.networks, 'updateNetwork', { id: mine.id, name: 'stolen' }, other.token)],
    ['delete network', () => call(c.networks, 'deleteNetwork', { id: mine.id }, other.token)],
    ['subnet on it', () => call(c.subnets, 'createSubnet', { networkId: mine.id, cidr: '10.51.0.0/24' }, other.token)],
    ['port on it', () => call(c.ports, 'createPort', { networkId: mine.id }, other.token)],
  ] as const) t.equal((await failure(p())).code, status.NOT_FOUND, `${what}: invisible to another project`)
  t.notOk((await call<ListSubnetsResponse>(c.subnets, 'listSubnets', {}, other.token)).subnets.some((x) => x.id === sn.id))

  const e = await failure(call(c.networks, 'updateNetwork', { id: provider.id, name: 'mine-now' }, demo.token))
  t.equal(e.code, status.PERMISSION_DENIED, 'a shared network is visible but not changeable by others')
  t.equal((await failure(call(c.subnets, 'createSubnet', { networkId: provider.id, cidr: '10.60.0.0/24' }, demo.token))).code, status.PERMISSION_DENIED, 'nor can they add subnets to it')
  t.equal((await failure(call(c.networks, 'updateNetwork', { id: mine.id, shared: true }, demo.token))).code, status.PERMISSION_DENIED, 'only admins share')

  const port = await call<Port>(c.ports, 'createPort', { networkId: provider.id, name: 'from-other' }, other.token)
  t.equal(port.projectId, other.projectId, 'a shared network is usable from another project: the port is that project\'s')
  t.match(port.fixedIps, [{ ipAddress: '192.168.201.200' }])
  await call(c.ports, 'deletePort', { id: port.id }, other.token)

  const far = await tenant(s, 'far', { domain: 'elsewhere' })
  const farNames = await names(far.token)
  t.ok(farNames.includes('provider'), 'an admin-shared network crosses the domain boundary')
  t.notOk(farNames.includes('demo-private'), 'nothing else does')
  t.equal((await failure(call(c.networks, 'getNetwork', { id: mine.id }, far.token))).code, status.NOT_FOUND)

  const reader = await member(s, 'demo-reader', demo.projectId, 'demo', 'reader')
  t.ok((await names(reader.token)).includes('demo-private'), 'a reader of the project sees its networks')
  t.equal((await call<Network>(c.networks, 'getNetwork', { id: mine.id }, reader.token)).id, mine.id)
  t.equal((await failure(call(c.networks, 'createNetwork', { name: 'r' }, reader.token))).code, status.PERMISSION_DENIED, 'but readers only read')
  t.equal((await failure(call(c.networks, 'deleteNetwork', { id: mine.id }, reader.token))).code, status.PERMISSION_DENIED)
  t.equal((await failure(call(c.networks, 'createNetwork', { name: 'for-other', projectId: other.projectId }, demo.token))).code, status.PERMISSION_DENIED, 'members create only in their own project')
  const forOther = await call<Network>(c.networks, 'createNetwork', { name: 'for-other', projectId: other.projectId }, s.adminToken)
  t.equal(forOther.projectId, other.projectId, 'admins create for any project')

  const auditor = await call<User>(s.clients.users, 'createUser', { name: 'auditor', domainId: 'default', password: 'auditor-pw' }, s.adminToken)
  const readerRole = await call<Role>(s.clients.roles, 'getRole', { name: 'reader' }, s.adminToken)
  await call(s.clients.roles, 'grantRole', { roleId: readerRole.id, userId: auditor.id, domainId: 'default' }, s.adminToken)
  const domainReader = (await s.login('auditor', 'auditor-pw', { scopeDomain: 'Default' })).token
  const seen = await names(domainReader)
  t.ok(seen.includes('demo-private') && seen.includes('for-other'), 'a domain reader sees the networks of every project of its domain')
  t.notOk((await names(far.token)).includes('for-other'))
  t.equal((await call<Network>(c.networks, 'getNetwork', { id: mine.id }, domainReader)).id, mine.id)
  t.equal((await failure(call(c.networks, 'deleteNetwork', { id: mine.id }, domainReader))).code, status.PERMISSION_DENIED, 'and changes nothing')
  const farNet = await call<Network>(c.networks, 'createNetwork', { name: 'far-private' }, far.token)
  t.equal((await failure(call(c.networks, 'getNetwork', { id: farNet.id }, domainReader))).code, status.NOT_FOUND, 'other domains stay invisible to it')
})

t.test('delete: a network or subnet in use is a CONFLICT; otherwise subnets go with the network', async (t) => {
  const net = await call<Network>(c.networks, 'createNetwork', { name: 'doomed' }, demo.token)
  const sn = await call<Subnet>(c.subnets, 'createSubnet', { networkId: net.id, cidr: '10.70.0.0/24' }, demo.token)
  const port = await call<Port>(c.ports, 'createPort', { networkId: net.id }, demo.token)
  const e = await failure(call(c.networks, 'deleteNetwork', { id: net.id }, demo.token))
  t.equal(e.code, status.ABORTED)
  t.match(e.details, new RegExp(`port ${port.id}`))
  t.equal((await failure(call(c.subnets, 'deleteSubnet', { id: sn.id }, demo.token))).code, status.ABORTED, 'a subnet with allocated addresses cannot go')
  await call(c.ports, 'deletePort', { id: port.id }, demo.token)
  await call(c.networks, 'deleteNetwork', { id: net.id }, demo.token)
  t.equal((await failure(call(c.subnets, 'getSubnet', { id: sn.id }, demo.token))).code, status.NOT_FOUND, 'the subnet went with its network')
  t.equal((await failure(call(c.networks, 'getNetwork', { id: net.id }, demo.token))).code, status.NOT_FOUND)
})
