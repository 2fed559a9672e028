// Servers with Nova semantics through the real gRPC API, a real nats-server and agents on the fake
// driver: create → BUILD → ACTIVE with ports and addresses, the state table for every action, console
// output over agent request/reply, delete leaving nothing, failures that change nothing, failed builds
// that end in ERROR with a fault and give everything back, quotas under concurrency, power-state sync.
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { serverGone, startCloud, uploadImage, type TestCloud } from '../../helpers/cloud.js'
import { call, failure, fieldOf, status, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { tenant, type Tenant } from '../network/fixtures.js'
import { imageInfo } from '../../../native/index.js'
import { FailedPrecondition } from '../../../proto/errors.js'
import type { FakeDriver } from '../../../agent/virt/fake.js'
import type { RecordingFirewall } from '../../../agent/net/firewall.js'
import type { GuestInfo, GuestSpec } from '../../../agent/virt/driver.js'
import type { ConsoleOutput, CreateServerResponse, ListServerGroupsResponse, ListServersResponse, Server, ServerGroup } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { ListAvailabilityZonesResponse, QuotaSet } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { ListAllocationsResponse } from '../../../proto/gen/strato/placement/v1/placement.js'
import type { Image } from '../../../proto/gen/strato/image/v1/image.js'
import type { ListPortsResponse, Network } from '../../../proto/gen/strato/network/v1/network.js'

let cloud: TestCloud
let demo: Tenant

t.before(async () => {
  cloud = await startCloud({ hosts: ['node1', 'node2'] })
  demo = await tenant(cloud.s, 'demo')
})
t.teardown(() => cloud.close())

const create = (req: object, token = demo.token) => call<CreateServerResponse>(cloud.c.servers, 'createServer', req, token)
const get = (id: string, token = demo.token) => call<Server>(cloud.c.servers, 'getServer', { id }, token)
const act = (method: string, id: string, token = demo.token, extra: object = {}) => call<Server>(cloud.c.servers, method, { id, ...extra }, token)
const allocations = async (consumer: string) => (await call<ListAllocationsResponse>(cloud.c.placement, 'listAllocations', { consumerUuid: consumer }, cloud.s.adminToken)).allocations
const quota = async (token = demo.token) => Object.fromEntries((await call<QuotaSet>(cloud.c.quotas, 'getQuota', {}, token)).items.map((i) => [i.resource, i.inUse]))
const ports = async (deviceId: string) => (await call<ListPortsResponse>(cloud.c.ports, 'listPorts', { deviceId }, cloud.s.adminToken)).ports
const driverOf = (host: string) => cloud.agents.find((a) => a.agent.config.host === host)!
const active = (s: Decoded<Server>) => s.status === 'ACTIVE'
/** True once GetServer says NOT_FOUND; any other error fails the wait. */
const gone = (id: string, token = demo.token) => serverGone(cloud.c, id, token)
const seedRequest = () => ({ name: 'provider-instance', flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }], securityGroups: ['default'], keyName: 'mykey' })

t.test("the seed's server create: BUILD, then ACTIVE on a mapped host, with a port on the provider network", async (t) => {
  const ssh = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl demo@host'
  await call(cloud.c.keypairs, 'createKeypair', { name: 'mykey', publicKey: ssh }, demo.token)
  const before = await quota()
  const r = await create(seedRequest())
  t.equal(r.servers.length, 1)
  const created = r.servers[0]!
  t.match(created, { name: 'provider-instance', status: 'BUILD', vmState: 'building', projectId: demo.projectId, userId: demo.userId, keyName: 'mykey', imageId: cloud.image.id, imageName: 'cirros' })
  t.match(created.flavor, { id: '1', name: 'm1.nano', vcpus: 1, ram: 64, disk: 1 })
  t.equal(created.host, '', 'a member does not see the host (OS-EXT-SRV-ATTR is for admins)')
  t.match(created.reservationId, /^r-/)

  const up = await cloud.waitFor(created.id, active, demo.token)
  t.match(up, { vmState: 'active', taskState: '', powerState: 1, securityGroups: ['default'] })
  t.ok(up.launchedAt, 'launched_at is set')
  t.equal(up.addresses.length, 1)
  const addr = up.addresses[0]!
  t.match(addr, { networkId: cloud.network.id, networkName: 'provider', version: 4, type: 'fixed' })
  t.match(addr.addr, /^192\.168\.201\.2(0\d|10)$/, 'the fixed IP comes from the allocation pool')
  t.match(addr.macAddr, /^fa:16:3e(:[0-9a-f]{2}){3}$/)

  const port = (await ports(created.id))[0]!
  t.match(port, { deviceOwner: 'compute:nova', status: 'ACTIVE', macAddress: addr.macAddr }, 'the port is bound to the server and up')

  const admin = await get(created.id, cloud.s.adminToken)
  t.match(admin.host, /^node[12]$/, 'an admin sees the host')
  t.equal(admin.instanceName, `instance-${created.id}`)
  t.equal(admin.availabilityZone, 'nova')

  // What the agent made on its host: a guest sized from the flavor, a qcow2 overlay on the cached image.
  const a = driverOf(admin.host)
  const guest = await a.driver.getInfo(created.id)
  t.match(guest, { name: `instance-${created.id}`, vcpus: 1, memoryMiB: 64, powerState: 1 })
  const disk = path.join(a.agent.config.instancesDir, created.id, 'disk')
  const [info] = await imageInfo(disk, 'qcow2')
  t.equal(info?.backingFile, path.join(a.agent.config.instancesDir, '_base', `${cloud.image.id}.qcow2`), 'the root disk is an overlay on the cached base')
  t.equal(info?.virtualSize, 1024 ** 3, "grown to the flavor's 1 GiB")

  const after = await quota()
  t.same([after.instances! - before.instances!, after.cores! - before.cores!, after.ram! - before.ram!, after.ports! - before.ports!], [1, 1, 64, 1], 'instances, cores, ram and ports are in use')
  t.equal((await allocations(created.id)).length, 1, 'one allocation on its host')
})

t.test('config_drive false: no drive for the guest, and the server says so', async (t) => {
  const r = await create({ ...seedRequest(), name: 'no-drive', configDrive: false })
  const id = r.servers[0]!.id
  t.teardown(async () => {
    await act('deleteServer', id).catch(() => undefined)
    await eventually(() => gone(id), 10_000)
  })
  const up = await cloud.waitFor(id, active, demo.token)
  t.equal(up.configDrive, '', 'config_drive is empty, as Nova shows a server without one')
  const admin = await get(id, cloud.s.adminToken)
  const a = driverOf(admin.host)
  t.equal((a.driver as FakeDriver).specOf(id)?.configDrive, undefined, 'no CD-ROM')
  t.notOk(existsSync(path.join(a.agent.config.instancesDir, id, 'disk.config')), 'no ISO written')
})

t.test('the config drive carries the key, the user data, the metadata and the static network configuration', async (t) => {
  const userData = '#cloud-config\nruncmd: [echo strato]\n'
  const r = await create({ ...seedRequest(), name: 'With Drive_1', userData: Buffer.from(userData).toString('base64'), metadata: { role: 'web' } })
  const id = r.servers[0]!.id
  t.teardown(async () => {
    await act('deleteServer', id).catch(() => undefined)
    await eventually(() => gone(id), 10_000)
  })
  const up = await cloud.waitFor(id, active, demo.token)
  t.equal(up.configDrive, 'True', 'config_drive: True, as Nova shows it')
  const admin = await get(id, cloud.s.adminToken)
  const a = driverOf(admin.host)
  const iso = path.join(a.agent.config.instancesDir, id, 'disk.config')
  t.equal((a.driver as FakeDriver).specOf(id)?.configDrive, iso, 'the guest gets the drive as a CD-ROM')
  t.match(execFileSync('isoinfo', ['-d', '-i', iso], { encoding: 'utf8' }), /Volume id: config-2/, 'an ISO 9660 image labelled config-2')
  const read = (name: string) => execFileSync('isoinfo', ['-J', '-i', iso, '-x', `/openstack/latest/${name}`])
  const meta = JSON.parse(read('meta_data.json').toString())
  t.match(meta, {
    uuid: id, name: 'With Drive_1', hostname: 'with-drive-1', availability_zone: 'nova', project_id: demo.projectId, launch_index: 0,
    meta: { role: 'web' }, public_keys: { mykey: /^ssh-ed25519 AAAA/ }, keys: [{ name: 'mykey', type: 'ssh', data: /^ssh-ed25519 / }],
  })
  t.equal(Buffer.from(meta.random_seed, 'base64').length, 512, 'a random seed')
  t.equal(read('user_data').toString(), userData, 'the user data, decoded')
  const net = JSON.parse(read('network_data.json').toString())
  const addr = up.addresses[0]!
  t.same(net.links, [{ id: `tap${(await ports(id))[0]!.id.slice(0, 11)}`, vif_id: (await ports(id))[0]!.id, type: 'bridge', ethernet_mac_address: addr.macAddr }])
  t.match(net.networks, [{ id: 'network0', type: 'ipv4', ip_address: addr.addr, netmask: '255.255.255.0', network_id: cloud.network.id }])
  t.same(net.networks[0].routes, [{ network: '0.0.0.0', netmask: '0.0.0.0', gateway: '192.168.201.1' }], 'the default route through the subnet gateway')
  t.same(net.networks[0].services, [{ type: 'dns', address: '114.114.114.114' }], "the subnet's DNS server")
  t.same(net.services, [{ type: 'dns', address: '114.114.114.114' }])
  t.same(JSON.parse(read('vendor_data.json').toString()), {})
})

t.test("security groups reach the hosts' filtering: rules, remote-group members, changes", async (t) => {
  const fw = (host: string) => (driverOf(host).agent.firewall as RecordingFirewall)
  const onHost = (host: string, portId: string) => fw(host).applied.find((p) => p.portId === portId)
  const a = (await create({ ...seedRequest(), keyName: '', name: 'fw-a' })).servers[0]!.id
  t.teardown(async () => {
    await act('deleteServer', a).catch(() => undefined)
    await eventually(() => gone(a), 10_000)
  })
  const upA = await cloud.waitFor(a, active, demo.token)
  const hostA = (await get(a, cloud.s.adminToken)).host
  const portA = (await ports(a))[0]!
  const ipA = upA.addresses[0]!.addr
  const got = onHost(hostA, portA.id)
  t.ok(got, "the agent filters the port from the guest's first run")
  t.match(got, { macAddress: portA.macAddress, fixedIps: [ipA] })
  t.same(got!.rules.filter((r) => r.direction === 'egress').map((r) => r.ethertype).sort(), ['IPv4', 'IPv6'], "Neutron's default egress: everything, both families")
  const members = (p: typeof got) => p!.rules.filter((r) => r.direction === 'ingress' && r.protocol === -1).map((r) => r.remotePrefix)
  t.ok(members(got).includes(`${ipA}/32`), 'ingress from the members of the group: itself included')

  const group = await call<{ id: string }>(cloud.c.securityGroups, 'getSecurityGroup', { name: 'default' }, demo.token)
  const icmp = await call<{ id: string }>(cloud.c.securityGroups, 'createSecurityGroupRule', { securityGroupId: group.id, protocol: 'icmp' }, demo.token)
  const ssh = await call<{ id: string }>(cloud.c.securityGroups, 'createSecurityGroupRule', { securityGroupId: group.id, protocol: 'tcp', portRangeMin: 22, portRangeMax: 22 }, demo.token)
  await eventually(() => onHost(hostA, portA.id)!.rules.some((r) => r.protocol === 6 && r.portMin === 22 && r.portMax === 22 && r.remotePrefix === '') || undefined, 10_000, 'the tcp 22 rule on the host')
  t.ok(onHost(hostA, portA.id)!.rules.some((r) => r.protocol === 1 && r.portMin === -1 && r.ethertype === 'IPv4'), 'the icmp rule too (any type)')

  // A second member of the group: the first port's remote-group rule learns its address.
  const b = (await create({ ...seedRequest(), keyName: '', name: 'fw-b' })).servers[0]!.id
  const upB = await cloud.waitFor(b, active, demo.token)
  const ipB = upB.addresses[0]!.addr
  await eventually(() => members(onHost(hostA, portA.id)).includes(`${ipB}/32`) || undefined, 10_000, "b's address in a's rules")
  t.pass("a new member's address reaches the other members' hosts")

  await call(cloud.c.securityGroups, 'deleteSecurityGroupRule', { id: ssh.id }, demo.token)
  await call(cloud.c.securityGroups, 'deleteSecurityGroupRule', { id: icmp.id }, demo.token)
  await act('deleteServer', b)
  await eventually(() => gone(b), 10_000)
  await eventually(() => (!members(onHost(hostA, portA.id)).includes(`${ipB}/32`) && !onHost(hostA, portA.id)!.rules.some((r) => r.protocol === 6)) || undefined, 10_000, 'b and the removed rules gone from a')
  // Every agent refreshes on the same notice, each at its own pace (host a's may come first).
  await eventually(() => !cloud.agents.some((x) => (x.agent.firewall as RecordingFirewall).applied.some((p) => p.fixedIps.includes(ipB))) || undefined, 10_000, "b's port gone from every host")
  t.pass("no host filters the deleted server's port any more")
})

t.test('list, filters and visibility across projects', async (t) => {
  const other = await tenant(cloud.s, 'other')
  const mine = (await call<ListServersResponse>(cloud.c.servers, 'listServers', {}, demo.token)).servers
  t.same(mine.map((s) => s.name), ['provider-instance'])
  t.same((await call<ListServersResponse>(cloud.c.servers, 'listServers', {}, other.token)).servers, [], "another project's servers are invisible")
  const hidden = await failure(get(mine[0]!.id, other.token))
  t.equal(hidden.code, status.NOT_FOUND, 'and cannot be read by id')
  const stop = await failure(act('stopServer', mine[0]!.id, other.token))
  t.equal(stop.code, status.NOT_FOUND, 'or changed')
  const byName = await get('provider-instance')
  t.equal(byName.id, mine[0]!.id, 'GetServer takes a unique name too')
  t.same((await call<ListServersResponse>(cloud.c.servers, 'listServers', { status: 'SHUTOFF' }, demo.token)).servers, [])
  t.equal((await call<ListServersResponse>(cloud.c.servers, 'listServers', { status: 'active', name: '^provider' }, demo.token)).servers.length, 1)
  const all = await call<ListServersResponse>(cloud.c.servers, 'listServers', { allProjects: true }, cloud.s.adminToken)
  t.ok(all.servers.some((s) => s.projectId === demo.projectId), 'admins list every project with all_projects')
  const notAdmin = await failure(call(cloud.c.servers, 'listServers', { allProjects: true }, demo.token))
  t.equal(notAdmin.code, status.PERMISSION_DENIED)
  const badStatus = await failure(call(cloud.c.servers, 'listServers', { status: 'RUNNING' }, demo.token))
  t.equal(badStatus.code, status.INVALID_ARGUMENT)
  t.equal(fieldOf(badStatus), 'status')
})

t.test('actions follow the state table; the fake hypervisor agrees at each step', async (t) => {
  const s = await get('provider-instance')
  const host = (await get(s.id, cloud.s.adminToken)).host
  const hv = driverOf(host).driver

  const startActive = await failure(act('startServer', s.id))
  t.equal(startActive.code, status.FAILED_PRECONDITION, 'start needs SHUTOFF')
  t.match(startActive.details, /cannot start server .* while it is ACTIVE/)

  const stopping = await act('stopServer', s.id)
  t.equal(stopping.taskState, 'powering-off', 'stop answers at once with the task in progress')
  const again = await failure(act('stopServer', s.id))
  t.equal(again.code, status.FAILED_PRECONDITION, 'a second action waits for the first')
  await cloud.waitFor(s.id, (x) => x.status === 'SHUTOFF', demo.token)
  t.equal((await hv.getInfo(s.id)).powerState, 4, 'the guest is shut down')
  t.equal((await get(s.id)).powerState, 4)

  const softFromOff = await failure(act('rebootServer', s.id, demo.token, { type: 'SOFT' }))
  t.equal(softFromOff.code, status.FAILED_PRECONDITION, 'a soft reboot needs ACTIVE')
  const badType = await failure(act('rebootServer', s.id, demo.token, { type: 'WARM' }))
  t.equal(badType.code, status.INVALID_ARGUMENT)

  await act('startServer', s.id)
  await cloud.waitFor(s.id, active, demo.token)
  t.equal((await hv.getInfo(s.id)).powerState, 1, 'running again')

  const rebooting = await act('rebootServer', s.id)
  t.equal(rebooting.status, 'REBOOT')
  await cloud.waitFor(s.id, active, demo.token)
  await act('stopServer', s.id)
  await cloud.waitFor(s.id, (x) => x.status === 'SHUTOFF', demo.token)
  const hard = await act('rebootServer', s.id, demo.token, { type: 'HARD' })
  t.equal(hard.status, 'HARD_REBOOT', 'a hard reboot works from SHUTOFF')
  const up = await cloud.waitFor(s.id, active, demo.token)
  t.equal(up.powerState, 1)
  t.equal((await hv.getInfo(s.id)).powerState, 1)

  const out = await call<ConsoleOutput>(cloud.c.servers, 'getConsoleOutput', { id: s.id }, demo.token)
  t.match(out.output, `fake guest instance-${s.id} ${s.id} booted`, 'console output comes from the agent')
  const last = await call<ConsoleOutput>(cloud.c.servers, 'getConsoleOutput', { id: s.id, length: 1 }, demo.token)
  t.equal(last.output.trim().split('\n').length, 1, 'length keeps the last lines')

  const reader = await failure(act('stopServer', s.id, (await readerOf()).token))
  t.equal(reader.code, status.PERMISSION_DENIED, 'readers cannot change servers')
})

let readerToken: Tenant | undefined
async function readerOf(): Promise<Tenant> {
  if (!readerToken) {
    const { member } = await import('../network/fixtures.js')
    readerToken = await member(cloud.s, 'demo-reader', demo.projectId, 'demo', 'reader')
  }
  return readerToken
}

t.test('power-state sync: a guest that stops by itself makes the server SHUTOFF; a vanished one ERROR', async (t) => {
  const s = await get('provider-instance')
  const hv = driverOf((await get(s.id, cloud.s.adminToken)).host).driver
  hv.guestPoweredOff(s.id)
  const off = await cloud.waitFor(s.id, (x) => x.status === 'SHUTOFF', demo.token, 5_000, 'SHUTOFF from the sync')
  t.equal(off.powerState, 4)
  await act('startServer', s.id)
  await cloud.waitFor(s.id, active, demo.token)
})

t.test('delete: the guest, its disk, its ports, its allocation and its quota are gone', async (t) => {
  const r = await create({ name: 'doomed', flavorRef: cloud.flavor.id, imageRef: cloud.image.id, networks: [{ uuid: cloud.network.id }] })
  const id = r.servers[0]!.id
  await cloud.waitFor(id, active, demo.token)
  const host = (await get(id, cloud.s.adminToken)).host
  const a = driverOf(host)
  const before = await quota()
  const deleting = await act('deleteServer', id)
  t.equal(deleting.taskState, 'deleting')
  await eventually(() => gone(id), 5_000, 'the server to be gone')
  await t.rejects(a.driver.getInfo(id), { name: 'NotFound' }, 'no guest on the hypervisor')
  t.notOk(existsSync(path.join(a.agent.config.instancesDir, id)), 'no disk or console log left')
  t.same(await ports(id), [], 'its port is deleted')
  t.same(await allocations(id), [], 'its allocation is released')
  const after = await quota()
  t.same([before.instances! - after.instances!, before.cores! - after.cores!, before.ports! - after.ports!], [1, 1, 1])
  const listed = await call<ListServersResponse>(cloud.c.servers, 'listServers', { deleted: true, allProjects: true, name: '^doomed$' }, cloud.s.adminToken)
  t.match(listed.servers[0], { status: 'DELETED', vmState: 'deleted' }, 'admins still list it as DELETED')
  t.ok(listed.servers[0]?.terminatedAt)
})

t.test('requests that cannot be met fail with the reason and leave nothing behind', async (t) => {
  const before = await quota()
  const count = async () => (await call<ListServersResponse>(cloud.c.servers, 'listServers', {}, demo.token)).servers.length
  const n = await count()
  const cases: Array<[string, object, number, RegExp, string?]> = [
    ['no name', { ...seedRequest(), name: '' }, status.INVALID_ARGUMENT, /name must not be empty/, 'name'],
    ['unknown flavor', { ...seedRequest(), flavorRef: 'm9.huge' }, status.NOT_FOUND, /flavor 'm9.huge' not found/, 'flavor_ref'],
    ['unknown image', { ...seedRequest(), imageRef: 'nope' }, status.NOT_FOUND, /image 'nope' not found/, 'image_ref'],
    ['unknown keypair', { ...seedRequest(), keyName: 'nokey' }, status.NOT_FOUND, /keypair 'nokey' not found/, 'key_name'],
    ['unknown network', { ...seedRequest(), networks: [{ uuid: '00000000-0000-4000-8000-000000000000' }] }, status.NOT_FOUND, /network .* not found/, 'networks[0].uuid'],
    ['unknown security group', { ...seedRequest(), securityGroups: ['web'] }, status.NOT_FOUND, /security group 'web' not found/, 'security_groups[0]'],
    ['unknown zone', { ...seedRequest(), availabilityZone: 'mars' }, status.INVALID_ARGUMENT, /availability zone 'mars' does not exist; zones: nova/, 'availability_zone'],
    ['host for a member', { ...seedRequest(), availabilityZone: 'nova:node1' }, status.PERMISSION_DENIED, /only cloud admins choose the host/],
    ['bad user data', { ...seedRequest(), userData: '%%%' }, status.INVALID_ARGUMENT, /base64/, 'user_data'],
    ['max below min', { ...seedRequest(), minCount: 3, maxCount: 2 }, status.INVALID_ARGUMENT, /max_count/, 'max_count'],
    ['fixed IP outside the subnet', { ...seedRequest(), networks: [{ uuid: cloud.network.id, fixedIp: '10.0.0.5' }] }, status.INVALID_ARGUMENT, /10\.0\.0\.5/],
  ]
  for (const [what, req, code, message, field] of cases) {
    const e = await failure(create(req))
    t.equal(e.code, code, `${what}: code`)
    t.match(e.details, message, `${what}: says why`)
    if (field) t.equal(fieldOf(e), field, `${what}: names the field`)
  }
  // No valid host: the flavor is larger than any host; the message says which step removed the hosts.
  await call(cloud.c.flavors, 'createFlavor', { id: 'huge', name: 'm1.huge', vcpus: 1, ram: 1_000_000, disk: 1 }, cloud.s.adminToken)
  const big = await failure(create({ ...seedRequest(), flavorRef: 'm1.huge' }))
  t.equal(big.code, status.RESOURCE_EXHAUSTED)
  t.match(big.details, /no valid host found for .*MEMORY_MB 1000000.*: 2 hosts; 0 after placement capacity \(short of MEMORY_MB on 2\)/)
  // flavor_ref is an id, else a name (one statement reads both): the id's flavor only if the caller may use it; a deleted one is gone at once.
  await call(cloud.c.flavors, 'createFlavor', { id: 'm1.huge', name: 'm1.huger', vcpus: 1, ram: 2_000_000, disk: 1, isPublic: false }, cloud.s.adminToken)
  const hugeRef = async () => (await failure(create({ ...seedRequest(), flavorRef: 'm1.huge' }))).details
  t.match(await hugeRef(), /MEMORY_MB 1000000\b/, "a private flavor with the ref as its id, invisible to the member: the flavor so named")
  await call(cloud.c.flavors, 'addFlavorAccess', { flavorId: 'm1.huge', projectId: demo.projectId }, cloud.s.adminToken)
  t.match(await hugeRef(), /MEMORY_MB 2000000\b/, 'given access: the flavor with that id')
  await call(cloud.c.flavors, 'deleteFlavor', { id: 'm1.huge' }, cloud.s.adminToken)
  t.match(await hugeRef(), /MEMORY_MB 1000000\b/, 'deleted: the next create sees it gone')
  // A queued image cannot boot.
  const queued = await call<Image>(cloud.c.images, 'createImage', { name: 'empty', diskFormat: 'qcow2', containerFormat: 'bare' }, demo.token)
  const q = await failure(create({ ...seedRequest(), imageRef: queued.id }))
  t.equal(q.code, status.FAILED_PRECONDITION)
  t.match(q.details, /is queued, not active: upload its data first/)
  // The flavor's disk is smaller than the image.
  await call(cloud.c.flavors, 'createFlavor', { id: 'tiny-disk', name: 'm1.tinydisk', vcpus: 1, ram: 64, disk: 0 }, cloud.s.adminToken)
  const bigImage = await call<Image>(cloud.c.images, 'createImage', { name: 'big', diskFormat: 'raw', containerFormat: 'bare', minDisk: 5 }, demo.token)
  await uploadImage(cloud.c.images, demo.token, bigImage.id, Buffer.alloc(1024 * 1024))
  const small = await failure(create({ ...seedRequest(), flavorRef: '1', imageRef: bigImage.id }))
  t.equal(small.code, status.FAILED_PRECONDITION)
  t.match(small.details, /smaller than the image's min_disk \(5 GiB\)/)

  t.equal(await count(), n, 'no server was recorded')
  const compute = (q: Record<string, number | undefined>) => [q.instances, q.cores, q.ram, q.ports]
  t.same(compute(await quota()), compute(before), 'no instance, core, ram or port quota was used (the images above are the test\'s own)')
})

t.test('a build that fails on the host ends in ERROR with a fault, and gives back its allocation, ports and quota', async (t) => {
  for (const a of cloud.agents) a.driver.injectFailure({ operation: 'spawn', step: 'start', error: new FailedPrecondition('QEMU refused to start: injected') })
  const before = await quota()
  const r = await create({ name: 'broken', flavorRef: '1', imageRef: 'cirros', networks: [{ uuid: cloud.network.id }] })
  const id = r.servers[0]!.id
  const failed = await cloud.waitFor(id, (s) => s.status === 'ERROR', demo.token)
  t.match(failed, { vmState: 'error', taskState: '', fault: { code: 'FAILED_PRECONDITION', message: /QEMU refused to start: injected/ } })
  t.same(await allocations(id), [], 'allocation released')
  t.same(await ports(id), [], 'ports released')
  t.same(await quota(), before, 'quota given back')
  const host = (await get(id, cloud.s.adminToken)).host
  t.notOk(existsSync(path.join(driverOf(host).agent.config.instancesDir, id)), 'no disk left on the host')
  for (const a of cloud.agents) a.driver.clearFailures()
  // An ERROR server can be deleted; with nothing on the host it is gone at once.
  await act('deleteServer', id)
  await eventually(() => gone(id), 5_000, 'the failed server to be deleted')
})

t.test('a guest that appears while its build runs (libvirtd finishing a killed agent\'s spawn) is replaced; a failed build leaves no guest', async (t) => {
  // Each driver's next spawn first makes the guest itself, as the interrupted build's libvirtd request would.
  const restore: Array<() => void> = []
  const patchSpawn = (then: (orig: FakeDriver['spawn'], spec: GuestSpec) => Promise<GuestInfo>) => {
    for (const a of cloud.agents) {
      const orig = a.driver.spawn.bind(a.driver)
      a.driver.spawn = async (spec) => {
        a.driver.spawn = orig
        return then(orig, spec)
      }
      restore.push(() => (a.driver.spawn = orig))
    }
  }
  patchSpawn(async (orig, spec) => {
    await orig(spec)
    return orig(spec) // AlreadyExists: the guest appeared after the build looked
  })
  const raced = (await create({ name: 'raced', flavorRef: '1', imageRef: 'cirros', networkMode: 'none' })).servers[0]!
  const up = await cloud.waitFor(raced.id, (x) => x.status !== 'BUILD', demo.token)
  for (const r of restore.splice(0)) r()
  t.equal(up.status, 'ACTIVE', `the leftover guest is replaced and the build goes on (${up.fault?.message ?? 'no fault'})`)
  const hv = driverOf((await get(raced.id, cloud.s.adminToken)).host).driver
  t.equal((await hv.getInfo(raced.id)).powerState, 1, 'one guest, running')

  patchSpawn(async (orig, spec) => {
    await orig(spec)
    throw new FailedPrecondition('QEMU failed after the guest was defined: injected')
  })
  const broken = (await create({ name: 'left-behind', flavorRef: '1', imageRef: 'cirros', networkMode: 'none' })).servers[0]!
  const failed = await cloud.waitFor(broken.id, (x) => x.status === 'ERROR', demo.token)
  for (const r of restore.splice(0)) r()
  t.match(failed.fault?.message, /injected/)
  const host = driverOf((await get(broken.id, cloud.s.adminToken)).host).driver
  await t.rejects(host.getInfo(broken.id), { name: 'NotFound' }, 'no guest is left for a failed build')
  for (const id of [raced.id, broken.id]) await act('deleteServer', id)
  for (const id of [raced.id, broken.id]) await eventually(() => gone(id), 5_000, 'deleted')
})

t.test('networks: auto picks the only usable network, none makes no NIC, several are ambiguous', async (t) => {
  const auto = (await create({ name: 'auto', flavorRef: '1', imageRef: 'cirros' })).servers[0]!
  const none = (await create({ name: 'none', flavorRef: '1', imageRef: 'cirros', networkMode: 'none' })).servers[0]!
  const a = await cloud.waitFor(auto.id, active, demo.token)
  const b = await cloud.waitFor(none.id, active, demo.token)
  t.equal(a.addresses[0]?.networkId, cloud.network.id, 'the shared provider network is the only one: auto uses it')
  t.same(b.addresses, [], 'network_mode none: no NIC')
  await call<Network>(cloud.c.networks, 'createNetwork', { name: 'private' }, demo.token)
  const amb = await failure(create({ name: 'amb', flavorRef: '1', imageRef: 'cirros' }))
  t.equal(amb.code, status.ABORTED, 'ambiguous: CONFLICT (Nova: 409 NetworkAmbiguous)')
  t.match(amb.details, /2 networks could be meant .*--nic net-id=/)
  // A port made beforehand is used as it is and only unbound on delete.
  const port = await call<{ id: string }>(cloud.c.ports, 'createPort', { networkId: cloud.network.id, name: 'mine' }, demo.token)
  const withPort = (await create({ name: 'with-port', flavorRef: '1', imageRef: 'cirros', networks: [{ port: port.id }] })).servers[0]!
  await cloud.waitFor(withPort.id, active, demo.token)
  const taken = await failure(create({ name: 'same-port', flavorRef: '1', imageRef: 'cirros', networks: [{ port: port.id }] }))
  t.equal(taken.code, status.ABORTED, 'a port in use cannot be given to another server')
  for (const id of [auto.id, none.id, withPort.id]) await act('deleteServer', id)
  await eventually(() => gone(withPort.id), 5_000, 'deleted')
  const kept = await call<{ id: string; deviceId: string }>(cloud.c.ports, 'getPort', { id: port.id }, demo.token)
  t.equal(kept.deviceId, '', 'the given port survives the server, unbound')
})

t.test('min_count/max_count, and quotas under 20 concurrent creates', async (t) => {
  const multi = await create({ name: 'web', flavorRef: '1', imageRef: 'cirros', networkMode: 'none', minCount: 2, maxCount: 3 })
  t.same(multi.servers.map((s) => s.name), ['web-1', 'web-2', 'web-3'])
  t.equal(new Set(multi.servers.map((s) => s.reservationId)).size, 1, 'one reservation id')
  for (const s of multi.servers) await cloud.waitFor(s.id, active, demo.token)
  for (const s of multi.servers) await act('deleteServer', s.id)
  for (const s of multi.servers) await eventually(() => gone(s.id), 5_000, 'deleted')

  const q = await tenant(cloud.s, 'quota')
  await call(cloud.c.quotas, 'updateQuota', { projectId: q.projectId, limits: { instances: 7 } }, cloud.s.adminToken)
  const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => create({ name: `q${i}`, flavorRef: '1', imageRef: 'cirros', networkMode: 'none' }, q.token)))
  const ok = results.filter((r) => r.status === 'fulfilled')
  t.equal(ok.length, 7, 'exactly the quota is admitted')
  // The bus took the builds of the same tick; their rows are marked sent together, each for its own cast
  // (or the build is done already: its result cleared the pending cast, as it does on a fast fake host).
  const sent = await cloud.s.controller.db.selectFrom('servers').select(['uuid', 'pending_cast_id', 'cast_sent_at', 'vm_state']).where('project_id', '=', q.projectId).execute()
  t.equal(sent.length, 7)
  const done = (r: (typeof sent)[number]) => r.pending_cast_id === '' && r.cast_sent_at === null && r.vm_state !== 'building'
  t.same(sent.filter((r) => !done(r) && (r.cast_sent_at === null || r.pending_cast_id !== `build.${r.uuid}`)), [], 'every admitted server\'s build cast is marked sent')
  for (const r of results) if (r.status === 'rejected') t.match((r.reason as Error).message, /quota exceeded for instances: 7 of 7/)
  const over = await failure(create({ name: 'min', flavorRef: '1', imageRef: 'cirros', networkMode: 'none', minCount: 2 }, q.token))
  t.equal(over.code, status.RESOURCE_EXHAUSTED)
  const listed = await call<ListServersResponse>(cloud.c.servers, 'listServers', {}, q.token)
  t.equal(listed.servers.length, 7, 'refused requests left no server')
})

t.test('availability zones: the default zone, and hosts for admins', async (t) => {
  const z = await call<ListAvailabilityZonesResponse>(cloud.c.zones, 'listAvailabilityZones', {}, demo.token)
  t.same(z.availabilityZones.map((x) => [x.name, x.available, x.hosts.length]), [['nova', true, 0]], 'members see zones without hosts')
  const za = await call<ListAvailabilityZonesResponse>(cloud.c.zones, 'listAvailabilityZones', {}, cloud.s.adminToken)
  t.same(za.availabilityZones[0]?.hosts.map((h) => [h.host, h.service, h.active, h.available]), [['node1', 'nova-compute', true, true], ['node2', 'nova-compute', true, true]])
})

t.test('server groups: anti-affinity spreads (and refuses a third on two hosts), affinity packs, concurrent creates keep the policy', async (t) => {
  const g = await tenant(cloud.s, 'groups')
  const mk = (name: string, policy: string, extra: object = {}) => call<ServerGroup>(cloud.c.serverGroups, 'createServerGroup', { name, policy, ...extra }, g.token)
  const boot = (name: string, group: string, extra: object = {}) => create({ name, flavorRef: '1', imageRef: 'cirros', networkMode: 'none', group, ...extra }, g.token)
  const hostOf = async (id: string) => (await get(id, cloud.s.adminToken)).host
  const clean = async (ids: string[]) => {
    for (const id of ids) await act('deleteServer', id, g.token)
    for (const id of ids) await eventually(() => gone(id, g.token), 5_000, 'deleted')
  }

  const bad = await failure(mk('x', 'sticky'))
  t.equal(bad.code, status.INVALID_ARGUMENT)
  t.match(bad.details, /policy must be one of affinity, anti-affinity, soft-affinity, soft-anti-affinity, got 'sticky'/)
  const badRule = await failure(mk('x', 'affinity', { maxServerPerHost: 2 }))
  t.equal(fieldOf(badRule), 'max_server_per_host', 'max_server_per_host is a rule of anti-affinity only')

  // anti-affinity: two members on two hosts; a third finds no host, and says which filter refused.
  const anti = await mk('spread', 'anti-affinity')
  const two = await boot('anti', 'spread', { minCount: 2, maxCount: 2 })
  const hosts = await Promise.all(two.servers.map((s) => hostOf(s.id)))
  t.same([...hosts].sort(), ['node1', 'node2'], 'one member per host')
  const third = await failure(boot('anti-3', anti.id))
  t.equal(third.code, status.RESOURCE_EXHAUSTED)
  t.match(third.details, /0 after ServerGroupAntiAffinityFilter \(anti-affinity with group .* \(at most 1 per host\)\) — 'node1' holds 1 of the group's members/)
  const shown = await call<ServerGroup>(cloud.c.serverGroups, 'getServerGroup', { id: 'spread' }, g.token)
  t.same([...shown.members].sort(), two.servers.map((s) => s.id).sort(), 'the group lists its members')
  t.same((await get(two.servers[0]!.id, g.token)).serverGroups, [anti.id], 'a member shows its group')
  await clean(two.servers.map((s) => s.id))

  // Concurrent creates into one anti-affinity group: exactly one per host, never two on one.
  const race = await mk('race', 'anti-affinity')
  const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => boot(`race-${i}`, race.id)))
  const won = results.flatMap((r) => (r.status === 'fulfilled' ? r.value.servers : []))
  t.equal(won.length, 2, 'two of twenty concurrent creates fit two hosts')
  t.same((await Promise.all(won.map((s) => hostOf(s.id)))).sort(), ['node1', 'node2'])
  await clean(won.map((s) => s.id))

  // max_server_per_host 2: four members on two hosts.
  await mk('pairs', 'anti-affinity', { maxServerPerHost: 2 })
  const four = await boot('pair', 'pairs', { minCount: 4, maxCount: 4 })
  const counts = new Map<string, number>()
  for (const s of four.servers) counts.set(await hostOf(s.id), (counts.get(await hostOf(s.id)) ?? 0) + 1)
  t.same([...counts.values()], [2, 2], 'two per host')
  await clean(four.servers.map((s) => s.id))

  // affinity: every member where the first went, even when spreading would pick the other host.
  await mk('together', 'affinity')
  const first = (await boot('aff-1', 'together')).servers[0]!
  const rest = await Promise.all([boot('aff-2', 'together'), boot('aff-3', 'together')])
  const where = await hostOf(first.id)
  for (const r of rest) t.equal(await hostOf(r.servers[0]!.id), where, 'on the first member\'s host')
  await clean([first.id, ...rest.map((r) => r.servers[0]!.id)])

  // Member quota: server_group_members (10 by default) limits a group.
  await call(cloud.c.quotas, 'updateQuota', { projectId: g.projectId, limits: { server_group_members: 1 } }, cloud.s.adminToken)
  await mk('small', 'soft-anti-affinity')
  const over = await failure(boot('small', 'small', { minCount: 2 }))
  t.equal(over.code, status.RESOURCE_EXHAUSTED)
  t.match(over.details, /quota exceeded for server_group_members/)

  // Another project cannot use (or see) the group; deleting it leaves its members running.
  t.equal((await failure(create({ name: 'intruder', flavorRef: '1', imageRef: 'cirros', networkMode: 'none', group: anti.id }))).code, status.NOT_FOUND)
  const member = (await boot('stays', 'together')).servers[0]!
  await cloud.waitFor(member.id, active, g.token)
  await call(cloud.c.serverGroups, 'deleteServerGroup', { id: 'together' }, g.token)
  const after = await get(member.id, g.token)
  t.equal(after.status, 'ACTIVE')
  t.same(after.serverGroups, [], 'no longer in a group')
  const left = await call<ListServerGroupsResponse>(cloud.c.serverGroups, 'listServerGroups', {}, g.token)
  t.same(left.serverGroups.map((x) => x.name).sort(), ['pairs', 'race', 'small', 'spread'])
  await clean([member.id])
})
