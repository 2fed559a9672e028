/**
 * Integration: the metadata service (agent/metadata/) in a network namespace
 * this test makes, standing for a network's DHCP namespace: 169.254.169.254
 * and guests' addresses on its loopback. A real controller, nats-server and
 * agents (fake virt driver) hold servers made through gRPC, one on another
 * host than the agent serving the namespace; clients run inside
 * the namespace (node through `ip netns exec`), bound to each source address.
 * Checks attribution by (network, source address), that the listening socket
 * lives in the namespace and the agent's thread is back in its own, and
 * prints the warm-cache latency. Needs root.
 */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import t from 'tap'
import { startCloud, type TestCloud } from '../../helpers/cloud.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { fetchInNamespace, percentiles } from '../../helpers/netns-http.js'
import { currentNetns } from '../../../agent/net/netns.js'
import { NotFound } from '../../../proto/errors.js'
import type { CreateServerResponse, Server } from '../../../proto/gen/strato/compute/v1/servers.js'

const run = promisify(execFile)
const ns = `meta-${process.pid.toString(16)}`
const UNKNOWN = '192.168.201.99'

const fetchFrom = (from: string, paths: string[], headers: Record<string, string> = {}) => fetchInNamespace(ns, from, paths, { headers })
const one = async (from: string, p: string, headers: Record<string, string> = {}) => (await fetchFrom(from, [p], headers))[0]!
/** TCP listeners on port 80, in the namespace or in the test's own. */
const listening = async (inNamespace: boolean) => (inNamespace ? await run('ip', ['netns', 'exec', ns, 'ss', '-Htln', 'sport', '= :80']) : await run('ss', ['-Htln', 'sport', '= :80'])).stdout

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces')
} else {
  let cloud: TestCloud | undefined
  t.teardown(async () => {
    await cloud?.close()
    await run('ip', ['netns', 'delete', ns]).catch(() => {})
  })
  await run('ip', ['netns', 'add', ns])
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
  cloud = await startCloud({ hosts: ['node1', 'node2'] })
  const c = cloud
  // Servers are an admin's, to pick their hosts: alice's on node1, whose agent serves the namespace; bob's on node2
  // (a shared network reaches one host's DHCP namespace from guests anywhere).
  const token = c.s.adminToken
  const agent = c.agents[0]!.agent
  const keyA = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@host'
  const keyB = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ8c3bH5m6aQfVtrXW0rU0mJqAO6fiX7nGx2b0c0bbbb bob@host'
  await call(c.c.keypairs, 'createKeypair', { name: 'alice', publicKey: keyA }, token)
  await call(c.c.keypairs, 'createKeypair', { name: 'bob', publicKey: keyB }, token)
  const boot = async (name: string, keyName: string, host: string, extra: object = {}): Promise<Decoded<Server>> => {
    const r = await call<CreateServerResponse>(c.c.servers, 'createServer', { name, flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: c.network.id }], keyName, availabilityZone: `nova:${host}`, ...extra }, token)
    return c.waitFor(r.servers[0]!.id, (s) => s.status === 'ACTIVE', token)
  }
  const a = await boot('alice-vm', 'alice', 'node1', { userData: Buffer.from('#cloud-config\nhostname: alice\n').toString('base64'), metadata: { role: 'web' } })
  const b = await boot('bob-vm', 'bob', 'node2')
  const hosts = [(await call<Server>(c.c.servers, 'getServer', { id: a.id }, token)).host, (await call<Server>(c.c.servers, 'getServer', { id: b.id }, token)).host]
  const ipA = a.addresses[0]!.addr
  const ipB = b.addresses[0]!.addr
  for (const addr of ['169.254.169.254', ipA, ipB, UNKNOWN]) await run('ip', ['-n', ns, 'addr', 'add', `${addr}/32`, 'dev', 'lo'])

  const before = currentNetns()
  await agent.metadata.attach(c.network.id, ns)

  t.test("the listener lives in the namespace; the agent's thread is back in its own", async (t) => {
    t.equal(currentNetns(), before, 'readlink /proc/thread-self/ns/net is unchanged')
    t.match(await listening(true), /169\.254\.169\.254:80\b/, 'ss inside the namespace shows 169.254.169.254:80')
    t.notMatch(await listening(false), /169\.254\.169\.254:80\b/, 'the agent’s own namespace has no such listener')
    await agent.metadata.attach(c.network.id, ns)
    t.same([...agent.metadata.attached()], [[c.network.id, ns]], 'attaching again is a no-op')
    const err = await agent.metadata.attach('another-network', `${ns}-missing`).catch((e: unknown) => e)
    t.ok(err instanceof NotFound, 'a missing namespace: NotFound')
    t.match((err as Error).message, `network namespace '${ns}-missing' does not exist`)
    t.equal(currentNetns(), before)
  })

  t.test("a guest gets its own meta_data.json: uuid, name, key; the EC2 paths; user data", async (t) => {
    const [md, listing, iid, keys, key, ud, az, ipv4] = await fetchFrom(ipA, [
      '/openstack/latest/meta_data.json', '/openstack/latest/', '/latest/meta-data/instance-id', '/latest/meta-data/public-keys/',
      '/latest/meta-data/public-keys/0/openssh-key', '/latest/user-data', '/latest/meta-data/placement/availability-zone', '/latest/meta-data/local-ipv4',
    ])
    t.equal(md!.status, 200)
    t.equal(md!.type, 'application/json')
    t.match(JSON.parse(md!.body), { uuid: a.id, name: 'alice-vm', hostname: 'alice-vm', public_keys: { alice: keyA }, keys: [{ name: 'alice', type: 'ssh', data: keyA }], meta: { role: 'web' }, project_id: a.projectId })
    t.equal(listing!.body, 'meta_data.json\nuser_data\nvendor_data.json\nnetwork_data.json\nvendor_data2.json')
    t.equal(iid!.body, `i-${a.id.slice(0, 8)}`)
    t.equal(keys!.body, '0=alice')
    t.equal(key!.body, keyA)
    t.equal(ud!.body, '#cloud-config\nhostname: alice\n')
    t.equal(az!.body, 'nova')
    t.equal(ipv4!.body, ipA)
    const nd = JSON.parse((await one(ipA, '/openstack/latest/network_data.json')).body) as { networks: Array<{ ip_address: string; network_id: string }> }
    t.match(nd.networks, [{ ip_address: ipA, network_id: c.network.id }])
  })

  t.test("a second guest gets only its own data, whatever headers it sends", async (t) => {
    t.same(hosts, ['node1', 'node2'], "bob's server runs on another host than the agent serving the namespace")
    const md = JSON.parse((await one(ipB, '/openstack/latest/meta_data.json')).body) as { uuid: string; public_keys: Record<string, string> }
    t.equal(md.uuid, b.id)
    t.same(md.public_keys, { bob: keyB })
    const spoof = { 'x-forwarded-for': ipA, 'x-neutron-network-id': c.network.id, 'x-instance-id': a.id }
    const spoofed = JSON.parse((await one(ipB, '/openstack/latest/meta_data.json', spoof)).body) as { uuid: string }
    t.equal(spoofed.uuid, b.id, 'X-Forwarded-For and X-Instance-ID are ignored')
    t.equal((await one(ipB, '/latest/user-data')).status, 404, 'bob has no user data: 404')
  })

  t.test('an address no port holds gets 404 (but / still lists the versions, as Nova)', async (t) => {
    const [md, ec2, root] = await fetchFrom(UNKNOWN, ['/openstack/latest/meta_data.json', '/latest/meta-data/', '/'])
    t.equal(md!.status, 404)
    t.equal(ec2!.status, 404)
    t.equal(root!.status, 200)
    t.match(root!.body, /2009-04-04\nlatest$/)
    const spoofed = await one(UNKNOWN, '/openstack/latest/meta_data.json', { 'x-forwarded-for': ipA })
    t.equal(spoofed.status, 404, 'a forged X-Forwarded-For does not help')
  })

  t.test('latency, warm cache: 200 requests from inside the namespace, a new connection each', async (t) => {
    const paths = Array.from({ length: 200 }, (_, i) => (i % 2 ? '/openstack/latest/meta_data.json' : '/latest/meta-data/instance-id'))
    const got = await fetchFrom(ipA, paths)
    t.ok(got.every((g) => g.status === 200), 'all answered')
    t.comment(`metadata latency (client in the namespace, new TCP connection per request, warm cache): ${percentiles(got.map((g) => g.ms))}`)
  })

  t.test('a deleted server: its address gets 404 at once (the ports-changed notice drops the cache)', async (t) => {
    t.equal((await one(ipA, '/latest/meta-data/instance-id')).status, 200, 'cached first')
    await call(c.c.servers, 'deleteServer', { id: a.id }, token)
    await eventually(async () => (await one(ipA, '/latest/meta-data/instance-id')).status === 404, 10_000, '404 for the deleted server’s address')
    t.pass('404 well before the cache TTL (30 s)')
  })

  t.test('detach closes the listener; stop closes the rest', async (t) => {
    await agent.metadata.detach(c.network.id)
    t.notMatch(await listening(true), /:80\b/, 'nothing listens in the namespace')
    await t.rejects(one(ipB, '/'), 'connections are refused')
    await agent.metadata.attach(c.network.id, ns)
    t.equal((await one(ipB, '/latest/meta-data/hostname')).body, 'bob-vm', 'attached again')
    await c.agents[0]!.stop()
    t.notMatch(await listening(true), /:80\b/, 'the agent stopped: nothing listens')
    t.equal(currentNetns(), before)
  })
}
