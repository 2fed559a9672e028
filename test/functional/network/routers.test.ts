// Routers (Neutron L3) through the real gRPC server: interfaces by subnet and
// by port, the external gateway, routes, delete, floating IPs through routers,
// placement on L3 agents (and re-placement when one is down too long), the
// conductor's Routers answer (NATS, decoded by the agent's ConductorClient)
// and the strato.router.changed notice. Fake-driver agents with the in-memory
// router builder (l3Driver fake) are the L3 agents; an agent that builds no
// routers (l3Driver none) announces no L3 role and is never given one.
import { connect, type NatsConnection } from '@nats-io/transport-node'
import t from 'tap'
import { startCloud, stopHostForGood, type TestCloud } from '../../helpers/cloud.js'
import { call, failure, fieldOf, status, type Decoded } from '../../helpers/grpc.js'
import { eventually, startAgent, type TestAgent } from '../../helpers/agents.js'
import { member, netClients, tenant, type NetClients, type Tenant } from './fixtures.js'
import { ConductorClient } from '../../../agent/conductor-client.js'
import { FakeRouterBuilder } from '../../../agent/net/l3.js'
import { ROUTER_CHANGED_SUBJECT, conductorSubject } from '../../../proto/subjects.js'
import { ConductorRequest } from '../../../proto/gen/strato/agent/v1/agent.js'
import { errorFromHeaders } from '../../../proto/nats-errors.js'
import type { QuotaSet } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { FloatingIp, ListPortsResponse, ListRoutersResponse, Network, Port, Router, RouterInterfaceInfo, Subnet } from '../../../proto/gen/strato/network/v1/network.js'

let cloud: TestCloud
let c: NetClients
let nc: NatsConnection
let demo: Tenant
let other: Tenant

t.before(async () => {
  cloud = await startCloud({ hosts: ['l3a', 'l3b'], agent: { l3Driver: 'fake' }, controller: { network: { routerRescheduleAfterMs: 300 } } })
  c = netClients(cloud.s.address)
  nc = await connect(cloud.nats.connectOptions())
  demo = await tenant(cloud.s, 'l3demo')
  other = await tenant(cloud.s, 'l3other')
})
t.teardown(async () => {
  c?.close()
  await nc?.close()
  await cloud?.close()
})

/** What the agent on `host` has built (its in-memory router builder). */
const builtOn = (host: string): string[] => {
  const l3 = cloud.agents.find((x) => x.agent.config.host === host)!.agent.l3
  if (!(l3 instanceof FakeRouterBuilder)) throw new Error(`the agent on ${host} has no fake router builder`)
  return [...l3.routers().keys()].sort()
}
const conductor = (host: string) => new ConductorClient(() => nc, { host, requestTimeoutMs: 5_000 })
const portsOf = async (filter: object): Promise<Array<Decoded<Port>>> => (await call<ListPortsResponse>(c.ports, 'listPorts', filter, cloud.s.adminToken)).ports
const routerOf = (id: string, token = cloud.s.adminToken) => call<Router>(c.routers, 'getRouter', { id }, token)
async function projectNet(name: string, cidr: string, token = demo.token, subnet: object = {}): Promise<{ net: Decoded<Network>; subnet: Decoded<Subnet> }> {
  const net = await call<Network>(c.networks, 'createNetwork', { name }, token)
  return { net, subnet: await call<Subnet>(c.subnets, 'createSubnet', { networkId: net.id, cidr, ...subnet }, token) }
}
/** Counts strato.router.changed notices while `fn` runs (and shortly after). */
async function notices<T>(fn: () => Promise<T>, expectSome = true): Promise<{ n: number; value: T }> {
  let n = 0
  const sub = nc.subscribe(ROUTER_CHANGED_SUBJECT, { callback: () => void n++ })
  await nc.flush()
  const value = await fn()
  // A notice may trail the answer on a loaded machine: wait for the first
  // (when one is expected), then a little longer for any duplicate.
  if (expectSome) await eventually(() => n > 0, 20_000, 'a notice').catch(() => undefined)
  await new Promise((r) => setTimeout(r, 400))
  sub.unsubscribe()
  return { n, value }
}

t.test('a project network gets the tenant type: local (a bridge per host)', async (t) => {
  const { net } = await projectNet('selfservice', '10.90.0.0/24')
  t.match(net, { providerNetworkType: 'local', providerPhysicalNetwork: '', routerExternal: false })
  t.equal(net.providerSegmentationId, undefined)
})

t.test('create, show, list, update; quota `routers` (10, as Neutron)', async (t) => {
  const r = await call<Router>(c.routers, 'createRouter', { name: 'r-basic' }, demo.token)
  t.match(r, { name: 'r-basic', projectId: demo.projectId, status: 'ACTIVE', adminStateUp: true, routes: [], interfacesInfo: [], l3AgentHost: '' })
  t.notOk(r.externalGatewayInfo, 'no gateway')
  t.equal((await call<Router>(c.routers, 'getRouter', { name: 'r-basic' }, demo.token)).id, r.id, 'by name')
  t.equal((await failure(call(c.routers, 'getRouter', { id: r.id }, other.token))).code, status.NOT_FOUND, "another project's router is invisible")
  t.same((await call<ListRoutersResponse>(c.routers, 'listRouters', {}, other.token)).routers, [])
  const down = await call<Router>(c.routers, 'updateRouter', { id: r.id, adminStateUp: false, name: 'r-basic2' }, demo.token)
  t.match(down, { adminStateUp: false, name: 'r-basic2', revisionNumber: 2 })
  t.equal((await failure(call(c.routers, 'updateRouter', { id: r.id, name: 'x' }, other.token))).code, status.NOT_FOUND)

  const quota = (await call<QuotaSet>(cloud.c.quotas, 'getQuota', { projectId: demo.projectId }, cloud.s.adminToken)).items.find((i) => i.resource === 'routers')
  t.match(quota, { limit: 10, inUse: 1 })
  await call(cloud.c.quotas, 'updateQuota', { projectId: demo.projectId, limits: { routers: 1 } }, cloud.s.adminToken)
  const over = await failure(call(c.routers, 'createRouter', { name: 'r-over' }, demo.token))
  t.equal(over.code, status.RESOURCE_EXHAUSTED)
  t.match(over.details, /routers/)
  await call(cloud.c.quotas, 'updateQuota', { projectId: demo.projectId, limits: { routers: 10 } }, cloud.s.adminToken)
  await call(c.routers, 'deleteRouter', { id: r.id }, demo.token)
  t.equal((await failure(routerOf(r.id))).code, status.NOT_FOUND)
})

t.test('the external gateway: only on an external network; a network:router_gateway port; SNAT', async (t) => {
  const { net } = await projectNet('gw-internal', '10.91.0.0/24')
  const r = await call<Router>(c.routers, 'createRouter', { name: 'r-gw' }, demo.token)
  const bad = await failure(call(c.routers, 'updateRouter', { id: r.id, externalGatewayInfo: { networkId: net.id } }, demo.token))
  t.equal(bad.code, status.INVALID_ARGUMENT)
  t.match(bad.details, new RegExp(`Network ${net.id} is not a valid external network`))
  t.equal(fieldOf(bad), 'external_gateway_info.network_id')
  t.match(await routerOf(r.id), { revisionNumber: 1, externalGatewayInfo: undefined }, 'and nothing changed')
  t.same(await portsOf({ deviceId: r.id }), [], 'no port was made')
  const badCreate = await failure(call(c.routers, 'createRouter', { name: 'r-gw-bad', externalGatewayInfo: { networkId: net.id } }, demo.token))
  t.equal(badCreate.code, status.INVALID_ARGUMENT)
  t.notOk((await call<ListRoutersResponse>(c.routers, 'listRouters', { name: 'r-gw-bad' }, demo.token)).routers.length, 'a create that fails leaves no router')

  const noSnat = await failure(call(c.routers, 'updateRouter', { id: r.id, externalGatewayInfo: { networkId: cloud.network.id, enableSnat: false } }, demo.token))
  t.equal(noSnat.code, status.PERMISSION_DENIED, 'members may not disable SNAT (Neutron policy)')
  const { n, value: gw } = await notices(() => call<Router>(c.routers, 'updateRouter', { id: r.id, externalGatewayInfo: { networkId: cloud.network.id } }, demo.token))
  t.ok(n >= 1, 'announced on strato.router.changed')
  t.match(gw.externalGatewayInfo, { networkId: cloud.network.id, enableSnat: true, externalFixedIps: [{ subnetId: cloud.subnet.id, ipAddress: /^192\.168\.201\.2\d\d$/ }] })
  const [port] = await portsOf({ deviceId: r.id })
  t.match(port, { deviceOwner: 'network:router_gateway', networkId: cloud.network.id, projectId: '', securityGroups: [] })
  t.equal((await failure(call(c.ports, 'deletePort', { id: port!.id }, cloud.s.adminToken))).code, status.ABORTED, 'a router port cannot be deleted directly')

  const admin = await call<Router>(c.routers, 'updateRouter', { id: r.id, externalGatewayInfo: { networkId: cloud.network.id, enableSnat: false, externalFixedIps: [{ ipAddress: '192.168.201.60' }] } }, cloud.s.adminToken)
  t.match(admin.externalGatewayInfo, { enableSnat: false, externalFixedIps: [{ ipAddress: '192.168.201.60' }] }, 'admins choose the address and SNAT')
  t.notOk((await portsOf({ networkId: cloud.network.id })).some((p) => p.id === port!.id), 'the old gateway port is gone')
  const cleared = await call<Router>(c.routers, 'updateRouter', { id: r.id, clearExternalGateway: true }, demo.token)
  t.notOk(cleared.externalGatewayInfo)
  t.same(await portsOf({ deviceId: r.id }), [], 'clearing removes the gateway port')
  await call(c.routers, 'updateRouter', { id: r.id, externalGatewayInfo: { networkId: cloud.network.id } }, demo.token)
  await call(c.routers, 'deleteRouter', { id: r.id }, demo.token)
  t.same(await portsOf({ deviceId: r.id }), [], 'deleting the router removes its gateway port')
})

t.test('interfaces by subnet: the gateway IP; one router per subnet; no overlaps on one router', async (t) => {
  const a = await projectNet('if-a', '10.92.0.0/24')
  const b = await projectNet('if-b', '10.93.0.0/24')
  const overlap = await projectNet('if-overlap', '10.92.0.0/25')
  const noGw = await projectNet('if-nogw', '10.94.0.0/24', demo.token, { noGateway: true })
  const r1 = await call<Router>(c.routers, 'createRouter', { name: 'r-if1' }, demo.token)
  const r2 = await call<Router>(c.routers, 'createRouter', { name: 'r-if2' }, demo.token)

  const info = await call<RouterInterfaceInfo>(c.routers, 'addRouterInterface', { routerId: r1.id, subnetId: a.subnet.id }, demo.token)
  t.match(info, { id: r1.id, projectId: demo.projectId, subnetId: a.subnet.id, subnetIds: [a.subnet.id], networkId: a.net.id })
  const [port] = await portsOf({ deviceId: r1.id })
  t.match(port, { id: info.portId, deviceOwner: 'network:router_interface', projectId: demo.projectId, fixedIps: [{ subnetId: a.subnet.id, ipAddress: '10.92.0.1' }], securityGroups: [] })
  t.match((await routerOf(r1.id, demo.token)).interfacesInfo, [{ portId: info.portId, subnetId: a.subnet.id, ipAddress: '10.92.0.1' }])

  const again = await failure(call(c.routers, 'addRouterInterface', { routerId: r1.id, subnetId: a.subnet.id }, demo.token))
  t.equal(again.code, status.INVALID_ARGUMENT)
  t.match(again.details, /already has a port on subnet/)
  const taken = await failure(call(c.routers, 'addRouterInterface', { routerId: r2.id, subnetId: a.subnet.id }, demo.token))
  t.equal(taken.code, status.ABORTED, 'a subnet on another router: CONFLICT')
  t.match(taken.details, new RegExp(`already on router ${r1.id} \\('r-if1'\\)`), 'naming that router')
  const over = await failure(call(c.routers, 'addRouterInterface', { routerId: r1.id, subnetId: overlap.subnet.id }, demo.token))
  t.equal(over.code, status.INVALID_ARGUMENT)
  t.match(over.details, /Cidr 10\.92\.0\.0\/25 of subnet .* overlaps with cidr 10\.92\.0\.0\/24/)
  const gwless = await failure(call(c.routers, 'addRouterInterface', { routerId: r1.id, subnetId: noGw.subnet.id }, demo.token))
  t.equal(gwless.code, status.INVALID_ARGUMENT)
  t.match(gwless.details, /has no gateway IP/)
  const external = await failure(call(c.routers, 'addRouterInterface', { routerId: r1.id, subnetId: cloud.subnet.id }, demo.token))
  t.equal(external.code, status.INVALID_ARGUMENT, "an external network's subnet is reached through the gateway, not an interface (its gateway IP is the outside router's)")
  t.match(external.details, /is on external network/)
  t.equal((await failure(call(c.routers, 'addRouterInterface', { routerId: r1.id }, demo.token))).code, status.INVALID_ARGUMENT, 'neither subnet nor port')
  t.equal((await failure(call(c.routers, 'addRouterInterface', { routerId: r1.id, subnetId: a.subnet.id, portId: port!.id }, demo.token))).code, status.INVALID_ARGUMENT, 'both')
  t.equal((await portsOf({ deviceId: r1.id })).length, 1, 'the refusals made no port')
  t.equal((await portsOf({ deviceId: r2.id })).length, 0)
  // The overlapping subnet is fine on another router.
  await call(c.routers, 'addRouterInterface', { routerId: r2.id, subnetId: overlap.subnet.id }, demo.token)

  t.equal((await failure(call(c.ports, 'deletePort', { id: port!.id }, demo.token))).code, status.ABORTED, 'an interface port cannot be deleted directly')
  t.equal((await failure(call(c.subnets, 'deleteSubnet', { id: a.subnet.id }, demo.token))).code, status.ABORTED, 'nor its subnet')
  const moved = await failure(call(c.subnets, 'updateSubnet', { id: a.subnet.id, noGateway: true }, demo.token))
  t.equal(moved.code, status.ABORTED, "the subnet's gateway does not move from under its router")
  t.match(moved.details, new RegExp(`is on router ${r1.id}`))

  await call(c.routers, 'addRouterInterface', { routerId: r1.id, subnetId: b.subnet.id }, demo.token)
  const inUse = await failure(call(c.routers, 'deleteRouter', { id: r1.id }, demo.token))
  t.equal(inUse.code, status.ABORTED, 'delete refused while interfaces exist')
  t.match(inUse.details, new RegExp(`Router ${r1.id} is in use: it still has ports .*${port!.id} \\(subnet ${a.subnet.id}, 10\\.92\\.0\\.1\\)`), 'naming them')

  const gone = await call<RouterInterfaceInfo>(c.routers, 'removeRouterInterface', { routerId: r1.id, subnetId: a.subnet.id }, demo.token)
  t.equal(gone.portId, port!.id)
  t.notOk((await portsOf({ deviceId: r1.id })).some((p) => p.id === port!.id), 'removing the interface deletes its port')
  const notThere = await failure(call(c.routers, 'removeRouterInterface', { routerId: r1.id, subnetId: a.subnet.id }, demo.token))
  t.equal(notThere.code, status.NOT_FOUND)
  await call(c.routers, 'removeRouterInterface', { routerId: r1.id, subnetId: b.subnet.id }, demo.token)
  await call(c.routers, 'removeRouterInterface', { routerId: r2.id, subnetId: overlap.subnet.id }, demo.token)
  await call(c.routers, 'deleteRouter', { id: r1.id }, demo.token)
  await call(c.routers, 'deleteRouter', { id: r2.id }, demo.token)
})

t.test('interfaces by port: unbound, of the router\'s project (admins excepted)', async (t) => {
  const a = await projectNet('ifp-a', '10.95.0.0/24')
  const o = await projectNet('ifp-o', '10.96.0.0/24', other.token)
  const r = await call<Router>(c.routers, 'createRouter', { name: 'r-ifp' }, demo.token)
  const bound = await call<Port>(c.ports, 'createPort', { networkId: a.net.id, deviceId: 'some-server', deviceOwner: 'compute:nova' }, demo.token)
  const inUse = await failure(call(c.routers, 'addRouterInterface', { routerId: r.id, portId: bound.id }, demo.token))
  t.equal(inUse.code, status.ABORTED)
  t.match(inUse.details, /already has an attached device some-server/)
  const theirs = await call<Port>(c.ports, 'createPort', { networkId: o.net.id }, other.token)
  t.equal((await failure(call(c.routers, 'addRouterInterface', { routerId: r.id, portId: theirs.id }, demo.token))).code, status.NOT_FOUND, "another project's port is invisible to a member")
  const cross = await failure(call(c.routers, 'addRouterInterface', { routerId: r.id, portId: theirs.id }, other.token))
  t.equal(cross.code, status.NOT_FOUND, 'and the router to the port\'s owner')
  const fake = await failure(call(c.ports, 'createPort', { networkId: a.net.id, deviceOwner: 'network:router_interface', deviceId: r.id }, demo.token))
  t.equal(fake.code, status.INVALID_ARGUMENT, 'the port API makes no router port')
  const free = await call<Port>(c.ports, 'createPort', { networkId: a.net.id, fixedIps: [{ ipAddress: '10.95.0.254' }] }, demo.token)
  t.ok(free.securityGroups.length > 0, 'a user port has groups…')
  const info = await call<RouterInterfaceInfo>(c.routers, 'addRouterInterface', { routerId: r.id, portId: free.id }, demo.token)
  t.match(info, { portId: free.id, subnetIds: [a.subnet.id], networkId: a.net.id })
  t.match(await call<Port>(c.ports, 'getPort', { id: free.id }, demo.token), { deviceId: r.id, deviceOwner: 'network:router_interface', securityGroups: [] }, '…a router interface none')
  const unbind = await failure(call(c.ports, 'updatePort', { id: free.id, deviceId: '', deviceOwner: '' }, demo.token))
  t.equal(unbind.code, status.ABORTED, 'nor releases one')
  t.match(unbind.details, /changes through the router/)
  const byAdmin = await call<RouterInterfaceInfo>(c.routers, 'addRouterInterface', { routerId: r.id, portId: theirs.id }, cloud.s.adminToken)
  t.equal(byAdmin.portId, theirs.id, 'an admin may join another project\'s port')
  await call(c.routers, 'removeRouterInterface', { routerId: r.id, portId: theirs.id }, cloud.s.adminToken)
  await call(c.routers, 'removeRouterInterface', { routerId: r.id, portId: free.id }, demo.token)
  t.equal((await failure(call(c.ports, 'getPort', { id: free.id }, demo.token))).code, status.NOT_FOUND, "the port goes with the interface (Neutron's)")
  await call(c.routers, 'deleteRouter', { id: r.id }, demo.token)
})

t.test('routes: the nexthop on one of the router\'s subnets; an interface a route needs stays', async (t) => {
  const a = await projectNet('rt-a', '10.97.0.0/24')
  const r = await call<Router>(c.routers, 'createRouter', { name: 'r-rt' }, demo.token)
  await call(c.routers, 'addRouterInterface', { routerId: r.id, subnetId: a.subnet.id }, demo.token)
  const far = await failure(call(c.routers, 'updateRouter', { id: r.id, routes: { routes: [{ destination: '172.16.0.0/16', nexthop: '10.98.0.5' }] } }, demo.token))
  t.equal(far.code, status.INVALID_ARGUMENT)
  t.match(far.details, /the nexthop is not connected with router/)
  const own = await failure(call(c.routers, 'updateRouter', { id: r.id, routes: { routes: [{ destination: '172.16.0.0/16', nexthop: '10.97.0.1' }] } }, demo.token))
  t.match(own.details, /the nexthop is used by router/)
  const hostBits = await failure(call(c.routers, 'updateRouter', { id: r.id, routes: { routes: [{ destination: '172.16.0.1/16', nexthop: '10.97.0.5' }] } }, demo.token))
  t.equal(fieldOf(hostBits), 'routes[0].destination')
  t.same((await routerOf(r.id)).routes, [], 'refused routes changed nothing')
  const set = await call<Router>(c.routers, 'updateRouter', { id: r.id, routes: { routes: [{ destination: '172.16.0.0/16', nexthop: '10.97.0.5' }] } }, demo.token)
  t.same(set.routes, [{ destination: '172.16.0.0/16', nexthop: '10.97.0.5' }])
  const needed = await failure(call(c.routers, 'removeRouterInterface', { routerId: r.id, subnetId: a.subnet.id }, demo.token))
  t.equal(needed.code, status.ABORTED)
  t.match(needed.details, /required by one or more routes \(172\.16\.0\.0\/16 via 10\.97\.0\.5\)/)
  t.same((await call<Router>(c.routers, 'updateRouter', { id: r.id, routes: { routes: [] } }, demo.token)).routes, [], 'an empty list removes them')
  await call(c.routers, 'removeRouterInterface', { routerId: r.id, subnetId: a.subnet.id }, demo.token)
  await call(c.routers, 'deleteRouter', { id: r.id }, demo.token)
})

t.test('floating IPs go through a router with a gateway on their network and an interface on the port\'s subnet', async (t) => {
  const a = await projectNet('fip-a', '10.99.0.0/24')
  const vmPort = await call<Port>(c.ports, 'createPort', { networkId: a.net.id }, demo.token)
  const fip = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: cloud.network.id }, demo.token)
  const none = await failure(call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: vmPort.id }, demo.token))
  t.equal(none.code, status.NOT_FOUND, "no router: Neutron's ExternalGatewayForFloatingIPNotFound")
  t.match(none.details, new RegExp(`External network ${cloud.network.id} is not reachable from subnet ${a.subnet.id}\\. Therefore, cannot associate Port ${vmPort.id} with a Floating IP\\.`))
  const r = await call<Router>(c.routers, 'createRouter', { name: 'r-fip' }, demo.token)
  await call(c.routers, 'addRouterInterface', { routerId: r.id, subnetId: a.subnet.id }, demo.token)
  t.equal((await failure(call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: vmPort.id }, demo.token))).code, status.NOT_FOUND, 'an interface without a gateway is not enough')
  t.match(await call<FloatingIp>(c.floatingIps, 'getFloatingIp', { id: fip.id }, demo.token), { portId: '', routerId: '', status: 'DOWN' }, 'refusals changed nothing')
  await call(c.routers, 'updateRouter', { id: r.id, externalGatewayInfo: { networkId: cloud.network.id } }, demo.token)
  const { n, value: assoc } = await notices(() => call<FloatingIp>(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: vmPort.id }, demo.token))
  t.match(assoc, { portId: vmPort.id, routerId: r.id, status: 'ACTIVE', fixedIpAddress: vmPort.fixedIps[0]!.ipAddress })
  t.ok(n >= 1, 'associating is announced on strato.router.changed')

  const needed = await failure(call(c.routers, 'removeRouterInterface', { routerId: r.id, subnetId: a.subnet.id }, demo.token))
  t.equal(needed.code, status.ABORTED, "RouterInterfaceInUseByFloatingIP")
  t.match(needed.details, new RegExp(`Router interface for subnet ${a.subnet.id} on router ${r.id} cannot be deleted, as it is required by one or more floating IPs`))
  const gwNeeded = await failure(call(c.routers, 'updateRouter', { id: r.id, clearExternalGateway: true }, demo.token))
  t.equal(gwNeeded.code, status.ABORTED)
  t.match(gwNeeded.details, /required by one or more floating IPs/)
  t.ok((await routerOf(r.id)).externalGatewayInfo, 'the gateway stayed')

  const theirFip = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: cloud.network.id }, other.token)
  t.equal((await failure(call(c.floatingIps, 'updateFloatingIp', { id: theirFip.id, portId: vmPort.id }, other.token))).code, status.NOT_FOUND, 'across projects: the port is invisible')
  const adminCross = await failure(call(c.floatingIps, 'updateFloatingIp', { id: theirFip.id, portId: vmPort.id }, cloud.s.adminToken))
  t.equal(adminCross.code, status.INVALID_ARGUMENT, 'and refused even for an admin')
  t.match(adminCross.details, /belongs to another project/)

  await call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: '' }, demo.token)
  t.match(await call<FloatingIp>(c.floatingIps, 'getFloatingIp', { id: fip.id }, demo.token), { routerId: '', status: 'DOWN' }, 'dissociating clears router_id')
  await call(c.routers, 'removeRouterInterface', { routerId: r.id, subnetId: a.subnet.id }, demo.token)
  await call(c.floatingIps, 'deleteFloatingIp', { id: fip.id }, demo.token)
  await call(c.floatingIps, 'deleteFloatingIp', { id: theirFip.id }, other.token)
  await call(c.ports, 'deletePort', { id: vmPort.id }, demo.token)
  await call(c.routers, 'deleteRouter', { id: r.id }, demo.token)
})

t.test("placement on the L3 agent with the fewest routers, the conductor's answer, re-placement off a dead agent", async (t) => {
  const a = await projectNet('pl-a', '10.100.0.0/24')
  const b = await projectNet('pl-b', '10.101.0.0/24')
  // A third host announces without the L3 role: never chosen.
  await conductor('l3c').announce({ host: 'l3c', uuid: '6f1e0b7c-2f1a-4c1e-9a51-0f3a8d2b9c10', l3: false, capabilities: { cpuModel: 'x', arch: 'x86_64', vcpus: 2, memoryMb: 2048, diskGb: 10 } })

  const r1 = await call<Router>(c.routers, 'createRouter', { name: 'r-pl1' }, demo.token)
  t.equal((await routerOf(r1.id)).l3AgentHost, '', 'no gateway nor interface: on no agent')
  await call(c.routers, 'addRouterInterface', { routerId: r1.id, subnetId: a.subnet.id }, demo.token)
  const host1 = (await routerOf(r1.id)).l3AgentHost
  t.ok(['l3a', 'l3b'].includes(host1), `placed on an L3 agent (${host1})`)
  t.equal((await routerOf(r1.id, demo.token)).l3AgentHost, '', 'shown to admins only')
  const r2 = await call<Router>(c.routers, 'createRouter', { name: 'r-pl2', externalGatewayInfo: { networkId: cloud.network.id } }, demo.token)
  const host2 = (await routerOf(r2.id)).l3AgentHost
  t.ok(['l3a', 'l3b'].includes(host2) && host2 !== host1, `the second router goes to the other agent (${host2}): fewest routers`)
  // A router joining a local network whose ports live on one host goes to that host's agent.
  const c3 = await projectNet('pl-c', '10.102.0.0/24')
  const bound = await call<Port>(c.ports, 'createPort', { networkId: c3.net.id }, demo.token)
  await cloud.s.controller.db.updateTable('ports').set({ binding_host_id: host2 }).where('id', '=', bound.id).execute()
  const r3 = await call<Router>(c.routers, 'createRouter', { name: 'r-pl3' }, demo.token)
  await call(c.routers, 'addRouterInterface', { routerId: r3.id, subnetId: c3.subnet.id }, demo.token)
  // Both agents hold one router: without the preference the tie would go to the first by name (${host1}).
  t.equal((await routerOf(r3.id)).l3AgentHost, host2, `near its network's ports (${host2})`)
  await call(c.routers, 'removeRouterInterface', { routerId: r3.id, subnetId: c3.subnet.id }, demo.token)
  await call(c.routers, 'deleteRouter', { id: r3.id }, demo.token)
  await call(c.ports, 'deletePort', { id: bound.id }, demo.token)
  const [qr] = await portsOf({ deviceId: r1.id })
  t.match(qr, { bindingHostId: host1, status: 'ACTIVE' }, "the router's ports are bound to its agent's host")

  await call(c.routers, 'addRouterInterface', { routerId: r2.id, subnetId: b.subnet.id }, demo.token)
  const vmPort = await call<Port>(c.ports, 'createPort', { networkId: b.net.id }, demo.token)
  const fip = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: cloud.network.id, portId: vmPort.id }, demo.token)
  await call(c.routers, 'updateRouter', { id: r2.id, routes: { routes: [{ destination: '172.20.0.0/16', nexthop: '10.101.0.9' }] } }, demo.token)

  t.same(await conductor('l3c').routers(), [], 'the host without the role holds nothing')
  const specs = await conductor(host2).routers()
  t.same(specs.map((s) => s.id), [r2.id], 'each agent gets the routers placed on it')
  const spec = specs[0]!
  const gwRouter = await routerOf(r2.id)
  const gwPort = (await portsOf({ deviceId: r2.id, deviceOwner: 'network:router_gateway' }))[0]!
  const ifPort = (await portsOf({ deviceId: r2.id, deviceOwner: 'network:router_interface' }))[0]!
  // r3 lived on ${host2} for a moment: its agent takes the delete notice when it comes to it.
  await eventually(async () => (builtOn(host2).includes(r3.id) ? undefined : true), 15_000, `the agent on ${host2} to drop the deleted ${r3.id}`)
  t.same(await eventually(async () => (builtOn(host2).length ? builtOn(host2) : undefined), 15_000, `the agent on ${host2} to build ${r2.id}`), [r2.id], 'the agent holding it builds it')
  t.same(spec, {
    id: r2.id,
    adminStateUp: true,
    interfaces: [{ portId: ifPort.id, macAddress: ifPort.macAddress, network: { networkId: b.net.id, networkType: 'local', physicalNetwork: '', segmentationId: 0, mtu: 1500 }, addresses: ['10.101.0.1/24'], cidrs: ['10.101.0.0/24'] }],
    gateway: {
      portId: gwPort.id, macAddress: gwPort.macAddress, network: { networkId: cloud.network.id, networkType: 'flat', physicalNetwork: 'provider', segmentationId: 0, mtu: 1500 },
      addresses: [`${gwRouter.externalGatewayInfo!.externalFixedIps[0]!.ipAddress}/24`], cidrs: ['192.168.201.0/24'], nexthop: '192.168.201.1', enableSnat: true,
    },
    routes: [{ destination: '172.20.0.0/16', nexthop: '10.101.0.9' }],
    floatingIps: [{ id: fip.id, floatingIpAddress: fip.floatingIpAddress, fixedIpAddress: vmPort.fixedIps[0]!.ipAddress }],
  }, 'the whole router as the L3 agent builds it')
  await t.rejects(conductor('nowhere').routers(), { name: 'NotFound' }, 'an unknown host is refused')
  // The asking host is the subject's: a request on one host's subject for another host's routers is refused.
  const forged = await nc.request(conductorSubject(host1), ConductorRequest.encode({ routers: { host: host2 } }).finish(), { timeout: 5_000 })
  t.match(errorFromHeaders(forged.headers), { name: 'PermissionDenied', message: /may only ask for its own host/ })

  // The agent holding r2 stops for good: past the down time plus routerRescheduleAfterMs, r2 moves.
  const dying = cloud.agents.find((x) => x.agent.config.host === host2)!
  const { n } = await notices(async () => {
    await stopHostForGood(cloud, dying)
    await eventually(async () => (await routerOf(r2.id)).l3AgentHost === host1, 15_000, `router ${r2.id} to move to ${host1}`)
  })
  t.ok(n >= 1, 'the move is announced')
  t.match((await portsOf({ deviceId: r2.id, deviceOwner: 'network:router_gateway' }))[0], { bindingHostId: host1 }, 'its ports follow')
  t.same((await conductor(host1).routers()).map((s) => s.id).sort(), [r1.id, r2.id].sort(), 'the surviving agent now builds both')
  t.same(await conductor(host2).routers(), [], 'the dead one nothing')
  t.same(await eventually(async () => (builtOn(host1).length === 2 ? builtOn(host1) : undefined), 15_000, `the agent on ${host1} to build both`), [r1.id, r2.id].sort(), 'and its agent builds both')

  await call(c.floatingIps, 'deleteFloatingIp', { id: fip.id }, demo.token)
  await call(c.routers, 'updateRouter', { id: r2.id, routes: { routes: [] } }, demo.token)
  await call(c.routers, 'removeRouterInterface', { routerId: r2.id, subnetId: b.subnet.id }, demo.token)
  await call(c.routers, 'removeRouterInterface', { routerId: r1.id, subnetId: a.subnet.id }, demo.token)
  t.equal((await routerOf(r1.id)).l3AgentHost, '', 'a router with nothing left is on no agent')
  await call(c.routers, 'deleteRouter', { id: r1.id }, demo.token)
  await call(c.routers, 'deleteRouter', { id: r2.id }, demo.token)
})

t.test('an agent that builds no routers (l3Driver none) announces no L3 role: with no other agent, a router stays unplaced, as Neutron leaves it unscheduled', async (t) => {
  // A cloud of its own, whose one agent builds no routers.
  const lone = await startCloud({ hosts: [], controller: { network: { routerRescheduleAfterMs: 300 } } })
  let agent: TestAgent | undefined
  t.teardown(async () => {
    await agent?.stop()
    await lone.close()
  })
  agent = await startAgent(lone.nats.url, 'nol3', { l3Driver: 'none' })
  t.equal(agent.agent.l3, undefined, 'the agent has no router builder')
  const row = await eventually(() => lone.s.controller.db.selectFrom('compute_hosts').select(['host', 'l3']).where('host', '=', 'nol3').executeTakeFirst(), 15_000, 'the agent to announce')
  t.equal(row.l3, 0, 'its host is not an L3 agent')
  const lc = netClients(lone.s.address)
  t.teardown(() => lc.close())
  const ten = await tenant(lone.s, 'nol3demo')
  const net = await call<Network>(lc.networks, 'createNetwork', { name: 'nol3' }, ten.token)
  const sub = await call<Subnet>(lc.subnets, 'createSubnet', { networkId: net.id, cidr: '10.103.0.0/24' }, ten.token)
  const r = await call<Router>(lc.routers, 'createRouter', { name: 'r-nol3' }, ten.token)
  await call(lc.routers, 'addRouterInterface', { routerId: r.id, subnetId: sub.id }, ten.token)
  await lone.s.controller.routers.reschedule()
  t.match(await call<Router>(lc.routers, 'getRouter', { id: r.id }, lone.s.adminToken), { l3AgentHost: '', status: 'ACTIVE' }, 'the router is on no agent')
  const [qr] = (await call<ListPortsResponse>(lc.ports, 'listPorts', { deviceId: r.id }, lone.s.adminToken)).ports
  t.match(qr, { bindingHostId: '', status: 'DOWN' }, 'its interface is bound nowhere, and down')
})

t.test('policy: a reader sees the project\'s routers and changes none', async (t) => {
  const reader = await member(cloud.s, 'l3reader', demo.projectId, 'l3demo', 'reader')
  const r = await call<Router>(c.routers, 'createRouter', { name: 'r-policy' }, demo.token)
  t.equal((await call<Router>(c.routers, 'getRouter', { id: r.id }, reader.token)).name, 'r-policy')
  t.ok((await call<ListRoutersResponse>(c.routers, 'listRouters', {}, reader.token)).routers.some((x) => x.id === r.id))
  for (const [method, req] of [['createRouter', { name: 'x' }], ['updateRouter', { id: r.id, name: 'x' }], ['deleteRouter', { id: r.id }], ['addRouterInterface', { routerId: r.id, subnetId: cloud.subnet.id }], ['removeRouterInterface', { routerId: r.id, subnetId: cloud.subnet.id }]] as const) {
    t.equal((await failure(call(c.routers, method, req, reader.token))).code, status.PERMISSION_DENIED, `${method} refused`)
  }
  await call(c.routers, 'deleteRouter', { id: r.id }, demo.token)
})
