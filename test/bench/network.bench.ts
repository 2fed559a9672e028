/**
 * npm run bench:network — the routers' data plane (issue 17).
 *
 * Part (a): floating IP to SSH banner. A real nats-server, the controller and
 * the agent daemon as its own process on libvirt (KVM; TCG without /dev/kvm)
 * with the L3 role; the demo guest (cli/stack/guest/) on a project network
 * behind a router whose gateway is on the provider network, its security
 * group allowing tcp/22. The outside is a network namespace on the provider
 * bridge. For BENCH_FIP_CYCLES (10) cycles: UpdateFloatingIp with the guest's
 * port → the first `SSH-2.0-` banner read on a TCP connection from the
 * outside to the floating IP's port 22 (a prober in the outside namespace,
 * retrying every 20 ms with a 300 ms connect limit); then the floating IP is
 * unset and the time until a connection attempt gets no banner is printed too
 * (the "within 1 s" for `floating ip unset --port`).
 *
 * Part (b): forwarded TCP throughput (iperf3) between two namespaces on the
 * router's two project bridges, routed by the router's real `qrouter-`
 * namespace (veths, ip_forward, its iptables nat table and the bridges'
 * security-group filtering as the agent made them), against the same two
 * kind of namespaces on one direct veth pair; BENCH_IPERF_RUNS (5) runs of
 * BENCH_IPERF_SECONDS (3) each, alternating. Median and spread.
 * Not a test: it prints figures for the README. Skipped, saying why, without
 * root, libvirt or iperf3.
 */
import { execFile, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { startCloud, uploadImage, type TestCloud } from '../helpers/cloud.js'
import { spawnAgent, type AgentProcess } from '../helpers/agent-process.js'
import { ensureLibvirtd, virsh } from '../helpers/libvirt.js'
import { eventually } from '../helpers/agents.js'
import { endpoint, inNamespace, ip, spawnInNamespace } from '../helpers/netns.js'
import { call } from '../helpers/grpc.js'
import { netClients, tenant } from '../functional/network/fixtures.js'
import { buildGuestImage, GUEST_READY } from '../../cli/stack/guest/build.js'
import type { ConsoleOutput, CreateServerResponse } from '../../proto/gen/strato/compute/v1/servers.js'
import type { Flavor, Keypair } from '../../proto/gen/strato/compute/v1/compute.js'
import type { Image } from '../../proto/gen/strato/image/v1/image.js'
import type { FloatingIp, ListPortsResponse, ListSecurityGroupsResponse, Network, Router, Subnet } from '../../proto/gen/strato/network/v1/network.js'

const run = promisify(execFile)
const CYCLES = Number(process.env.BENCH_FIP_CYCLES ?? 10)
const RUNS = Number(process.env.BENCH_IPERF_RUNS ?? 5)
const SECONDS = Number(process.env.BENCH_IPERF_SECONDS ?? 3)

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)]!
}
const have = (bin: string) => ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(path.join(d, bin)))

const why = process.getuid?.() !== 0 ? 'needs root' : !have('iperf3') ? 'needs iperf3 (cli/stack/setup.sh installs it)' : !have('virsh') ? 'needs libvirt' : ''
if (why) {
  console.log(`bench:network skipped: ${why}`)
  process.exit(0)
}

const accel = existsSync('/dev/kvm') ? 'KVM' : 'TCG'
console.log(`bench:network, ${new Date().toISOString()}, ${accel}, load: ${(await run('uptime')).stdout.trim()}`)

const tag = randomBytes(3).toString('hex')
const BR_EXT = `brx-${tag}`
const OUTSIDE = `strato-bo-${tag}`
const OUTSIDE_VETH = `vb-${tag}`
// Part (b)'s namespaces: L and R through the router, DL and DR on one veth pair.
const NS = { l: `strato-bl-${tag}`, r: `strato-br-${tag}`, dl: `strato-bdl-${tag}`, dr: `strato-bdr-${tag}` }
const work = mkdtempSync(path.join(tmpdir(), 'strato-bench-net-'))
let cloud: TestCloud | undefined
let agent: AgentProcess | undefined
let prober: ChildProcess | undefined
const bridges: string[] = []
const servers: string[] = []

/**
 * One process in the outside namespace: for each line "<ip>" on stdin it
 * connects to <ip>:22 until the first data begins with SSH-2.0- (each attempt
 * limited to 300 ms, 20 ms apart) and prints "banner"; for "gone <ip>" it
 * prints "gone" once an attempt fails. Node starts once, so a cycle's time
 * holds no process start.
 */
function startProber(): { proc: ChildProcess; ask: (line: string) => Promise<string> } {
  const code = `
const net = require('net')
const once = (host) => new Promise((res) => {
  const s = net.connect({ host, port: 22 }); let done = false
  const end = (v) => { if (!done) { done = true; s.destroy(); res(v) } }
  s.setTimeout(300, () => end(false)); s.on('error', () => end(false)); s.on('data', (d) => end(d.toString().startsWith('SSH-2.0-')))
})
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
require('readline').createInterface({ input: process.stdin }).on('line', async (l) => {
  const [verb, host] = l.startsWith('gone ') ? ['gone', l.slice(5)] : ['banner', l]
  for (;;) { const ok = await once(host); if (ok === (verb === 'banner')) break; await sleep(20) }
  console.log(verb)
})`
  const proc = spawnInNamespace(OUTSIDE, process.execPath, ['-e', code], ['pipe', 'pipe', 'inherit'])
  const waiting: Array<(s: string) => void> = []
  let buf = ''
  proc.stdout!.on('data', (d: Buffer) => {
    buf += d.toString()
    let i: number
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i)
      buf = buf.slice(i + 1)
      waiting.shift()?.(line)
    }
  })
  const ask = (line: string) => new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the prober did not answer "${line}" within 120 s`)), 120_000)
    waiting.push((s) => { clearTimeout(timer); resolve(s) })
    proc.stdin!.write(`${line}\n`)
  })
  return { proc, ask }
}

async function cleanup(): Promise<void> {
  prober?.kill('SIGKILL')
  for (const id of servers) {
    await virsh('destroy', `instance-${id}`).catch(() => {})
    await virsh('undefine', `instance-${id}`, '--nvram').catch(() => {})
  }
  await agent?.remove().catch(() => {})
  await cloud?.close().catch(() => {})
  for (const ns of [OUTSIDE, ...Object.values(NS)]) await ip('netns', 'delete', ns).catch(() => {})
  for (const dev of [OUTSIDE_VETH, `il-${tag}`, `ir-${tag}`, ...bridges, BR_EXT]) await ip('link', 'delete', dev).catch(() => {})
  rmSync(work, { recursive: true, force: true })
}

/** An iperf3 run from namespace `from` to the server in `to` at `address`: received bits/s. */
async function iperf(from: string, address: string, seconds = SECONDS): Promise<number> {
  const r = await inNamespace(from, 'iperf3', ['-c', address, '-t', String(seconds), '-J'], { timeout: (seconds + 30) * 1000, maxBuffer: 16 << 20 })
  return (JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second
}

try {
  await ensureLibvirtd()
  const guest = await buildGuestImage()
  cloud = await startCloud({ hosts: [], controller: { hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } } })
  const admin = cloud.s.adminToken
  const c = netClients(cloud.s.address)
  const created = await call<Image>(cloud.c.images, 'createImage', { name: 'demo-guest', diskFormat: 'qcow2', containerFormat: 'bare', visibility: 'public', minRam: 80 }, admin)
  await uploadImage(cloud.c.images, admin, created.id, readFileSync(guest.path))
  const flavor = await call<Flavor>(cloud.c.flavors, 'createFlavor', { id: '84', name: 'm1.micro', vcpus: 1, ram: 128, disk: 1 }, admin)
  await ip('link', 'add', BR_EXT, 'type', 'bridge')
  await ip('link', 'set', BR_EXT, 'up')
  await endpoint(OUTSIDE, OUTSIDE_VETH, '192.168.201.1/24', BR_EXT)
  agent = await spawnAgent({
    host: `bnet-${tag}`, natsUrl: cloud.nats.url, driver: 'libvirt',
    env: { STRATO_AGENT_CONTROLLER: cloud.s.address, STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${BR_EXT}`, STRATO_AGENT_L3: '1', STRATO_AGENT_L3_DRIVER: 'namespaces', STRATO_AGENT_DISK_GB: '50' },
  })
  await agent.running(60_000)
  await eventually(async () => (await cloud!.s.controller.hosts.discover()).mapped.length > 0 || undefined, 10_000, 'the host to be discovered')
  const demo = await tenant(cloud.s, `bnet${tag}`)
  const key = await call<Keypair>(cloud.c.keypairs, 'createKeypair', { name: 'bench' }, demo.token)
  writeFileSync(path.join(work, 'id'), key.privateKey)
  chmodSync(path.join(work, 'id'), 0o600)

  const nets: Array<{ network: Network; subnet: Subnet }> = []
  for (const [i, cidr] of ['10.65.1.0/24', '10.65.2.0/24'].entries()) {
    const network = await call<Network>(c.networks, 'createNetwork', { name: `bn${i}` }, demo.token)
    const subnet = await call<Subnet>(c.subnets, 'createSubnet', { networkId: network.id, cidr, name: `bn${i}` }, demo.token)
    nets.push({ network, subnet })
    bridges.push(`brq${network.id.slice(0, 11)}`)
  }
  const router = await call<Router>(c.routers, 'createRouter', { name: 'bench', externalGatewayInfo: { networkId: cloud.network.id } }, demo.token)
  for (const n of nets) await call(c.routers, 'addRouterInterface', { routerId: router.id, subnetId: n.subnet.id }, demo.token)
  const dflt = (await call<ListSecurityGroupsResponse>(c.securityGroups, 'listSecurityGroups', {}, demo.token)).securityGroups.find((g) => g.name === 'default')!
  await call(c.securityGroups, 'createSecurityGroupRule', { securityGroupId: dflt.id, direction: 'ingress', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteIpPrefix: '0.0.0.0/0' }, demo.token)

  console.log('part (a): floating IP associated → first SSH banner from the outside')
  const r = await call<CreateServerResponse>(cloud.c.servers, 'createServer', { name: 'bench-fip', flavorRef: flavor.id, imageRef: created.id, networks: [{ uuid: nets[0]!.network.id }], keyName: 'bench' }, demo.token)
  const id = r.servers[0]!.id
  servers.push(id)
  const booted = await cloud.waitFor(id, (x) => (x.status === 'ACTIVE' && x.taskState === '') || x.status === 'ERROR', admin, 180_000, 'the guest ACTIVE')
  if (booted.status !== 'ACTIVE') throw new Error(`the guest is ${booted.status}: ${booted.fault?.message ?? ''}`)
  await eventually(async () => (await call<ConsoleOutput>(cloud!.c.servers, 'getConsoleOutput', { id }, admin)).output.includes(GUEST_READY) || undefined, 300_000, 'the guest to be ready')
  const port = (await call<ListPortsResponse>(c.ports, 'listPorts', { deviceId: id }, admin)).ports[0]!
  const fip = await call<FloatingIp>(c.floatingIps, 'createFloatingIp', { floatingNetworkId: cloud.network.id }, demo.token)
  const p = startProber()
  prober = p.proc
  // A first association, not measured: the guest's dropbear and the router warm up.
  await call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: port.id }, demo.token)
  await p.ask(fip.floatingIpAddress)
  await call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: '' }, demo.token)
  await p.ask(`gone ${fip.floatingIpAddress}`)
  const times: number[] = []
  const gone: number[] = []
  for (let i = 0; i < CYCLES; i++) {
    const t0 = performance.now()
    await call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: port.id }, demo.token)
    await p.ask(fip.floatingIpAddress)
    times.push(performance.now() - t0)
    const t1 = performance.now()
    await call(c.floatingIps, 'updateFloatingIp', { id: fip.id, portId: '' }, demo.token)
    await p.ask(`gone ${fip.floatingIpAddress}`)
    gone.push(performance.now() - t1)
  }
  const ms = (x: number) => `${Math.round(x)} ms`
  console.log(`${CYCLES} associate/dissociate cycles (${accel}): UpdateFloatingIp(port) → first SSH-2.0 banner at the floating IP: p50 ${ms(quantile(times, 0.5))}, min ${ms(Math.min(...times))}, max ${ms(Math.max(...times))} (all: ${times.map(Math.round).join(', ')} ms)`)
  console.log(`the same cycles: UpdateFloatingIp(no port) → the first connection attempt that gets no banner (300 ms limit included): p50 ${ms(quantile(gone, 0.5))}, min ${ms(Math.min(...gone))}, max ${ms(Math.max(...gone))}`)

  console.log('part (b): TCP throughput (iperf3) routed by the qrouter namespace vs one direct veth')
  // .250: above what this bench allocates from the subnets' pools; the veths are not ports, so no security group filters them.
  await endpoint(NS.l, `il-${tag}`, '10.65.1.250/24', bridges[0], '10.65.1.1')
  await endpoint(NS.r, `ir-${tag}`, '10.65.2.250/24', bridges[1], '10.65.2.1')
  await ip('netns', 'add', NS.dl)
  await ip('netns', 'add', NS.dr)
  await ip('-n', NS.dl, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS.dr)
  for (const [ns, cidr] of [[NS.dl, '10.66.0.1/24'], [NS.dr, '10.66.0.2/24']] as const) {
    await ip('-n', ns, 'link', 'set', 'lo', 'up')
    await ip('-n', ns, 'addr', 'add', cidr, 'dev', 'eth0')
    await ip('-n', ns, 'link', 'set', 'eth0', 'up')
  }
  const servers3: ChildProcess[] = []
  for (const ns of [NS.r, NS.dr]) servers3.push(spawnInNamespace(ns, 'iperf3', ['-s'], 'ignore'))
  try {
    // A first short run each, retried until its server listens, also warms both paths (ARP, conntrack).
    const ready = (ns: string, address: string, what: string) => eventually(() => iperf(ns, address, 1).catch(() => undefined), 60_000, what)
    await ready(NS.l, '10.65.2.250', 'the routed iperf3 server to answer')
    await ready(NS.dl, '10.66.0.2', 'the direct iperf3 server to answer')
    const routed: number[] = []
    const direct: number[] = []
    for (let i = 0; i < RUNS; i++) {
      routed.push(await iperf(NS.l, '10.65.2.250'))
      direct.push(await iperf(NS.dl, '10.66.0.2'))
    }
    const g = (x: number) => `${(x / 1e9).toFixed(2)} Gbit/s`
    const line = (what: string, xs: number[]) => `${what}: median ${g(quantile(xs, 0.5))}, min ${g(Math.min(...xs))}, max ${g(Math.max(...xs))}`
    console.log(`${RUNS} alternating runs of ${SECONDS} s, one TCP stream each`)
    console.log(line('  routed (bridge → qrouter namespace → bridge)', routed))
    console.log(line('  direct veth pair', direct))
    console.log(`  routed / direct: ${(quantile(routed, 0.5) / quantile(direct, 0.5) * 100).toFixed(0)} %`)
  } finally {
    for (const s of servers3) s.kill('SIGKILL')
  }
  console.log(`load at the end: ${(await run('uptime')).stdout.trim()}`)
} finally {
  await cleanup()
}
process.exit(0)
