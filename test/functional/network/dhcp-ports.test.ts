// The controller's side of DHCP: network:dhcp ports made and removed as a
// host's agent asks the conductor for its DHCP networks (NATS, decoded by the
// agent's ConductorClient), what the answer carries, the strato.dhcp.changed
// notice, quotas, and network/subnet deletes with DHCP ports (Neutron's
// auto-delete). Fake-driver agents, DHCP off: the test asks in their place.
import { connect, type NatsConnection } from '@nats-io/transport-node'
import t from 'tap'
import { startCloud, serverGone, type TestCloud } from '../../helpers/cloud.js'
import { call, failure, status, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from './fixtures.js'
import { ConductorClient } from '../../../agent/conductor-client.js'
import { dhcpDeviceId, uuid5 } from '../../../controller/network/dhcp.js'
import { DHCP_CHANGED_SUBJECT } from '../../../proto/subjects.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { QuotaSet } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { ListPortsResponse, Network, Port, Subnet } from '../../../proto/gen/strato/network/v1/network.js'

let cloud: TestCloud
let nc: NatsConnection
let conductor: ConductorClient
let demo: Tenant

t.before(async () => {
  cloud = await startCloud({ hosts: ['dp1'] })
  nc = await connect(cloud.nats.connectOptions())
  conductor = new ConductorClient(() => nc, { host: 'dp1', requestTimeoutMs: 5_000 })
  demo = await tenant(cloud.s, 'dhcpdemo')
})
t.teardown(async () => {
  await nc?.close()
  await cloud?.close()
})

const portsOf = async (filter: object): Promise<Array<Decoded<Port>>> => (await call<ListPortsResponse>(cloud.c.ports, 'listPorts', filter, cloud.s.adminToken)).ports
const boot = async (name: string, networkId: string, token = demo.token) => {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: networkId }] }, token)
  const uuid = r.servers[0]!.id
  await cloud.waitFor(uuid, (s) => s.status === 'ACTIVE', token, 20_000)
  return uuid
}
const remove = async (uuid: string, token = demo.token) => {
  await call(cloud.c.servers, 'deleteServer', { id: uuid }, token)
  await eventually(() => serverGone(cloud.c, uuid, token), 20_000, 'the server to go')
}
/** Counts strato.dhcp.changed notices while `fn` runs (and shortly after). */
async function notices<T>(fn: () => Promise<T>, expectSome = true): Promise<{ n: number; value: T }> {
  let n = 0
  const sub = nc.subscribe(DHCP_CHANGED_SUBJECT, { callback: () => void n++ })
  await nc.flush()
  const value = await fn()
  // A notice may trail the answer on a loaded machine: wait for the first
  // (when one is expected), then a little longer for any duplicate.
  if (expectSome) await eventually(() => n > 0, 20_000, 'a notice').catch(() => undefined)
  await new Promise((r) => setTimeout(r, 400))
  sub.unsubscribe()
  return { n, value }
}

t.test("uuid5 and the DHCP device id are Neutron's", async (t) => {
  t.equal(uuid5('python.org'), '886313e1-3b8a-5372-9b90-0c9aee199e5d', "Python's uuid.uuid5(NAMESPACE_DNS, 'python.org')")
  t.equal(dhcpDeviceId('compute1', 'n1'), `dhcp${uuid5('compute1')}-n1`)
})

t.test('a DHCP port per (host, network), made when the agent asks, gone when the network has no more servers on the host', async (t) => {
  const net = await call<Network>(cloud.c.networks, 'createNetwork', { name: 'dhcp-net' }, demo.token)
  const subnet = await call<Subnet>(cloud.c.subnets, 'createSubnet', {
    networkId: net.id, cidr: '10.42.0.0/24', dnsNameservers: ['10.42.0.53'], hostRoutes: [{ destination: '172.16.0.0/16', nexthop: '10.42.0.254' }],
  }, demo.token)
  const off = await call<Subnet>(cloud.c.subnets, 'createSubnet', { networkId: net.id, cidr: '10.43.0.0/24', enableDhcp: false }, demo.token)
  t.same(await conductor.dhcp(), [], 'nothing before a server is on the host')

  // A member's project at its port limit: the DHCP port is not refused (made over RPC, as Neutron's are).
  await call<QuotaSet>(cloud.c.quotas, 'updateQuota', { projectId: demo.projectId, limits: { ports: 1 } }, cloud.s.adminToken)
  const { n, value: vm } = await notices(() => boot('dhcp-a', net.id))
  t.ok(n >= 1, 'the port of the server was announced on strato.dhcp.changed')
  const [vmPort] = await portsOf({ deviceId: vm })

  const { n: made, value: networks } = await notices(() => conductor.dhcp())
  t.ok(made >= 1, 'making the DHCP port is announced too (other hosts serve the network and add it)')
  t.equal(networks.length, 1)
  const n0 = networks[0]!
  const [dhcp] = await portsOf({ networkId: net.id, deviceOwner: 'network:dhcp' })
  t.ok(dhcp, 'a network:dhcp port exists')
  t.match(dhcp, { deviceId: dhcpDeviceId('dp1', net.id), bindingHostId: 'dp1', projectId: demo.projectId, securityGroups: [], status: 'ACTIVE' })
  t.equal(vmPort!.bindingHostId, 'dp1', "the server's port is bound to its host too (binding:host_id)")
  t.same(dhcp!.fixedIps.map((f) => f.subnetId), [subnet.id], 'one address, on the DHCP-enabled subnet only')
  t.match(n0, { networkId: net.id, networkType: 'local', mtu: 1500, leaseSeconds: 86400, port: { id: dhcp!.id, macAddress: dhcp!.macAddress } })
  t.same(n0.port.fixedIps, [{ subnetId: subnet.id, ipAddress: dhcp!.fixedIps[0]!.ipAddress, cidr: '10.42.0.0/24' }])
  t.same(n0.subnets.map((s) => [s.id, s.enableDhcp, s.hasRouter]), [[subnet.id, true, false], [off.id, false, false]], 'every IPv4 subnet, no router')
  t.match(n0.subnets[0], { cidr: '10.42.0.0/24', gatewayIp: '10.42.0.1', dnsNameservers: ['10.42.0.53'], hostRoutes: [{ destination: '172.16.0.0/16', nexthop: '10.42.0.254' }] })
  const ip = vmPort!.fixedIps[0]!.ipAddress
  t.same(n0.hosts, [{ portId: vmPort!.id, macAddress: vmPort!.macAddress, fixedIps: [{ subnetId: subnet.id, ipAddress: ip, cidr: '10.42.0.0/24' }], hostname: `host-${ip.replaceAll('.', '-')}` }], 'every port but the DHCP one')

  const quota = Object.fromEntries((await call<QuotaSet>(cloud.c.quotas, 'getQuota', { projectId: demo.projectId }, cloud.s.adminToken)).items.map((i) => [i.resource, i.inUse]))
  t.equal(quota.ports, 2, "the DHCP port counts in the network owner's usage, as Neutron's does")
  await call<QuotaSet>(cloud.c.quotas, 'updateQuota', { projectId: demo.projectId, limits: { ports: 500 } }, cloud.s.adminToken)

  t.same((await conductor.dhcp()).map((x) => x.port.id), [dhcp!.id], 'asking again keeps the same port')
  const { n: quiet } = await notices(() => conductor.dhcp(), false)
  t.equal(quiet, 0, 'and announces nothing (no refresh loop)')

  // Subnet changes reach the answer.
  await call(cloud.c.subnets, 'updateSubnet', { id: off.id, enableDhcp: true }, demo.token)
  const both = (await conductor.dhcp())[0]!
  t.equal(both.port.id, dhcp!.id, 'the same DHCP port')
  t.same(both.port.fixedIps.map((f) => f.subnetId).sort(), [subnet.id, off.id].sort(), 'now with an address on the newly DHCP-enabled subnet')
  await call(cloud.c.subnets, 'updateSubnet', { id: off.id, enableDhcp: false }, demo.token)
  t.same((await conductor.dhcp())[0]!.port.fixedIps.map((f) => f.subnetId), [subnet.id], 'and without it once DHCP is off there again')
  await call(cloud.c.subnets, 'deleteSubnet', { id: off.id }, demo.token)

  await remove(vm)
  t.equal((await portsOf({ networkId: net.id, deviceOwner: 'network:dhcp' })).length, 1, 'the DHCP port stays until the agent asks')
  t.same(await conductor.dhcp(), [], 'no server on the host: nothing served')
  t.same(await portsOf({ networkId: net.id, deviceOwner: 'network:dhcp' }), [], 'and the DHCP port is gone')
  await call(cloud.c.networks, 'deleteNetwork', { id: net.id }, demo.token)
})

t.test('a network with only DHCP ports left deletes (Neutron auto-deletes them); a subnet gives its DHCP address back', async (t) => {
  const net = await call<Network>(cloud.c.networks, 'createNetwork', { name: 'dhcp-net2' }, demo.token)
  const subnet = await call<Subnet>(cloud.c.subnets, 'createSubnet', { networkId: net.id, cidr: '10.44.0.0/24' }, demo.token)
  const vm = await boot('dhcp-b', net.id)
  await conductor.dhcp()
  t.equal((await portsOf({ networkId: net.id, deviceOwner: 'network:dhcp' })).length, 1)
  const inUse = await failure(call(cloud.c.networks, 'deleteNetwork', { id: net.id }, demo.token))
  t.equal(inUse.code, status.ABORTED, 'refused (CONFLICT) while the server port is on it')
  t.notMatch(inUse.details, /network:dhcp/, 'and it names the server port, not the DHCP one')
  await remove(vm)
  const subnetInUse = await failure(call(cloud.c.subnets, 'deleteSubnet', { id: subnet.id }, demo.token)).catch(() => undefined)
  t.equal(subnetInUse, undefined, 'the subnet deletes: its only holder was the DHCP port')
  const { n } = await notices(() => call(cloud.c.networks, 'deleteNetwork', { id: net.id }, demo.token))
  t.ok(n >= 1, 'deleting the network (with its DHCP port) is announced')
  t.same(await portsOf({ networkId: net.id }), [], 'no port is left on it')
  t.same(await conductor.dhcp(), [], 'nothing to serve')
})

t.test('enable_dhcp=false: no DHCP port', async (t) => {
  const net = await call<Network>(cloud.c.networks, 'createNetwork', { name: 'dhcp-off' }, demo.token)
  await call<Subnet>(cloud.c.subnets, 'createSubnet', { networkId: net.id, cidr: '10.45.0.0/24', enableDhcp: false }, demo.token)
  const vm = await boot('dhcp-c', net.id)
  t.same(await conductor.dhcp(), [])
  t.same(await portsOf({ networkId: net.id, deviceOwner: 'network:dhcp' }), [])
  await remove(vm)
  await call(cloud.c.networks, 'deleteNetwork', { id: net.id }, demo.token)
})

t.test('an unknown host is refused', async (t) => {
  const other = new ConductorClient(() => nc, { host: 'nowhere', requestTimeoutMs: 5_000 })
  await t.rejects(other.dhcp(), { name: 'NotFound' })
})

t.test("a user's port bound to a server carries the server's host, and loses it when the server goes", async (t) => {
  const net = await call<Network>(cloud.c.networks, 'createNetwork', { name: 'bind-net' }, demo.token)
  await call<Subnet>(cloud.c.subnets, 'createSubnet', { networkId: net.id, cidr: '10.46.0.0/24', enableDhcp: false }, demo.token)
  const port = await call<Port>(cloud.c.ports, 'createPort', { networkId: net.id }, demo.token)
  t.equal(port.bindingHostId, '', 'unbound')
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'bind', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ port: port.id }] }, demo.token)
  const uuid = r.servers[0]!.id
  await cloud.waitFor(uuid, (s) => s.status === 'ACTIVE', demo.token, 20_000)
  t.match(await call<Port>(cloud.c.ports, 'getPort', { id: port.id }, demo.token), { deviceId: uuid, bindingHostId: 'dp1' })
  await remove(uuid)
  t.match(await call<Port>(cloud.c.ports, 'getPort', { id: port.id }, demo.token), { deviceId: '', bindingHostId: '' })
  await call(cloud.c.ports, 'deletePort', { id: port.id }, demo.token)
  await call(cloud.c.networks, 'deleteNetwork', { id: net.id }, demo.token)
})
