/**
 * Integration: Neutron L3 end to end through the real interfaces — a
 * controller and nats-server, the agent daemon as its own process (fake virt
 * driver; DHCP with real dnsmasq, security groups with real iptables, routers
 * with real `qrouter-` namespaces), routers and floating IPs made over gRPC.
 * Each "guest" is a namespace this test makes, with a veth named as the
 * agent names a guest's tap (so its security groups apply) carrying its
 * port's MAC, taking its address with busybox udhcpc. The "outside" is one
 * more namespace on the external (provider) network's bridge, holding the
 * external subnet's gateway address, standing for the internet.
 * Needs root, dnsmasq, busybox and iptables.
 */
import { execFile, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { startCloud, serverGone, type TestCloud } from '../../helpers/cloud.js'
import { spawnAgent, type AgentProcess } from '../../helpers/agent-process.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { bannerListener, connectFrom, endpoint, inNamespace, ip } from '../../helpers/netns.js'
import { netClients, tenant, type NetClients, type Tenant } from '../../functional/network/fixtures.js'
import { IptablesFirewall } from '../../../agent/net/firewall.js'
import { routerNamespace } from '../../../agent/net/l3.js'
import type { CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { FloatingIp, ListPortsResponse, ListSecurityGroupsResponse, Network, Port, Router, SecurityGroupRule, Subnet } from '../../../proto/gen/strato/network/v1/network.js'

const id = process.pid.toString(16)
const HOST = `l3-${id}`
const BR_EXT = `bx${id}`
const OUTSIDE = `out-${id}`
const OUTSIDE_VETH = `ox${id}`
const OUTSIDE_IP = '192.168.201.1'

const root = process.getuid?.() === 0
const have = (bin: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(path.join(d, bin)))
const missing = !root ? 'needs root' : !have('dnsmasq') ? 'needs dnsmasq' : !have('busybox') ? 'needs busybox' : !have('iptables') ? 'needs iptables' : ''

let cloud: TestCloud
let c: NetClients
let agent: AgentProcess
let demo: Tenant
let scratch: string
let script: string
const listeners: ChildProcess[] = []
const guestNamespaces: string[] = []
const bridges: string[] = []

interface Guest {
  ns: string
  uuid: string
  port: Decoded<Port>
  address: string
}

function register(): void {
  t.before(async () => {
    scratch = mkdtempSync(path.join(tmpdir(), 'strato-l3-test-'))
    script = path.join(scratch, 'udhcpc.sh')
    writeFileSync(script, [
      '#!/bin/sh',
      'case "$1" in bound|renew)',
      '  { echo "ip=$ip"; echo "subnet=$subnet"; echo "router=$router"; echo "staticroutes=$staticroutes"; } > "$DHCP_OUT";;',
      'esac',
      'exit 0',
      '',
    ].join('\n'), { mode: 0o755 })
    cloud = await startCloud({ hosts: [] })
    c = netClients(cloud.s.address)
    agent = await spawnAgent({
      host: HOST, natsUrl: cloud.nats.url, driver: 'fake',
      env: {
        STRATO_AGENT_DHCP: 'dnsmasq', STRATO_AGENT_FIREWALL: 'iptables', STRATO_AGENT_L3: '1', STRATO_AGENT_L3_DRIVER: 'namespaces',
        STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${BR_EXT}`, STRATO_AGENT_DISK_GB: '100', STRATO_AGENT_MY_IP: '127.0.0.1',
      },
    })
    await agent.running()
    await cloud.s.controller.hosts.discover()
    demo = await tenant(cloud.s, `l3e2e${id}`)
    // The outside: the external subnet's gateway address, on the provider bridge.
    await ensureBridge(BR_EXT)
    await endpoint(OUTSIDE, OUTSIDE_VETH, `${OUTSIDE_IP}/24`, BR_EXT)
    listeners.push(await bannerListener(OUTSIDE, 8080, 'outside'))
  })

  t.teardown(async () => {
    for (const p of listeners) p.kill('SIGKILL')
    await agent?.remove().catch(() => undefined)
    await new IptablesFirewall({ host: HOST }).clear().catch(() => undefined)
    await cloud?.close().catch(() => undefined)
    for (const ns of [...guestNamespaces, OUTSIDE]) await ip('netns', 'delete', ns).catch(() => undefined)
    await ip('link', 'delete', OUTSIDE_VETH).catch(() => undefined)
    for (const br of [...bridges, BR_EXT]) await ip('link', 'delete', br, 'type', 'bridge').catch(() => undefined)
    c?.close()
    if (scratch) rmSync(scratch, { recursive: true, force: true })
  })

  async function ensureBridge(name: string): Promise<void> {
    await ip('link', 'add', name, 'type', 'bridge').catch(() => undefined)
    await ip('link', 'set', name, 'up')
  }

  /**
   * The outside's connection to the floating IP's port 22, waited for; when it
   * never comes, what the path looks like (probes of each hop, the filter and
   * NAT tables, conntrack, neighbours, the listeners, the agent's log) goes
   * into the test's output before the failure.
   */
  async function reachFloatingIp(t: Test, fipAddr: string, timeoutMs: number, what: string): Promise<string> {
    return eventually(() => connectFrom(OUTSIDE, fipAddr, 22, { timeoutMs: 1_000 }), timeoutMs, what).catch(async (err: unknown) => {
      await diagnose(t, fipAddr)
      throw err
    })
  }

  async function diagnose(t: Test, fipAddr: string): Promise<void> {
    const sh = async (what: string, cmd: string, args: string[]) => {
      const out = await promisify(execFile)(cmd, args, { maxBuffer: 1 << 24 }).then((r) => r.stdout, (e: Error) => `failed: ${e.message}`)
      t.comment(`--- ${what}\n${out}`)
    }
    const rns = routerNamespace(router.id)
    t.comment(`probe outside→fip (5 s): ${await connectFrom(OUTSIDE, fipAddr, 22, { timeoutMs: 5_000 })}`)
    t.comment(`probe router→guest (5 s): ${await connectFrom(rns, a.address, 22, { timeoutMs: 5_000 })}`)
    t.comment(`probe guest b→guest a (5 s): ${await connectFrom(b.ns, a.address, 22, { timeoutMs: 5_000 })}`)
    t.comment(`listeners alive: ${listeners.map((l) => l.exitCode === null).join(',')}`)
    await sh('root filter', 'iptables-save', ['-t', 'filter'])
    await sh('root nat/raw', 'sh', ['-c', 'iptables-save -t nat; iptables-save -t raw'])
    await sh('router ns', 'ip', ['netns', 'exec', rns, 'sh', '-c', 'ip -o addr; ip route; ip neigh; iptables-save; conntrack -L 2>&1'])
    await sh('root conntrack', 'sh', ['-c', 'conntrack -L 2>&1 | grep -E "192.168.201|10.61" '])
    await sh('outside', 'ip', ['netns', 'exec', OUTSIDE, 'sh', '-c', 'ip -o addr; ip route; ip neigh; ip -o link'])
    await sh('guest a', 'ip', ['netns', 'exec', a.ns, 'sh', '-c', 'ip -o addr; ip route; ip neigh; ss -tan'])
    await sh('bridges', 'sh', ['-c', `bridge link; bridge fdb show br ${BR_EXT}`])
    t.comment(`--- agent log tail\n${agent.log().split('\n').slice(-60).join('\n')}`)
  }

  const portsOf = async (filter: object): Promise<Array<Decoded<Port>>> => (await call<ListPortsResponse>(c.ports, 'listPorts', filter, cloud.s.adminToken)).ports

  /**
   * A server of the demo project on `network` (fake driver: nothing runs), and
   * a namespace standing for it: its tap on the network's bridge, its MAC, the
   * address DHCP gives it and the routes DHCP tells it.
   */
  async function guest(name: string, network: Decoded<Network>): Promise<Guest> {
    const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name, flavorRef: 'm1.nano', imageRef: 'cirros', networks: [{ uuid: network.id }] }, demo.token)
    const uuid = r.servers[0]!.id
    await cloud.waitFor(uuid, (s) => s.status === 'ACTIVE', cloud.s.adminToken, 30_000)
    const [port] = await portsOf({ deviceId: uuid })
    const ns = `g${name}-${id}`
    const tap = `tap${port!.id.slice(0, 11)}`
    const bridge = `brq${network.id.slice(0, 11)}`
    bridges.push(bridge)
    await ensureBridge(bridge)
    await ip('netns', 'add', ns)
    guestNamespaces.push(ns)
    await ip('link', 'add', tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
    await ip('link', 'set', tap, 'master', bridge, 'up')
    await ip('-n', ns, 'link', 'set', 'lo', 'up')
    await ip('-n', ns, 'link', 'set', 'eth0', 'address', port!.macAddress, 'up')
    // DHCP (the agent's dnsmasq for the network comes up after the boot's port change).
    const out = path.join(scratch, `lease-${name}`)
    const opts = await eventually(async () => {
      const ok = await inNamespace(ns, 'busybox', ['udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '3', '-T', '1', '-O', 'staticroutes', '-s', script], { env: { ...process.env, DHCP_OUT: out } }).then(() => true, () => false)
      if (!ok || !existsSync(out)) return undefined
      return Object.fromEntries(readFileSync(out, 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
    }, 60_000, `a DHCP lease for ${name}`)
    const address = port!.fixedIps[0]!.ipAddress
    if (opts.ip !== address) throw new Error(`DHCP gave ${name} ${opts.ip}, its port has ${address}`)
    await ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0')
    // udhcpc's staticroutes: "<cidr> <gateway> …" pairs (the metadata route via the DHCP port, the default via the router).
    const words = (opts.staticroutes ?? '').split(' ').filter(Boolean)
    for (let i = 0; i + 1 < words.length; i += 2) await ip('-n', ns, 'route', 'replace', words[i] === '0.0.0.0/0' ? 'default' : words[i]!, 'via', words[i + 1]!)
    return { ns, uuid, port: port!, address }
  }

  let net1: { network: Decoded<Network>; subnet: Decoded<Subnet> }
  let net2: { network: Decoded<Network>; subnet: Decoded<Subnet> }
  let router: Decoded<Router>
  let a: Guest
  let b: Guest
  let gatewayIp: string
  let fip: Decoded<FloatingIp>

  async function projectNet(name: string, cidr: string) {
    const network = await call<Network>(c.networks, 'createNetwork', { name }, demo.token)
    const subnet = await call<Subnet>(c.subnets, 'createSubnet', { networkId: network.id, cidr, name }, demo.token)
    return { network, subnet }
  }

  t.test('two project networks behind a router with a gateway on the external network', async (t) => {
    net1 = await projectNet(`n1-${id}`, '10.61.1.0/24')
    net2 = await projectNet(`n2-${id}`, '10.61.2.0/24')
    t.equal(net1.network.providerNetworkType, 'local', 'project networks are local (no VXLAN on this kernel)')
    router = await call<Router>(c.routers, 'createRouter', { name: `r-${id}`, externalGatewayInfo: { networkId: cloud.network.id } }, demo.token)
    for (const n of [net1, net2]) await call(c.routers, 'addRouterInterface', { routerId: router.id, subnetId: n.subnet.id }, demo.token)
    router = await call<Router>(c.routers, 'getRouter', { id: router.id }, cloud.s.adminToken)
    t.equal(router.l3AgentHost, HOST, 'placed on the one L3 agent')
    const [gw] = await portsOf({ deviceId: router.id, deviceOwner: 'network:router_gateway' })
    gatewayIp = gw!.fixedIps[0]!.ipAddress
    t.match(gatewayIp, /^192\.168\.201\.2(0\d|10)$/, 'the gateway port has an address of the external pool')
    const ns = routerNamespace(router.id)
    const addrs = await eventually(async () => {
      const out = existsSync(`/run/netns/${ns}`) ? await ip('-n', ns, '-o', 'addr').catch(() => '') : ''
      return out.includes(`${gatewayIp}/`) && out.includes('10.61.2.1/') ? out : undefined
    }, 15_000, 'the router namespace with its addresses')
    t.match(addrs, '10.61.1.1/24', "interface 1 holds its subnet's gateway")
    t.match(addrs, '10.61.2.1/24', "interface 2 holds its subnet's gateway")
    t.match(addrs, `${gatewayIp}/24`, 'the gateway interface holds the gateway address')

    a = await guest('a', net1.network)
    b = await guest('b', net2.network)
    t.match(a.address, /^10\.61\.1\./)
    t.match(b.address, /^10\.61\.2\./)
  })

  t.test('guest A reaches guest B across the router (same security group)', async (t) => {
    listeners.push(await bannerListener(b.ns, 7000, 'b'))
    const said = await eventually(() => connectFrom(a.ns, b.address, 7000), 15_000, 'A to reach B')
    t.equal(said, `b ${a.address}`, 'B sees A\'s own address (no NAT between project subnets)')
  })

  t.test('a connection from a guest to the outside arrives from the router\'s gateway address (SNAT)', async (t) => {
    const said = await eventually(() => connectFrom(a.ns, OUTSIDE_IP, 8080), 15_000, 'A to reach the outside')
    t.equal(said, `outside ${gatewayIp}`)
  })

  t.test('a floating IP: the outside reaches the guest only while the security group allows it', async (t) => {
    listeners.push(await bannerListener(a.ns, 22, 'SSH-2.0-guest'))
    fip = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: cloud.network.id, portId: a.port.id }, demo.token)
    t.match(fip, { portId: a.port.id, fixedIpAddress: a.address, routerId: router.id })
    const fipAddr = fip.floatingIpAddress
    await eventually(async () => (await ip('-n', routerNamespace(router.id), '-o', 'addr')).includes(`${fipAddr}/32`), 10_000, 'the floating address on the gateway interface')
    // The default group admits its members only: the outside is not one.
    t.equal(await connectFrom(OUTSIDE, fipAddr, 22, { timeoutMs: 1_500 }), undefined, 'refused by the default security group')
    t.equal(await eventually(() => connectFrom(a.ns, OUTSIDE_IP, 8080), 10_000, 'A out via its floating IP'), `outside ${fipAddr}`, "the guest's own connections leave from its floating IP")

    const groups = (await call<ListSecurityGroupsResponse>(c.securityGroups, 'listSecurityGroups', {}, demo.token)).securityGroups
    const dflt = groups.find((g) => g.name === 'default')!
    const rule = await call<SecurityGroupRule>(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: dflt.id, direction: 'ingress', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteIpPrefix: '0.0.0.0/0' }, demo.token)
    const t0 = Date.now()
    const banner = await reachFloatingIp(t, fipAddr, 10_000, 'the outside to reach the floating IP')
    t.comment(`security group rule tcp/22 → the outside connects to the floating IP: ${Date.now() - t0} ms`)
    t.equal(banner, `SSH-2.0-guest ${OUTSIDE_IP}`, 'the guest sees the outside\'s own address (1:1 NAT)')

    await call(c.securityGroups, 'deleteSecurityGroupRule', { id: rule.id }, demo.token)
    await eventually(async () => (await connectFrom(OUTSIDE, fipAddr, 22, { timeoutMs: 800 })) === undefined || undefined, 10_000, 'the rule removal to take effect')
    await call(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: dflt.id, direction: 'ingress', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteIpPrefix: '0.0.0.0/0' }, demo.token)
    await reachFloatingIp(t, fipAddr, 10_000, 'the outside to reach the floating IP again')
  })

  t.test('the agent SIGKILLed, its router namespace lost, restarted: the router is rebuilt and the floating IP answers again', async (t) => {
    await agent.kill('SIGKILL')
    await ip('netns', 'delete', routerNamespace(router.id))
    t.equal(await connectFrom(OUTSIDE, fip.floatingIpAddress, 22, { timeoutMs: 800 }), undefined, 'nothing answers while the router is gone')
    await agent.restart()
    const banner = await reachFloatingIp(t, fip.floatingIpAddress, 30_000, 'the floating IP to answer again')
    t.equal(banner, `SSH-2.0-guest ${OUTSIDE_IP}`)
  })

  t.test('floating ip unset --port: the outside can no longer reach the guest', async (t) => {
    const t0 = Date.now()
    await call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: '' }, demo.token)
    await eventually(async () => (await connectFrom(OUTSIDE, fip.floatingIpAddress, 22, { timeoutMs: 500 })) === undefined || undefined, 10_000, 'the floating IP to stop answering')
    t.comment(`floating ip unset → no new connection: ${Date.now() - t0} ms (each probe waits up to 500 ms)`)
    t.equal(await eventually(() => connectFrom(a.ns, OUTSIDE_IP, 8080), 10_000, 'A out again'), `outside ${gatewayIp}`, 'the guest leaves through the gateway address again')
  })

  t.test('deleting everything leaves no namespace, veth or address behind', async (t) => {
    const ns = routerNamespace(router.id)
    const routerPorts = await portsOf({ deviceId: router.id })
    await call(c.floatingIps, 'deleteFloatingIp', { id: fip.id }, demo.token)
    for (const g of [a, b]) {
      await call(cloud.c.servers, 'deleteServer', { id: g.uuid }, demo.token)
      await eventually(() => serverGone(cloud.c, g.uuid, cloud.s.adminToken), 20_000, 'the server to go')
    }
    for (const n of [net1, net2]) await call(c.routers, 'removeRouterInterface', { routerId: router.id, subnetId: n.subnet.id }, demo.token)
    await call(c.routers, 'updateRouter', { id: router.id, clearExternalGateway: true }, demo.token)
    await call(c.routers, 'deleteRouter', { id: router.id }, demo.token)
    await eventually(() => !existsSync(`/run/netns/${ns}`), 15_000, 'the router namespace to go')
    const links = await ip('-o', 'link')
    for (const p of routerPorts) t.notOk(links.includes(`tap${p.id.slice(0, 11)}`), `no host veth of router port ${p.id.slice(0, 8)}`)
    t.same(JSON.parse(readFileSync(path.join(agent.stateDir, 'l3.json'), 'utf8')), [], 'the state file names no router')
  })
}

if (missing) t.plan(0, missing)
else register()
