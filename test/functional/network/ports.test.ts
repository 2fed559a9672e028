// Ports, IP allocation (exhaustion, release, concurrency), quotas and floating IPs through the real gRPC server.
import t from 'tap'
import { startController, type TestController } from '../../helpers/controller.js'
import { call, failure, fieldOf, status, type Decoded } from '../../helpers/grpc.js'
import type { FloatingIp, Router, ListFloatingIpsResponse, ListNetworksResponse, ListPortsResponse, ListSecurityGroupsResponse, Network, Port, Subnet } from '../../../proto/gen/strato/network/v1/network.js'
import type { QuotaSet } from '../../../proto/gen/strato/compute/v1/compute.js'
import { netClients, tenant, type NetClients, type Tenant } from './fixtures.js'
import { testingOnPostgres } from '../../helpers/postgres.js'

let s: TestController
let c: NetClients
let demo: Tenant
let other: Tenant
let provider: Network
let providerSubnet: Subnet
let net: Network
let v4: Subnet

t.before(async () => {
  s = await startController()
  c = netClients(s.address)
  demo = await tenant(s, 'demo')
  other = await tenant(s, 'other')
  provider = await call<Network>(c.networks, 'createNetwork', { name: 'provider', shared: true, routerExternal: true, providerPhysicalNetwork: 'provider', providerNetworkType: 'flat' }, s.adminToken) as Network
  providerSubnet = await call<Subnet>(c.subnets, 'createSubnet', {
    name: 'provider', networkId: provider.id, allocationPools: [{ start: '192.168.201.200', end: '192.168.201.210' }],
    dnsNameservers: ['114.114.114.114'], gatewayIp: '192.168.201.1', cidr: '192.168.201.0/24',
  }, s.adminToken) as Subnet
  net = await call<Network>(c.networks, 'createNetwork', { name: 'private' }, demo.token) as Network
  v4 = await call<Subnet>(c.subnets, 'createSubnet', { name: 'private-v4', networkId: net.id, cidr: '10.0.0.0/24' }, demo.token) as Subnet
})
t.teardown(async () => {
  c.close()
  await s.close()
})

const portsOf = async (token: string, filter: object = {}) => (await call<ListPortsResponse>(c.ports, 'listPorts', filter, token)).ports

t.test('a port: generated MAC, an address from the first IPv4 subnet, the project\'s default security group', async (t) => {
  await call(c.subnets, 'createSubnet', { name: 'private-v6', networkId: net.id, cidr: 'fd00:1::/64' }, demo.token)
  const p = await call<Port>(c.ports, 'createPort', { networkId: net.id, name: 'first', deviceOwner: 'compute:nova', deviceId: 'server-1' }, demo.token)
  t.match(p.macAddress, /^fa:16:3e(:[0-9a-f]{2}){3}$/)
  t.same(p.fixedIps, [{ subnetId: v4.id, ipAddress: '10.0.0.2' }], 'the first free address of the pool (the gateway is .1)')
  t.match(p, { name: 'first', networkId: net.id, projectId: demo.projectId, deviceOwner: 'compute:nova', deviceId: 'server-1', status: 'DOWN', adminStateUp: true })
  const groups = await call<ListSecurityGroupsResponse>(c.securityGroups, 'listSecurityGroups', { name: 'default' }, demo.token)
  t.same(p.securityGroups, [groups.securityGroups[0]!.id], 'default security group, created on first use')
  t.same((await call<Port>(c.ports, 'getPort', { id: p.id }, demo.token)).fixedIps, p.fixedIps)
  t.same((await portsOf(demo.token, { deviceId: 'server-1' })).map((x) => x.id), [p.id], 'filter by device_id')
  const upd = await call<Port>(c.ports, 'updatePort', { id: p.id, name: 'renamed', deviceId: 'server-2', securityGroups: { ids: [] } }, demo.token)
  t.match(upd, { name: 'renamed', deviceId: 'server-2', securityGroups: [], revisionNumber: 2 })
  await call(c.ports, 'deletePort', { id: p.id }, demo.token)
  t.equal((await failure(call(c.ports, 'getPort', { id: p.id }, demo.token))).code, status.NOT_FOUND)
})

t.test('fixed_ips: subnet+address exact, subnet only, address only; conflicts and mistakes name the entry', async (t) => {
  const exact = await call<Port>(c.ports, 'createPort', { networkId: net.id, fixedIps: [{ subnetId: v4.id, ipAddress: '10.0.0.50' }] }, demo.token)
  t.same(exact.fixedIps, [{ subnetId: v4.id, ipAddress: '10.0.0.50' }])
  const bySubnet = await call<Port>(c.ports, 'createPort', { networkId: net.id, fixedIps: [{ subnetId: v4.id }, { subnetId: v4.id }] }, demo.token)
  t.equal(bySubnet.fixedIps.length, 2, 'two addresses from one subnet')
  t.not(bySubnet.fixedIps[0]!.ipAddress, bySubnet.fixedIps[1]!.ipAddress)
  const byIp = await call<Port>(c.ports, 'createPort', { networkId: net.id, fixedIps: [{ ipAddress: '10.0.0.77' }, { ipAddress: 'fd00:1:0:0::77' }] }, demo.token)
  t.same(byIp.fixedIps.map((f) => f.ipAddress).sort(), ['10.0.0.77', 'fd00:1::77'], 'each address lands in the subnet that holds it (IPv6 normalised)')
  t.not(byIp.fixedIps[0]!.subnetId, byIp.fixedIps[1]!.subnetId)
  const withMac = await call<Port>(c.ports, 'createPort', { networkId: net.id, macAddress: 'FA:16:3E:00:00:01' }, demo.token)
  t.equal(withMac.macAddress, 'fa:16:3e:00:00:01')

  const before = (await portsOf(demo.token)).length
  const cases: Array<[string, object, number, string, RegExp]> = [
    ['address in use', { fixedIps: [{ subnetId: v4.id, ipAddress: '10.0.0.50' }] }, status.ABORTED, 'fixed_ips[0].ip_address', /10\.0\.0\.50 is already in use/],
    ['the gateway', { fixedIps: [{ ipAddress: '10.0.0.1' }] }, status.ABORTED, 'fixed_ips[0].ip_address', /gateway/],
    ['the broadcast address', { fixedIps: [{ ipAddress: '10.0.0.255' }] }, status.INVALID_ARGUMENT, 'fixed_ips[0].ip_address', /network or broadcast/],
    ['outside every subnet', { fixedIps: [{ ipAddress: '10.9.9.9' }] }, status.INVALID_ARGUMENT, 'fixed_ips[0].ip_address', /no subnet of network/],
    ['outside the named subnet', { fixedIps: [{ subnetId: v4.id, ipAddress: '10.0.1.5' }] }, status.INVALID_ARGUMENT, 'fixed_ips[0].ip_address', /is not in subnet/],
    ['subnet of another network', { fixedIps: [{ subnetId: providerSubnet.id }] }, status.INVALID_ARGUMENT, 'fixed_ips[0].subnet_id', /is not on network/],
    ['garbage address', { fixedIps: [{ ipAddress: '10.0.0.x' }] }, status.INVALID_ARGUMENT, 'fixed_ips[0].ip_address', /not an IPv4 or IPv6 address/],
    ['neither', { fixedIps: [{}] }, status.INVALID_ARGUMENT, 'fixed_ips[0]', /needs a subnet_id, an ip_address, or both/],
    ['one address twice', { fixedIps: [{ ipAddress: '10.0.0.90' }, { ipAddress: '10.0.0.90' }] }, status.INVALID_ARGUMENT, 'fixed_ips[1].ip_address', /twice/],
    ['second entry bad after a good one', { fixedIps: [{ ipAddress: '10.0.0.91' }, { ipAddress: '10.0.0.50' }] }, status.ABORTED, 'fixed_ips[1].ip_address', /in use/],
    ['MAC in use', { macAddress: 'fa:16:3e:00:00:01' }, status.ABORTED, 'mac_address', /already used/],
    ['multicast MAC', { macAddress: '01:00:5e:00:00:01' }, status.INVALID_ARGUMENT, 'mac_address', /multicast/],
    ['bad MAC', { macAddress: 'fa:16:3e:zz:00:01' }, status.INVALID_ARGUMENT, 'mac_address', /not a MAC/],
    ['unknown security group', { securityGroups: ['nope'] }, status.NOT_FOUND, 'security_groups[0]', /not found/],
  ]
  for (const [what, req, code, field, msg] of cases) {
    const e = await failure(call(c.ports, 'createPort', { networkId: net.id, ...req }, demo.token))
    t.equal(e.code, code, `${what}: code`)
    t.equal(fieldOf(e), field, `${what}: names ${field}`)
    t.match(e.details, msg, `${what}: says why`)
  }
  t.equal((await portsOf(demo.token)).length, before, 'no port was left behind')
  t.ok(await call(c.ports, 'createPort', { networkId: net.id, fixedIps: [{ ipAddress: '10.0.0.91' }] }, demo.token), 'and 10.0.0.91 was not kept by the failed request')
  for (const p of await portsOf(demo.token)) await call(c.ports, 'deletePort', { id: p.id }, demo.token)
})

t.test('pool exhaustion is RESOURCE_EXHAUSTED; deleting a port releases its address', async (t) => {
  const small = await call<Network>(c.networks, 'createNetwork', { name: 'small' }, demo.token)
  const sn = await call<Subnet>(c.subnets, 'createSubnet', { networkId: small.id, cidr: '10.5.0.0/29' }, demo.token)
  t.same(sn.allocationPools, [{ start: '10.5.0.2', end: '10.5.0.6' }])
  const made: Array<Decoded<Port>> = []
  for (let i = 0; i < 5; i++) made.push(await call<Port>(c.ports, 'createPort', { networkId: small.id }, demo.token))
  t.same(made.map((p) => p.fixedIps[0]!.ipAddress), ['10.5.0.2', '10.5.0.3', '10.5.0.4', '10.5.0.5', '10.5.0.6'])
  const full = await failure(call(c.ports, 'createPort', { networkId: small.id }, demo.token))
  t.equal(full.code, status.RESOURCE_EXHAUSTED)
  t.match(full.details, /no more IP addresses available on network 'small'/)
  const fullSubnet = await failure(call(c.ports, 'createPort', { networkId: small.id, fixedIps: [{ subnetId: sn.id }] }, demo.token))
  t.equal(fullSubnet.code, status.RESOURCE_EXHAUSTED)
  t.equal(fieldOf(fullSubnet), 'fixed_ips[0].subnet_id')
  t.equal((await portsOf(demo.token, { networkId: small.id })).length, 5, 'the refused requests left nothing')

  await call(c.ports, 'deletePort', { id: made[2]!.id }, demo.token)
  const again = await call<Port>(c.ports, 'createPort', { networkId: small.id }, demo.token)
  t.equal(again.fixedIps[0]!.ipAddress, '10.5.0.4', 'the released address is handed out again')
  await call(c.ports, 'deletePort', { id: made[0]!.id }, demo.token)
  const exact = await call<Port>(c.ports, 'createPort', { networkId: small.id, fixedIps: [{ ipAddress: '10.5.0.2' }] }, demo.token)
  t.equal(exact.fixedIps[0]!.ipAddress, '10.5.0.2', 'and may be asked for by address')
})

t.test('200 concurrent CreatePort calls on a /24: every one gets its own address, fast', async (t) => {
  const big = await call<Network>(c.networks, 'createNetwork', { name: 'big' }, demo.token)
  const sn = await call<Subnet>(c.subnets, 'createSubnet', { networkId: big.id, cidr: '10.20.0.0/24' }, demo.token)
  const started = Date.now()
  const results = await Promise.allSettled(Array.from({ length: 200 }, (_, i) => call<Port>(c.ports, 'createPort', { networkId: big.id, name: `p${i}` }, demo.token)))
  const ms = Date.now() - started
  const ok = results.filter((r): r is PromiseFulfilledResult<Decoded<Port>> => r.status === 'fulfilled').map((r) => r.value)
  t.equal(ok.length, 200, `all 200 created (${ms} ms)`)
  const ips = ok.map((p) => p.fixedIps[0]!.ipAddress)
  t.equal(new Set(ips).size, 200, 'no address handed out twice')
  t.ok(ips.every((ip) => /^10\.20\.0\.(\d+)$/.test(ip) && ip !== '10.20.0.1'), 'all from the pool, never the gateway')
  t.equal(new Set(ok.map((p) => p.macAddress)).size, 200, 'no MAC twice')
  // On PostgreSQL each of the 200 transactions (serialised by the project's quota lock) pays
  // a dozen network round trips where SQLite pays microseconds: the bound holds for SQLite.
  if (testingOnPostgres()) t.comment(`200 ports on PostgreSQL in ${ms} ms`)
  else t.ok(ms < 60_000, `took ${ms} ms`)
  t.equal((await portsOf(demo.token, { networkId: big.id })).length, 200)
  // The remaining 53 addresses, then exhaustion.
  const rest = await Promise.allSettled(Array.from({ length: 60 }, () => call<Port>(c.ports, 'createPort', { networkId: big.id, fixedIps: [{ subnetId: sn.id }] }, demo.token)))
  t.equal(rest.filter((r) => r.status === 'fulfilled').length, 53, 'exactly the 253 usable addresses minus the gateway')
  t.ok(rest.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason.code === status.RESOURCE_EXHAUSTED))
})

t.test('quotas: exactly the quota admitted under 50 concurrent creates', async (t) => {
  const q = await tenant(s, 'quota')
  const itemOf = async (r: string) => (await call<QuotaSet>(c.quotas, 'getQuota', { projectId: q.projectId }, q.token)).items.find((i) => i.resource === r)!
  t.match(await itemOf('networks'), { limit: 100, inUse: 0 }, "Neutron's defaults")
  t.match(await itemOf('ports'), { limit: 500 })
  await call(c.quotas, 'updateQuota', { projectId: q.projectId, limits: { networks: 7, ports: 12 } }, s.adminToken)
  const nets = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => call<Network>(c.networks, 'createNetwork', { name: `n${i}` }, q.token)))
  t.equal(nets.filter((r) => r.status === 'fulfilled').length, 7, 'exactly 7 networks')
  const refused = nets.filter((r) => r.status === 'rejected') as PromiseRejectedResult[]
  t.ok(refused.every((r) => r.reason.code === status.RESOURCE_EXHAUSTED))
  t.match(refused[0]!.reason.details, /quota exceeded for networks: 7 of 7 in use/)
  t.match(await itemOf('networks'), { limit: 7, inUse: 7 })

  const target = (nets.find((r) => r.status === 'fulfilled') as PromiseFulfilledResult<Network>).value
  await call(c.subnets, 'createSubnet', { networkId: target.id, cidr: '10.30.0.0/24' }, q.token)
  const ports = await Promise.allSettled(Array.from({ length: 50 }, () => call<Port>(c.ports, 'createPort', { networkId: target.id }, q.token)))
  const made = ports.filter((r) => r.status === 'fulfilled') as Array<PromiseFulfilledResult<Decoded<Port>>>
  t.equal(made.length, 12, 'exactly 12 ports')
  t.equal(new Set(made.map((p) => p.value.fixedIps[0]!.ipAddress)).size, 12)
  t.equal((await portsOf(q.token)).length, 12, 'refused creates allocated nothing')
  t.match(await itemOf('ports'), { limit: 12, inUse: 12 })
})

t.test('floating IPs: from the external network, associated to a port\'s fixed IP, ACTIVE/DOWN', async (t) => {
  // Association goes through a router (its gateway's address is outside the pool, so the pool's arithmetic below holds).
  const router = await call<Router>(c.routers, 'createRouter', { name: 'fip-router', projectId: demo.projectId, externalGatewayInfo: { networkId: provider.id, externalFixedIps: [{ ipAddress: '192.168.201.50' }] } }, s.adminToken)
  await call(c.routers, 'addRouterInterface', { routerId: router.id, subnetId: v4.id }, demo.token)
  const port = await call<Port>(c.ports, 'createPort', { networkId: net.id, name: 'vm' }, demo.token)
  const fip = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: provider.id }, demo.token)
  t.match(fip, { floatingNetworkId: provider.id, floatingIpAddress: '192.168.201.200', projectId: demo.projectId, status: 'DOWN', portId: '', fixedIpAddress: '' })
  const held = (await portsOf(s.adminToken, { deviceId: fip.id }))[0]!
  t.match(held, { deviceOwner: 'network:floatingip', networkId: provider.id, fixedIps: [{ ipAddress: '192.168.201.200' }], securityGroups: [] }, 'a network:floatingip port holds the address')
  t.notOk((await portsOf(demo.token)).some((p) => p.id === held.id), 'which is not the project\'s')
  t.equal((await failure(call(c.ports, 'deletePort', { id: held.id }, s.adminToken))).code, status.FAILED_PRECONDITION, 'and cannot be deleted on its own')

  const assoc = await call<FloatingIp>(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: port.id }, demo.token)
  t.match(assoc, { portId: port.id, fixedIpAddress: port.fixedIps[0]!.ipAddress, status: 'ACTIVE', routerId: router.id })
  const second = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: provider.id, floatingIpAddress: '192.168.201.205' }, demo.token)
  t.equal(second.floatingIpAddress, '192.168.201.205', 'a specific address')
  const taken = await failure(call(c.floatingIps, 'updateFloatingIp', { id: second.id, portId: port.id }, demo.token))
  t.equal(taken.code, status.ABORTED, 'one floating IP per fixed address')

  const multi = await call<Port>(c.ports, 'createPort', { networkId: net.id, fixedIps: [{ subnetId: v4.id }, { subnetId: v4.id }] }, demo.token)
  const which = await failure(call(c.floatingIps, 'updateFloatingIp', { id: second.id, portId: multi.id }, demo.token))
  t.equal(which.code, status.INVALID_ARGUMENT)
  t.equal(fieldOf(which), 'fixed_ip_address', 'a port with several addresses needs fixed_ip_address')
  const chosen = await call<FloatingIp>(c.floatingIps, 'updateFloatingIp', { id: second.id, portId: multi.id, fixedIpAddress: multi.fixedIps[1]!.ipAddress }, demo.token)
  t.match(chosen, { portId: multi.id, fixedIpAddress: multi.fixedIps[1]!.ipAddress, status: 'ACTIVE' })
  const wrong = await failure(call(c.floatingIps, 'updateFloatingIp', { id: second.id, portId: multi.id, fixedIpAddress: '10.0.0.254' }, demo.token))
  t.equal(fieldOf(wrong), 'fixed_ip_address')

  const dis = await call<FloatingIp>(c.floatingIps, 'updateFloatingIp', { id: second.id, portId: '' }, demo.token)
  t.match(dis, { portId: '', fixedIpAddress: '', status: 'DOWN' }, 'an empty port_id dissociates')
  await call(c.ports, 'deletePort', { id: port.id }, demo.token)
  t.match(await call<FloatingIp>(c.floatingIps, 'getFloatingIp', { id: fip.id }, demo.token), { portId: '', status: 'DOWN' }, 'deleting the port dissociates its floating IP')

  const atOnce = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: provider.id, portId: multi.id, fixedIpAddress: multi.fixedIps[0]!.ipAddress }, demo.token)
  t.match(atOnce, { portId: multi.id, fixedIpAddress: multi.fixedIps[0]!.ipAddress, status: 'ACTIVE' }, 'associated at creation')
  await call(c.floatingIps, 'deleteFloatingIp', { id: atOnce.id }, demo.token)
  const badAssoc = await failure(call(c.floatingIps, 'createFloatingIp', { floatingNetworkId: provider.id, portId: multi.id }, demo.token))
  t.equal(fieldOf(badAssoc), 'fixed_ip_address', 'a failed association at creation…')
  t.equal((await call<ListFloatingIpsResponse>(c.floatingIps, 'listFloatingIps', {}, demo.token)).floatingIps.length, 2, '…leaves no floating IP behind (the two made earlier remain)')

  const notExternal = await failure(call(c.floatingIps, 'createFloatingIp', { floatingNetworkId: net.id }, demo.token))
  t.equal(notExternal.code, status.INVALID_ARGUMENT)
  t.equal(fieldOf(notExternal), 'floating_network_id')
  const otherPort = await call<Port>(c.ports, 'createPort', { networkId: provider.id }, other.token)
  t.equal((await failure(call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: otherPort.id }, demo.token))).code, status.NOT_FOUND, 'another project\'s port is invisible')
  t.equal((await failure(call(c.floatingIps, 'getFloatingIp', { id: fip.id }, other.token))).code, status.NOT_FOUND, 'and so is another project\'s floating IP')

  // The provider pool has 11 addresses: 2 floating IPs and other's port hold 3.
  const burst = await Promise.allSettled(Array.from({ length: 10 }, () => call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: provider.id }, demo.token)))
  t.equal(burst.filter((r) => r.status === 'fulfilled').length, 8)
  const ex = burst.find((r) => r.status === 'rejected') as PromiseRejectedResult
  t.equal(ex.reason.code, status.RESOURCE_EXHAUSTED)
  t.match(ex.reason.details, /no more IP addresses available on network 'provider'/)
  await call(c.floatingIps, 'deleteFloatingIp', { id: fip.id }, demo.token)
  t.equal((await failure(call(c.floatingIps, 'getFloatingIp', { id: fip.id }, demo.token))).code, status.NOT_FOUND)
  const reused = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: provider.id }, demo.token)
  t.equal(reused.floatingIpAddress, '192.168.201.200', 'deleting a floating IP releases its address')
  t.equal((await call<ListNetworksResponse>(c.networks, 'listNetworks', { routerExternal: true }, demo.token)).networks.length, 1)
})
