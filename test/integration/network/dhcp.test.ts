/**
 * Integration: DHCP as Neutron's DHCP agent does it, through the real
 * interfaces — a controller and nats-server, the agent daemon as its own
 * process (fake virt driver, DHCP with real dnsmasq in real network
 * namespaces), servers booted over gRPC, the CLI's port list. A "guest" is
 * a namespace this test makes, with a veth on the network's bridge carrying a
 * port's MAC, running busybox udhcpc. Needs root, dnsmasq and busybox.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t from 'tap'
import { startCloud, serverGone, type TestCloud } from '../../helpers/cloud.js'
import { spawnAgent, type AgentProcess } from '../../helpers/agent-process.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { inNamespace, ip } from '../../helpers/netns.js'
import { eventually } from '../../helpers/agents.js'
import { freshHome, openrcEnv, removeHomes, strato } from '../../functional/cli/cli.js'
import { dhcpDeviceId } from '../../../controller/network/dhcp.js'
import { dhcpInterfaces, dhcpNamespace } from '../../../agent/net/dhcp.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { ListPortsResponse, Network, Port, Subnet } from '../../../proto/gen/strato/network/v1/network.js'

const id = process.pid.toString(16)
const HOST = `dhcp-${id}`
const BR = `bd${id}`
const BR_OFF = `bo${id}`
const CLIENT = `dcl-${id}`
const CLIENT_VETH = `dv${id}`

/** Pids of the dnsmasq processes serving `networkId` from `dhcpDir`. */
function dnsmasqPids(dhcpDir: string, networkId: string): number[] {
  const flag = `--pid-file=${path.join(dhcpDir, networkId, 'pid')}`
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0')
      if (path.basename(argv[0] ?? '') === 'dnsmasq' && argv.includes(flag)) out.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return out
}

const linkExists = (name: string, ns?: string) => ip(...(ns ? ['-n', ns] : []), 'link', 'show', 'dev', name).then(() => true, () => false)

let cloud: TestCloud
let agent: AgentProcess
let env: Record<string, string>
let scratch: string
let dhcpDir: string
let script: string
let offNet: { network: Decoded<Network>; subnet: Decoded<Subnet> }

t.before(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'strato-dhcp-test-'))
  script = path.join(scratch, 'udhcpc.sh')
  writeFileSync(script, [
    '#!/bin/sh',
    'case "$1" in bound|renew)',
    '  { echo "ip=$ip"; echo "subnet=$subnet"; echo "router=$router"; echo "dns=$dns"; echo "staticroutes=$staticroutes"; echo "mtu=$mtu"; echo "lease=$lease"; echo "hostname=$hostname"; } > "$DHCP_OUT";;',
    'esac',
    'exit 0',
    '',
  ].join('\n'), { mode: 0o755 })
  cloud = await startCloud({ hosts: [], controller: { network: { physicalNetworks: ['provider', 'nodhcp'], vlanRanges: { provider: [100, 4094] }, dhcpLeaseSeconds: 3600 } } })
  agent = await spawnAgent({
    host: HOST, natsUrl: cloud.nats.url, driver: 'fake',
    env: { STRATO_AGENT_DHCP: 'dnsmasq', STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${BR},nodhcp:${BR_OFF}`, STRATO_AGENT_DISK_GB: '100', STRATO_AGENT_MY_IP: '127.0.0.1' },
  })
  await agent.running()
  dhcpDir = path.join(agent.stateDir, 'dhcp')
  await cloud.s.controller.hosts.discover()
  env = openrcEnv(cloud.s.openrc, freshHome())
  // The test's guest: a namespace with a veth on the provider bridge (made by the agent when it serves DHCP, or here first).
  await ip('link', 'add', BR, 'type', 'bridge').catch(() => undefined)
  await ip('link', 'set', BR, 'up')
  await ip('netns', 'add', CLIENT)
  await ip('link', 'add', CLIENT_VETH, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', CLIENT)
  await ip('link', 'set', CLIENT_VETH, 'master', BR, 'up')
  await ip('-n', CLIENT, 'link', 'set', 'lo', 'up')
  const network = await call<Network>(cloud.c.networks, 'createNetwork', { name: `nodhcp-${id}`, shared: true, providerPhysicalNetwork: 'nodhcp', providerNetworkType: 'flat' }, cloud.s.adminToken)
  const subnet = await call<Subnet>(cloud.c.subnets, 'createSubnet', { name: `nodhcp-${id}`, networkId: network.id, cidr: '10.199.0.0/24', enableDhcp: false }, cloud.s.adminToken)
  offNet = { network, subnet }
})

t.teardown(async () => {
  await agent?.remove().catch(() => undefined)
  await cloud?.close().catch(() => undefined)
  await ip('netns', 'delete', CLIENT).catch(() => undefined)
  await ip('link', 'delete', CLIENT_VETH).catch(() => undefined)
  for (const br of [BR, BR_OFF]) await ip('link', 'delete', br, 'type', 'bridge').catch(() => undefined)
  if (scratch) rmSync(scratch, { recursive: true, force: true })
  removeHomes()
})

/** Sets the guest's MAC and asks for a lease; the options udhcpc was given, or undefined when no server answered. */
async function lease(mac: string, tries = 4): Promise<{ ms: number; opts?: Record<string, string> }> {
  await ip('-n', CLIENT, 'link', 'set', 'eth0', 'down')
  await ip('-n', CLIENT, 'addr', 'flush', 'dev', 'eth0')
  await ip('-n', CLIENT, 'link', 'set', 'eth0', 'address', mac, 'up')
  const out = path.join(scratch, `lease-${mac.replaceAll(':', '')}-${Date.now()}`)
  const t0 = Date.now()
  const ok = await inNamespace(CLIENT, 'busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', String(tries), '-T', '1', '-O', 'mtu', '-O', 'staticroutes', '-s', script], { env: { ...process.env, DHCP_OUT: out } })
    .then(() => true, () => false)
  const ms = Date.now() - t0
  if (!ok || !existsSync(out)) return { ms }
  const opts = Object.fromEntries(readFileSync(out, 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
  return { ms, opts }
}

const portsOf = async (filter: object): Promise<Array<Decoded<Port>>> => (await call<ListPortsResponse>(cloud.c.ports, 'listPorts', filter, cloud.s.adminToken)).ports
const boot = async (name: string, networkId: string) => {
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: networkId }] }, cloud.s.adminToken)
  const uuid = r.servers[0]!.id
  await cloud.waitFor(uuid, (s) => s.status === 'ACTIVE', cloud.s.adminToken, 30_000)
  const [port] = await portsOf({ deviceId: uuid })
  return { uuid, port: port! }
}

let server: { uuid: string; port: Decoded<Port> }
let dhcpPort: Decoded<Port>
let firstPid: number

t.test('a server on a DHCP subnet: the host gets a network:dhcp port and a dnsmasq in qdhcp-<network>', async (t) => {
  const net = cloud.network.id
  const t0 = Date.now()
  const booting = boot(`dhcp-vm1-${id}`, net)
  await eventually(() => dnsmasqPids(dhcpDir, net).length === 1 && existsSync(path.join(dhcpDir, net, 'host')), 20_000, 'dnsmasq to run')
  t.comment(`server create → its network's dnsmasq running (DHCP port, namespace, veth made): ${Date.now() - t0} ms`)
  server = await booting
  dhcpPort = await eventually(async () => (await portsOf({ networkId: net, deviceOwner: 'network:dhcp' }))[0], 20_000, 'the DHCP port')
  t.match(dhcpPort, { deviceOwner: 'network:dhcp', deviceId: dhcpDeviceId(HOST, net), bindingHostId: HOST, securityGroups: [] })
  t.match(dhcpPort.deviceId, /^dhcp[0-9a-f-]{36}-[0-9a-f-]{36}$/)
  t.equal(dhcpPort.fixedIps.length, 1, 'one address on the one DHCP subnet')
  t.equal(dhcpPort.fixedIps[0]!.subnetId, cloud.subnet.id)

  const listed = await strato(['port', 'list', '--device-owner', 'network:dhcp', '-f', 'value', '-c', 'ID'], env)
  t.equal(listed.code, 0, 'strato port list --device-owner network:dhcp')
  t.ok(listed.stdout.split('\n').includes(dhcpPort.id), 'lists the DHCP port')
  t.notOk(listed.stdout.includes(server.port.id), 'and not the server port')
  const shown = await strato(['port', 'list', '--device-owner', 'network:dhcp', '--network', net, '-f', 'value', '-c', 'ID'], env)
  t.equal(shown.stdout.trim(), dhcpPort.id, 'one DHCP port on the network')
  const show = await strato(['port', 'show', dhcpPort.id, '-f', 'value', '-c', 'binding_host_id'], env)
  t.equal(show.stdout.trim(), HOST, 'port show: binding_host_id is the host')

  const ns = dhcpNamespace(net)
  firstPid = dnsmasqPids(dhcpDir, net)[0]!
  t.ok(existsSync(`/run/netns/${ns}`), `namespace ${ns}`)
  const dev = dhcpInterfaces(dhcpPort.id)
  t.ok(await linkExists(dev.host), `veth ${dev.host} on the host`)
  t.match(await ip('-j', 'link', 'show', 'dev', dev.host), new RegExp(`"master":"${BR}"`), 'plugged into the provider bridge')
  const addrs = await ip('-n', ns, '-o', 'addr', 'show', 'dev', dev.ns)
  t.match(addrs, `${dhcpPort.fixedIps[0]!.ipAddress}/24`, 'the DHCP port address in the namespace')
  t.match(addrs, '169.254.169.254/32', 'and the metadata address')
  t.match(await ip('-n', ns, 'link', 'show', 'dev', dev.ns), dhcpPort.macAddress, 'with the DHCP port MAC')
  const argv = readFileSync(`/proc/${firstPid}/cmdline`, 'utf8').split('\0')
  t.ok(argv.includes('--no-ping') && argv.includes('--dhcp-authoritative'), 'no ping check, authoritative')
  t.ok(argv.some((a) => /^--dhcp-range=set:subnet-[0-9a-f-]+,192\.168\.201\.0,static,255\.255\.255\.0,3600s$/.test(a)), 'static range with the configured lease time')
})

t.test("udhcpc with the server port's MAC gets exactly its fixed IP, gateway, DNS, metadata route and MTU", async (t) => {
  const { ms, opts } = await lease(server.port.macAddress)
  t.ok(opts, `a lease (${ms} ms)`)
  t.comment(`udhcpc lease: ${ms} ms`)
  const dhcpIp = dhcpPort.fixedIps[0]!.ipAddress
  t.match(opts, {
    ip: server.port.fixedIps[0]!.ipAddress, subnet: '255.255.255.0', router: '192.168.201.1', dns: '114.114.114.114', mtu: '1500', lease: '3600',
  })
  t.equal(opts?.staticroutes, `169.254.169.254/32 ${dhcpIp} 0.0.0.0/0 192.168.201.1`, 'classless routes: metadata via the DHCP port, default via the gateway')
  const log = readFileSync(path.join(dhcpDir, cloud.network.id, 'log'), 'utf8')
  t.match(log, new RegExp(`DHCPACK\\(${dhcpInterfaces(dhcpPort.id).ns}\\) ${server.port.fixedIps[0]!.ipAddress.replaceAll('.', '\\.')} ${server.port.macAddress}`), "the lease is in dnsmasq's log")
  t.match(readFileSync(path.join(dhcpDir, cloud.network.id, 'leases'), 'utf8'), server.port.macAddress, 'and in its own lease file')
})

t.test('an unknown MAC gets no lease', async (t) => {
  const { opts } = await lease('fa:16:3e:de:ad:01', 2)
  t.equal(opts, undefined, 'no answer')
  t.match(readFileSync(path.join(dhcpDir, cloud.network.id, 'log'), 'utf8'), /fa:16:3e:de:ad:01 no address available/)
})

t.test('a port created later is served by the same dnsmasq (SIGHUP, no restart)', async (t) => {
  const hostsFile = path.join(dhcpDir, cloud.network.id, 'host')
  const logFile = path.join(dhcpDir, cloud.network.id, 'log')
  const reads = () => (readFileSync(logFile, 'utf8').match(/read .*\/host/g) ?? []).length
  const before = reads()
  const t0 = Date.now()
  const port = await call<Port>(cloud.c.ports, 'createPort', { networkId: cloud.network.id, name: `later-${id}` }, cloud.s.adminToken)
  t.teardown(() => call(cloud.c.ports, 'deletePort', { id: port.id }, cloud.s.adminToken).catch(() => undefined))
  await eventually(() => readFileSync(hostsFile, 'utf8').includes(port.macAddress) && reads() > before, 5_000, 'dnsmasq to reread its hosts file')
  const ms = Date.now() - t0
  t.comment(`port create → dnsmasq serving it: ${ms} ms (how fast is bench:network's business; under load it varies)`)
  t.same(dnsmasqPids(dhcpDir, cloud.network.id), [firstPid], 'the same dnsmasq process')
  const { opts } = await lease(port.macAddress)
  t.equal(opts?.ip, port.fixedIps[0]!.ipAddress, "the new port's address")
  t.equal(opts?.hostname, `host-${port.fixedIps[0]!.ipAddress.replaceAll('.', '-')}`, "Neutron's host name for a port without a DNS name")
})

t.test("a deleted port's address, given to a new port (another MAC), is leased to the new one at once", async (t) => {
  const hostsFile = path.join(dhcpDir, cloud.network.id, 'host')
  const logFile = path.join(dhcpDir, cloud.network.id, 'log')
  const old = await call<Port>(cloud.c.ports, 'createPort', { networkId: cloud.network.id, name: `reused-a-${id}` }, cloud.s.adminToken)
  const address = old.fixedIps[0]!.ipAddress
  await eventually(() => readFileSync(hostsFile, 'utf8').includes(old.macAddress) || undefined, 5_000, 'the first port in the hosts file')
  t.equal((await lease(old.macAddress)).opts?.ip, address, 'the first port leases the address')
  await call(cloud.c.ports, 'deletePort', { id: old.id }, cloud.s.adminToken)
  const next = await call<Port>(cloud.c.ports, 'createPort', { networkId: cloud.network.id, name: `reused-b-${id}`, fixedIps: [{ subnetId: old.fixedIps[0]!.subnetId, ipAddress: address }] }, cloud.s.adminToken)
  t.teardown(() => call(cloud.c.ports, 'deletePort', { id: next.id }, cloud.s.adminToken).catch(() => undefined))
  t.not(next.macAddress, old.macAddress)
  await eventually(() => (readFileSync(hostsFile, 'utf8').includes(next.macAddress) && !readFileSync(hostsFile, 'utf8').includes(old.macAddress)) || undefined, 5_000, 'the hosts file to change')
  await eventually(() => readFileSync(logFile, 'utf8').includes(`DHCPRELEASE(`) || undefined, 5_000, "the old port's lease to be released")
  t.equal((await lease(next.macAddress)).opts?.ip, address, "the new port gets the address (dnsmasq would otherwise keep it for the old MAC's lease, a day)")
  t.same(dnsmasqPids(dhcpDir, cloud.network.id), [firstPid], 'the same dnsmasq process')
})

t.test('enable_dhcp=false: no DHCP port, no namespace for that network', async (t) => {
  const vm = await boot(`dhcp-off-${id}`, offNet.network.id)
  t.teardown(async () => {
    await call(cloud.c.servers, 'deleteServer', { id: vm.uuid }, cloud.s.adminToken).catch(() => undefined)
    await eventually(() => serverGone(cloud.c, vm.uuid, cloud.s.adminToken), 20_000, 'the server to go').catch(() => undefined)
  })
  // The boot's port change reached the agent (notice within ~100 ms, refresh after it).
  await new Promise((r) => setTimeout(r, 1_500))
  t.same(await portsOf({ networkId: offNet.network.id, deviceOwner: 'network:dhcp' }), [], 'no DHCP port')
  t.notOk(existsSync(`/run/netns/${dhcpNamespace(offNet.network.id)}`), 'no namespace')
  t.same(dnsmasqPids(dhcpDir, offNet.network.id), [], 'no dnsmasq')
})

t.test('the agent SIGKILLed and restarted: DHCP answers again, with exactly one dnsmasq for the network', async (t) => {
  await agent.kill('SIGKILL')
  t.same(dnsmasqPids(dhcpDir, cloud.network.id), [firstPid], 'dnsmasq outlives the agent')
  await agent.restart()
  await eventually(() => agent.log().split('\n').filter((l) => l.includes('"msg":"DHCP serving"')).length >= 2, 20_000, 'the restarted agent to serve DHCP')
  t.same(dnsmasqPids(dhcpDir, cloud.network.id), [firstPid], 'adopted by its pid file: the same single dnsmasq')
  const { opts } = await lease(server.port.macAddress)
  t.equal(opts?.ip, server.port.fixedIps[0]!.ipAddress, 'and it answers')
})

t.test('deleting the last server removes the DHCP port, namespace, dnsmasq, veth and files', async (t) => {
  const net = cloud.network.id
  const ns = dhcpNamespace(net)
  const dev = dhcpInterfaces(dhcpPort.id)
  await call(cloud.c.servers, 'deleteServer', { id: server.uuid }, cloud.s.adminToken)
  await eventually(() => serverGone(cloud.c, server.uuid, cloud.s.adminToken), 20_000, 'the server to go')
  await eventually(async () => (await portsOf({ networkId: net, deviceOwner: 'network:dhcp' })).length === 0, 10_000, 'the DHCP port to go')
  await eventually(() => !existsSync(`/run/netns/${ns}`), 10_000, 'the namespace to go')
  await eventually(() => dnsmasqPids(dhcpDir, net).length === 0, 5_000, 'dnsmasq to stop')
  t.notOk(await linkExists(dev.host), 'no veth')
  t.notOk(existsSync(path.join(dhcpDir, net)), 'no files (hosts, opts, leases, log)')
  t.ok(existsSync(`/proc/${firstPid}`) === false, 'the dnsmasq process is gone')
})
