/**
 * Integration, issue 17's "done means" on real guests: the controller and
 * nats-server, the agent daemon as its own process on libvirt (KVM; TCG
 * without /dev/kvm) with DHCP (dnsmasq), security groups (iptables) and the
 * L3 role (`qrouter-` namespaces), and two demo guests (a real Linux, built
 * by cli/stack/guest/) on two project networks (`local`) behind one router
 * whose gateway is on the provider network. The outside (standing for the
 * internet) is a namespace this test makes on the provider bridge, holding
 * the external subnet's gateway address and an HTTP listener that answers
 * each request with the peer's address. The test checks, through the guests
 * themselves: DHCP addresses (their ready lines), A pings B across the router,
 * SSH from the outside to A's floating IP with the keypair only while tcp/22
 * is allowed, metadata behind the router, A's own connections leaving from its
 * floating IP and, once `floating ip unset --port`, from the router's gateway
 * address (SNAT) while the outside can no longer reach it; and that deleting
 * everything leaves no namespace, veth, iptables rule or address behind.
 * Needs root, libvirt-daemon-system, qemu-system-x86, dnsmasq-base, iptables, openssh-client.
 */
import { execFile, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { serverGone, startCloud, uploadImage, type TestCloud } from '../../helpers/cloud.js'
import { spawnAgent, type AgentProcess } from '../../helpers/agent-process.js'
import { ensureLibvirtd, virsh } from '../../helpers/libvirt.js'
import { call, type Decoded } from '../../helpers/grpc.js'
import { eventually } from '../../helpers/agents.js'
import { connectFrom, endpoint, inNamespace, ip, listenIn } from '../../helpers/netns.js'
import { netClients, tenant, type NetClients, type Tenant } from '../../functional/network/fixtures.js'
import { buildGuestImage, GUEST_READY, GUEST_USER } from '../../../cli/stack/guest/build.js'
import { routerNamespace } from '../../../agent/net/l3.js'
import type { ConsoleOutput, CreateServerResponse } from '../../../proto/gen/strato/compute/v1/servers.js'
import type { Flavor, Keypair } from '../../../proto/gen/strato/compute/v1/compute.js'
import type { Image } from '../../../proto/gen/strato/image/v1/image.js'
import type { FloatingIp, ListPortsResponse, ListSecurityGroupsResponse, Network, Port, Router, SecurityGroupRule, Subnet } from '../../../proto/gen/strato/network/v1/network.js'

const run = promisify(execFile)

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root to drive qemu:///system and make namespaces')
} else {
  const tag = randomBytes(3).toString('hex')
  const HOST = `l3v-${tag}`
  const BR_EXT = `brx-${tag}`
  const OUTSIDE = `strato-l3out-${tag}`
  const OUTSIDE_VETH = `vx-${tag}`
  const OUTSIDE_IP = '192.168.201.1'
  const work = mkdtempSync(path.join(tmpdir(), 'strato-l3v-'))
  const keyFile = path.join(work, 'id')
  let cloud: TestCloud
  let c: NetClients
  let agent: AgentProcess
  let demo: Tenant
  let image: Decoded<Image>
  let flavor: Decoded<Flavor>
  let web: ChildProcess | undefined
  /** Every peer the outside's listener saw, in order ("<address> <path>"). */
  const seen: string[] = []
  const made: string[] = []

  const inOutside = (cmd: string, ...args: string[]) => inNamespace(OUTSIDE, cmd, args, { timeout: 60_000 })
  /** Runs `command` in the guest at `ip` over SSH, from the outside, with the keypair's private key. */
  const ssh = (ip: string, command: string, user = GUEST_USER, timeoutS = 5) =>
    inOutside('ssh', '-i', keyFile, '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
      '-o', 'BatchMode=yes', '-o', `ConnectTimeout=${timeoutS}`, `${user}@${ip}`, command).then((r) => r.stdout)
  const canSsh = (ip: string) => ssh(ip, 'echo ok', GUEST_USER, 3).then((out) => out.trim() === 'ok', () => false)
  /** The first line a TCP connection from the outside to ip:22 reads (dropbear's banner), or undefined when none within `timeoutMs`. */
  const banner = (ip: string, timeoutMs = 500) => connectFrom(OUTSIDE, ip, 22, { timeoutMs, firstLine: true })
  const consoleOf = async (id: string) => (await call<ConsoleOutput>(cloud.c.servers, 'getConsoleOutput', { id }, cloud.s.adminToken)).output
  const portsOf = async (filter: object): Promise<Array<Decoded<Port>>> => (await call<ListPortsResponse>(c.ports, 'listPorts', filter, cloud.s.adminToken)).ports

  t.before(async () => {
    await ensureLibvirtd()
    const guest = await buildGuestImage()
    cloud = await startCloud({ hosts: [], controller: { hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } } })
    c = netClients(cloud.s.address)
    const created = await call<Image>(cloud.c.images, 'createImage', { name: 'demo-guest', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public', minRam: 80 }, cloud.s.adminToken)
    await uploadImage(cloud.c.images, cloud.s.adminToken, created.id, readFileSync(guest.path))
    image = await call<Image>(cloud.c.images, 'getImage', { id: created.id }, cloud.s.adminToken)
    flavor = await call<Flavor>(cloud.c.flavors, 'createFlavor', { id: '84', name: 'm1.micro', vcpus: 1, ram: 128, disk: 1 }, cloud.s.adminToken)
    // The provider bridge and the outside on it, made before the agent uses the bridge.
    await ip('link', 'add', BR_EXT, 'type', 'bridge')
    await ip('link', 'set', BR_EXT, 'up')
    await endpoint(OUTSIDE, OUTSIDE_VETH, `${OUTSIDE_IP}/24`, BR_EXT)
    // An HTTP listener that tells the peer's address back and prints it (what busybox wget in a guest can ask).
    const code = `require('http').createServer((q, s) => { const a = q.socket.remoteAddress.replace(/^::ffff:/, ''); console.log(a + ' ' + q.url); s.end(a + '\\n') }).listen(8080, () => console.log('listening'))`
    web = await listenIn(OUTSIDE, code, (l) => seen.push(l))
    agent = await spawnAgent({
      host: HOST, natsUrl: cloud.nats.url, driver: 'libvirt',
      env: {
        STRATO_AGENT_CONTROLLER: cloud.s.address,
        STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${BR_EXT}`,
        STRATO_AGENT_L3: '1', STRATO_AGENT_L3_DRIVER: 'namespaces',
        STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '5000',
        STRATO_AGENT_POWER_SYNC_INTERVAL_MS: '1000',
        STRATO_AGENT_DISK_GB: '50',
      },
    })
    await agent.running(60_000)
    await eventually(async () => (await cloud.s.controller.hosts.discover()).mapped.length > 0 || undefined, 10_000, 'the host to be discovered')
    demo = await tenant(cloud.s, `l3v${tag}`)
    const key = await call<Keypair>(cloud.c.keypairs, 'createKeypair', { name: 'mykey' }, demo.token)
    writeFileSync(keyFile, key.privateKey)
    chmodSync(keyFile, 0o600)
  })

  t.teardown(async () => {
    if (t.passing() === false || process.env.STRATO_TEST_LOG) t.comment(agent?.log().slice(-8000) ?? '')
    web?.kill('SIGKILL')
    for (const uuid of made) {
      await virsh('destroy', `instance-${uuid}`).catch(() => {})
      await virsh('undefine', `instance-${uuid}`, '--nvram').catch(() => {})
    }
    // remove(): domains, iptables chains, dnsmasq and router namespaces the agent left.
    await agent?.remove()
    await cloud?.close().catch(() => {})
    c?.close()
    await ip('netns', 'delete', OUTSIDE).catch(() => {})
    await ip('link', 'delete', OUTSIDE_VETH).catch(() => {})
    for (const net of [net1, net2]) if (net) await ip('link', 'delete', `brq${net.network.id.slice(0, 11)}`).catch(() => {})
    await ip('link', 'delete', BR_EXT).catch(() => {})
    rmSync(work, { recursive: true, force: true })
  })

  /** A booted guest: its port, fixed IP and the ready line it printed. */
  interface Guest { id: string; ip: string; port: Decoded<Port>; line: string }

  /** Boots the demo guest on `network` (in the demo project, with the keypair); resolves once it prints its ready line. */
  async function boot(name: string, network: Decoded<Network>): Promise<Guest> {
    const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', {
      name, flavorRef: flavor.id, imageRef: image.id, networks: [{ uuid: network.id }], keyName: 'mykey',
    }, demo.token)
    const id = r.servers[0]!.id
    made.push(id)
    const s = await cloud.waitFor(id, (x) => (x.status === 'ACTIVE' && x.taskState === '') || x.status === 'ERROR', cloud.s.adminToken, 180_000, `${name} ACTIVE`)
    if (s.status !== 'ACTIVE') throw new Error(`${name} is ${s.status}: ${s.fault?.message ?? ''}`)
    const [port] = await portsOf({ deviceId: id })
    const line = await eventually(async () => (await consoleOf(id)).split('\n').find((l) => l.includes(GUEST_READY)), 240_000, `${name}'s ready line`)
    return { id, ip: port!.fixedIps[0]!.ipAddress, port: port!, line }
  }

  async function projectNet(name: string, cidr: string) {
    const network = await call<Network>(c.networks, 'createNetwork', { name }, demo.token)
    const subnet = await call<Subnet>(c.subnets, 'createSubnet', { networkId: network.id, cidr, name }, demo.token)
    return { network, subnet }
  }

  let net1: { network: Decoded<Network>; subnet: Decoded<Subnet> } | undefined
  let net2: { network: Decoded<Network>; subnet: Decoded<Subnet> } | undefined
  let router: Decoded<Router>
  let gatewayIp: string
  let a: Guest
  let b: Guest
  let fip: Decoded<FloatingIp>

  t.test('two guests on two project networks behind one router take their DHCP addresses', { timeout: 600_000 }, async (t) => {
    net1 = await projectNet(`n1-${tag}`, '10.62.1.0/24')
    net2 = await projectNet(`n2-${tag}`, '10.62.2.0/24')
    t.equal(net1.network.providerNetworkType, 'local', 'project networks are local (no VXLAN on this kernel)')
    router = await call<Router>(c.routers, 'createRouter', { name: `r-${tag}`, externalGatewayInfo: { networkId: cloud.network.id } }, demo.token)
    for (const n of [net1, net2]) await call(c.routers, 'addRouterInterface', { routerId: router.id, subnetId: n.subnet.id }, demo.token)
    const [gw] = await portsOf({ deviceId: router.id, deviceOwner: 'network:router_gateway' })
    gatewayIp = gw!.fixedIps[0]!.ipAddress
    // Both boots at once: under TCG each takes tens of seconds.
    ;[a, b] = await Promise.all([boot('a', net1.network), boot('b', net2.network)])
    t.match(a.ip, /^10\.62\.1\./)
    t.match(b.ip, /^10\.62\.2\./)
    t.match(a.line, a.ip, `A prints the address it leased, its port's fixed IP (${a.ip})`)
    t.match(b.line, b.ip, `B prints the address it leased, its port's fixed IP (${b.ip})`)
    const addrs = await ip('-n', routerNamespace(router.id), '-o', 'addr')
    t.match(addrs, `${gatewayIp}/24`, 'the router namespace holds the gateway address')
  })

  t.test('SSH from the outside to A\'s floating IP only while tcp/22 is allowed; metadata and A → B across the router', { timeout: 600_000 }, async (t) => {
    fip = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: cloud.network.id, portId: a.port.id }, demo.token)
    t.match(fip, { portId: a.port.id, fixedIpAddress: a.ip, routerId: router.id })
    const fipAddr = fip.floatingIpAddress
    await eventually(async () => (await ip('-n', routerNamespace(router.id), '-o', 'addr')).includes(`${fipAddr}/32`), 15_000, 'the floating address on the gateway interface')
    t.equal(await canSsh(fipAddr), false, 'no SSH while the default security group admits its members only')

    const groups = (await call<ListSecurityGroupsResponse>(c.securityGroups, 'listSecurityGroups', {}, demo.token)).securityGroups
    const dflt = groups.find((g) => g.name === 'default')!
    await call<SecurityGroupRule>(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: dflt.id, direction: 'ingress', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteIpPrefix: '0.0.0.0/0' }, demo.token)
    t.ok(await eventually(async () => (await canSsh(fipAddr)) || undefined, 60_000, 'ssh to the floating IP after the tcp/22 rule'), 'ssh cirros@<floating IP> logs in with the keypair')
    t.equal((await ssh(fipAddr, 'ip -4 -o addr show dev eth0')).includes(fipAddr), false, 'the guest sees only its fixed IP')

    const meta = JSON.parse(await ssh(fipAddr, 'wget -qO- http://169.254.169.254/openstack/latest/meta_data.json', GUEST_USER, 10)) as { uuid: string }
    t.equal(meta.uuid, a.id, "metadata from behind the router: A's own uuid")

    // Root for ICMP sockets; A and B share the default group, which admits its members.
    const pinged = await eventually(async () => (await ssh(fipAddr, `ping -c 1 -W 3 ${b.ip} >/dev/null && echo reached`, 'root', 10).catch(() => '')).includes('reached') || undefined, 30_000, 'A to ping B')
    t.ok(pinged, `A pings B (${b.ip}) across the router`)
  })

  t.test('A\'s connections to the outside leave from its floating IP, then from the gateway address once the floating IP is unset; the outside loses A', { timeout: 300_000 }, async (t) => {
    const fipAddr = fip.floatingIpAddress
    // A loop in the guest, detached from the SSH session (which the unset will cut): one request a second, numbered.
    await ssh(fipAddr, `setsid sh -c 'i=0; while [ $i -lt 120 ]; do wget -qO- http://${OUTSIDE_IP}:8080/a$i >/dev/null 2>&1; i=$((i+1)); sleep 1; done' </dev/null >/dev/null 2>&1 &`, GUEST_USER, 10)
    const fromFip = await eventually(async () => seen.find((l) => / \/a\d+$/.test(l)), 30_000, 'a request from A')
    t.equal(fromFip.split(' ')[0], fipAddr, 'with a floating IP, A leaves from it (1:1 NAT)')

    t.match(await banner(fipAddr, 5_000), /^SSH-2\.0-/, 'the outside reads the SSH banner at the floating IP')
    const t0 = Date.now()
    await call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: '' }, demo.token)
    // A new connection each probe (an SSH session cut half way would hang a client, not measure the unset).
    await eventually(async () => (await banner(fipAddr)) === undefined || undefined, 10_000, 'the floating IP to stop answering')
    t.comment(`floating ip unset → no banner at the floating IP: ${Date.now() - t0} ms (each probe waits up to 500 ms)`)
    t.equal(await canSsh(fipAddr), false, 'ssh to the former floating IP fails')
    const n = seen.length
    const snat = await eventually(async () => seen.slice(n).find((l) => / \/a\d+$/.test(l) && l.startsWith(`${gatewayIp} `)), 30_000, "a request from A through the router's gateway")
    t.ok(snat, `A's requests arrive from the router's gateway address ${gatewayIp} (SNAT)`)
    t.equal(await banner(fipAddr, 2_000), undefined, 'still nothing answers at the former floating IP')
  })

  t.test('deleting everything leaves no namespace, veth, iptables rule or address behind', { timeout: 300_000 }, async (t) => {
    const ns = routerNamespace(router.id)
    const routerPorts = await portsOf({ deviceId: router.id })
    await call(c.floatingIps, 'deleteFloatingIp', { id: fip.id }, demo.token)
    for (const g of [a, b]) await call(cloud.c.servers, 'deleteServer', { id: g.id }, demo.token)
    for (const g of [a, b]) await eventually(() => serverGone(cloud.c, g.id, cloud.s.adminToken), 120_000, 'the server to go')
    for (const n of [net1!, net2!]) await call(c.routers, 'removeRouterInterface', { routerId: router.id, subnetId: n.subnet.id }, demo.token)
    await call(c.routers, 'updateRouter', { id: router.id, clearExternalGateway: true }, demo.token)
    await call(c.routers, 'deleteRouter', { id: router.id }, demo.token)
    for (const n of [net1!, net2!]) await call(c.networks, 'deleteNetwork', { id: n.network.id }, demo.token)
    await eventually(() => !existsSync(`/run/netns/${ns}`) || undefined, 20_000, 'the router namespace to go')
    t.notOk((await ip('netns', 'list')).includes(ns), `no ${ns}`)
    const links = await ip('-o', 'link')
    for (const p of routerPorts) t.notOk(links.includes(`tap${p.id.slice(0, 11)}`), `no host veth of router port ${p.id.slice(0, 8)} (${p.deviceOwner})`)
    const rules = (await run('iptables-save')).stdout
    for (const x of [router.id.slice(0, 11), fip.floatingIpAddress, gatewayIp, a.port.id.slice(0, 11), b.port.id.slice(0, 11)]) t.notOk(rules.includes(x), `no iptables rule names ${x}`)
    const addrs = await ip('-o', 'addr')
    t.notOk(addrs.includes(`${gatewayIp}/`) || addrs.includes(`${fip.floatingIpAddress}/`), 'no gateway or floating address left on the host')
    t.same(JSON.parse(readFileSync(path.join(agent.stateDir, 'l3.json'), 'utf8')), [], 'the state file names no router')
  })
}
