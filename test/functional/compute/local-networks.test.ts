// Servers on project networks of type `local` (a bridge per host, not connected across hosts: this
// kernel has no VXLAN, VLAN or GRE) are kept where their networks are, through the real gRPC API and
// two fake-driver hosts: a network's servers share a host even though the spread weighers would
// alternate; a server on two local networks that live on different hosts gets no host, and the
// message says why; a flat (provider) network's servers still spread.
import t from 'tap'
import { serverGone, startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, failure, status } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import type { CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { Network, Subnet } from '../../../proto/gen/strato/network/v1/network.js'

let cloud: TestCloud
let demo: Tenant
const made: string[] = []

t.before(async () => {
  cloud = await startCloud({ hosts: ['ln1', 'ln2'] })
  demo = await tenant(cloud.s, 'localnets')
})
t.teardown(async () => {
  for (const id of made) await call(cloud.c.servers, 'deleteServer', { id }, cloud.s.adminToken).catch(() => undefined)
  for (const id of made) await eventually(() => serverGone(cloud.c, id, cloud.s.adminToken), 10_000, 'deleted').catch(() => undefined)
  await cloud.close()
})

async function localNet(name: string, cidr: string): Promise<string> {
  const net = await call<Network>(cloud.c.networks, 'createNetwork', { name }, demo.token)
  await call<Subnet>(cloud.c.subnets, 'createSubnet', { networkId: net.id, cidr, name }, demo.token)
  t.equal(net.providerNetworkType, 'local', `${name} is a local network`)
  return net.id
}
async function boot(name: string, networks: string[], extra: object = {}): Promise<string[]> {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: 'm1.nano', imageRef: 'cirros', networks: networks.map((uuid) => ({ uuid })), ...extra }, demo.token)
  made.push(...r.servers.map((s) => s.id))
  return r.servers.map((s) => s.id)
}
const hostOf = async (id: string) => (await call<Server>(cloud.c.servers, 'getServer', { id }, cloud.s.adminToken)).host

let a: string
let b: string
let first: string

t.test("a local network's servers share the host of its first one", async (t) => {
  a = await localNet('ln-a', '10.71.1.0/24')
  const ids: string[] = []
  for (let i = 0; i < 4; i++) ids.push(...(await boot(`a-${i}`, [a])))
  const hosts = await Promise.all(ids.map(hostOf))
  first = hosts[0]!
  t.same(hosts, [first, first, first, first], `all four on ${first} (spread alone would alternate)`)
})

t.test('a new local network goes anywhere: here the emptier host; several servers of one request stay together', async (t) => {
  b = await localNet('ln-b', '10.71.2.0/24')
  const [one] = await boot('b-0', [b])
  const other = await hostOf(one!)
  t.not(other, first, 'the spread weighers chose the other host for the network\'s first server')
  const c = await localNet('ln-c', '10.71.3.0/24')
  const three = await boot('c', [c], { minCount: 3, maxCount: 3 })
  const hosts = await Promise.all(three.map(hostOf))
  t.equal(new Set(hosts).size, 1, `min_count 3 on a new local network: one host (${hosts.join(', ')})`)
})

t.test('a server on two local networks that live on different hosts gets none, and is told why', async (t) => {
  const e = await failure(boot('both', [a, b]))
  t.equal(e.code, status.RESOURCE_EXHAUSTED)
  t.match(e.details, /0 after LocalNetworkFilter \(local network .* on ln\d; local network .* on ln\d\)/)
  t.match(e.details, /a local network does not reach across hosts/)
})

t.test("a flat provider network's servers still spread", async (t) => {
  const ids = [...(await boot('p-0', [cloud.network.id])), ...(await boot('p-1', [cloud.network.id]))]
  const hosts = await Promise.all(ids.map(hostOf))
  t.equal(new Set([...hosts, first]).size, 2, `both hosts are used (${hosts.join(', ')})`)
})
