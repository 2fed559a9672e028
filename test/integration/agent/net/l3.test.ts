/**
 * Integration: the agent's L3 data plane (agent/net/l3.ts) against the real
 * kernel. The test makes three bridges on the host — two project networks
 * with a "guest" namespace each (A 10.0.1.5, B 10.0.2.5, default route via
 * the router) and an external network with an "outside" namespace
 * (203.0.113.1, standing for the internet) — and a router joining them, then
 * shows through real TCP connections: routing between the subnets, SNAT to the
 * gateway address, a floating IP both ways, a removed floating IP cutting even
 * established flows, SNAT off, a restarted agent keeping an established flow,
 * a deleted namespace rebuilt, one bad router not stopping another, and
 * removal of everything. Needs root, iproute2, iptables, conntrack.
 */
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { Writable } from 'node:stream'
import { promisify } from 'node:util'
import t from 'tap'
import { pino } from 'pino'
import { L3Agent, routerDevices, routerNamespace } from '../../../../agent/net/l3.js'
import { listenInNamespace } from '../../../../agent/net/netns.js'
import type { RouterNetwork, RouterSpec } from '../../../../proto/router.js'

const exec = promisify(execFile)
const hex = process.pid.toString(16).padStart(8, '0').slice(-8)
const ROUTER = `${hex}-0000-4000-8000-00000000a001`
const BAD_ROUTER = `${hex}-0000-4000-8000-00000000a002`
const ROUTER2 = `${hex}-0000-4000-8000-00000000a003`
const P_A = `${hex}-1a00-4000-8000-000000000001`
const P_B = `${hex}-2a00-4000-8000-000000000002`
const P_G = `${hex}-3a00-4000-8000-000000000003`
const P_BAD = `${hex}-4a00-4000-8000-000000000004`
const NET_A = `${hex}-aaaa-4000-8000-000000000000`
const NET_B = `${hex}-bbbb-4000-8000-000000000000`
const NET_EXT = `${hex}-eeee-4000-8000-000000000000`
const bridges: Record<string, string> = { [NET_A]: `l3a${hex}`, [NET_B]: `l3b${hex}`, [NET_EXT]: `l3e${hex}` }
const NS = { a: `strato-l3-a-${hex}`, b: `strato-l3-b-${hex}`, out: `strato-l3-o-${hex}` }
const PORT = 7100

const ip = async (...args: string[]) => (await exec('ip', args)).stdout
const inNs = async (ns: string, ...args: string[]) => (await exec('ip', ['netns', 'exec', ns, ...args])).stdout
const linkExists = (name: string) => existsSync(`/sys/class/net/${name}`)
const ping = (ns: string, to: string) => inNs(ns, 'busybox', to.includes(':') ? 'ping6' : 'ping', '-c', '1', '-W', '2', to).then(() => true, () => false)
/** A positive check: up to three pings (a first one can be lost to neighbour discovery on a loaded machine). */
const reaches = async (ns: string, to: string): Promise<boolean> => {
  for (let i = 0; i < 3; i++) if (await ping(ns, to)) return true
  return false
}
const netns = (n: string): RouterNetwork => ({ networkId: n, networkType: 'local', physicalNetwork: '', segmentationId: 0, mtu: 1450 })

const spec = (o: { floating?: boolean; snat?: boolean; up?: boolean; routes?: RouterSpec['routes'] } = {}): RouterSpec => ({
  id: ROUTER,
  adminStateUp: o.up ?? true,
  interfaces: [
    { portId: P_A, macAddress: 'fa:16:3e:1a:00:01', network: netns(NET_A), addresses: ['10.0.1.1/24', 'fd00:1::1/64'], cidrs: ['10.0.1.0/24', 'fd00:1::/64'] },
    { portId: P_B, macAddress: 'fa:16:3e:2a:00:01', network: netns(NET_B), addresses: ['10.0.2.1/24', 'fd00:2::1/64'], cidrs: ['10.0.2.0/24', 'fd00:2::/64'] },
  ],
  gateway: { portId: P_G, macAddress: 'fa:16:3e:3a:00:01', network: netns(NET_EXT), addresses: ['203.0.113.10/24'], cidrs: ['203.0.113.0/24'], nexthop: '203.0.113.1', enableSnat: o.snat ?? true },
  routes: o.routes ?? [],
  floatingIps: o.floating ? [{ id: 'fip-1', floatingIpAddress: '203.0.113.20', fixedIpAddress: '10.0.1.5' }] : [],
})

/** A router that fails after its namespace and veth were made: its route's nexthop is on no subnet. */
const badRouter = (): RouterSpec => ({
  id: BAD_ROUTER, adminStateUp: true,
  interfaces: [{ portId: P_BAD, macAddress: 'fa:16:3e:4a:00:01', network: netns(NET_B), addresses: ['10.0.9.1/24'], cidrs: ['10.0.9.0/24'] }],
  routes: [{ destination: '192.168.77.0/24', nexthop: '192.0.2.99' }], floatingIps: [],
})

/** The commands an agent ran, from its debug log. */
const commands: string[] = []
const log = pino({ level: 'debug' }, new Writable({
  write(chunk: Buffer, _enc, done) {
    for (const line of chunk.toString().split('\n').filter(Boolean)) {
      const entry = JSON.parse(line) as { msg: string; cmd?: string; level: number; err?: { message: string } }
      if (entry.msg === 'l3: run') commands.push(entry.cmd!)
      else if (entry.level >= 50) process.stderr.write(`# ${entry.msg}${entry.err ? `: ${entry.err.message}` : ''}\n`)
    }
    done()
  },
}))
const stateDir = mkdtempSync(path.join(tmpdir(), 'strato-l3-'))
const newAgent = () => new L3Agent({ stateDir, bridgeFor: (n) => bridges[n.networkId]!, log })

/** A TCP echo server in a namespace recording who connected (the source address it sees, per token). */
interface Listener { seen: Map<string, string>; accepted: number; close(): Promise<void> }
function listen(ns: string, address: string): Promise<Listener> {
  const seen = new Map<string, string>()
  const sockets = new Set<net.Socket>()
  const l: Listener = { seen, accepted: 0, close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()) }) }
  const server = net.createServer((s) => {
    l.accepted++
    sockets.add(s)
    s.on('close', () => sockets.delete(s)).on('error', () => undefined)
    let buf = ''
    s.setEncoding('utf8').on('data', (d: string) => {
      buf += d
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const token = buf.slice(0, i)
        buf = buf.slice(i + 1)
        seen.set(token, s.remoteAddress!.replace(/^::ffff:/, ''))
        s.write(`${token}\n`)
      }
    })
  })
  return new Promise((resolve, reject) => server.once('error', reject).listen({ fd: listenInNamespace({ netns: ns, address, port: PORT }) }, () => resolve(l)))
}

const CLIENT = `
const [host, port, token, ms] = process.argv.slice(1)
const s = require('net').connect({ host, port: Number(port) })
setTimeout(() => { console.error('timed out'); process.exit(2) }, Number(ms))
s.on('connect', () => s.write(token + '\\n'))
let buf = ''
s.setEncoding('utf8').on('data', (d) => { buf += d; if (buf.includes(token)) process.exit(0) })
s.on('error', (e) => { console.error(e.code); process.exit(1) })
`
let tokens = 0
/** Why the last connect failed (the client's stderr), for the test's messages. */
let why = ''
/** Connects from namespace `ns` to host:PORT, sends a token, waits for its echo; the token, or undefined when it failed within `ms`. */
async function connect(ns: string, host: string, ms = 15_000): Promise<string | undefined> {
  const token = `t${++tokens}`
  return inNs(ns, 'node', '-e', CLIENT, host, String(PORT), token, String(ms)).then(() => token, (err: { stderr?: string }) => {
    why = `${ns} → ${host}: ${err.stderr?.trim() ?? String(err)}`
    return undefined
  })
}

/** A long-lived connection from `ns`: each line written is echoed back. */
class Session {
  private readonly child: ChildProcessWithoutNullStreams
  private out = ''
  constructor(ns: string, host: string) {
    this.child = spawn('ip', ['netns', 'exec', ns, 'node', '-e', `
      const s = require('net').connect({ host: process.argv[1], port: Number(process.argv[2]) })
      s.on('connect', () => console.log('connected'))
      s.on('error', (e) => { console.log('error ' + e.code); process.exit(1) })
      process.stdin.pipe(s); s.pipe(process.stdout)`, host, String(PORT)])
    this.child.stdout.setEncoding('utf8').on('data', (d: string) => (this.out += d))
  }
  /** Whether `line` appears in the output within `ms`. */
  async sees(line: string, ms: number): Promise<boolean> {
    for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (this.out.split('\n').includes(line)) return true
    return false
  }
  send(line: string): void {
    this.child.stdin.write(`${line}\n`)
  }
  close(): void {
    this.child.kill('SIGKILL')
  }
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces, veths and iptables')
} else {
  const listeners: Listener[] = []
  const sessions: Session[] = []
  t.teardown(async () => {
    for (const s of sessions) s.close()
    for (const l of listeners) await l.close()
    await newAgent().removeAll().catch((err: unknown) => process.stderr.write(`# removeAll: ${String(err)}\n`))
    // Whatever a failed run left of the routers (named by this test's ids only).
    for (const r of [ROUTER, BAD_ROUTER, ROUTER2]) await ip('netns', 'delete', routerNamespace(r)).catch(() => undefined)
    for (const p of [P_A, P_B, P_G, P_BAD]) await ip('link', 'delete', routerDevices(p, 'qr').host).catch(() => undefined)
    for (const n of Object.values(NS)) await ip('netns', 'delete', n).catch(() => undefined)
    for (const k of ['a', 'b', 'o']) await ip('link', 'delete', `l3v${k}${hex}`).catch(() => undefined)
    for (const b of Object.values(bridges)) await ip('link', 'delete', b, 'type', 'bridge').catch(() => undefined)
    rmSync(stateDir, { recursive: true, force: true })
  })

  // The host's bridges, and a namespace on each standing for a guest or the outside.
  const clients: Array<[keyof typeof NS, string, string, string | undefined, string?]> = [
    ['a', NET_A, '10.0.1.5/24', '10.0.1.1', 'fd00:1::5/64'], ['b', NET_B, '10.0.2.5/24', '10.0.2.1', 'fd00:2::5/64'], ['out', NET_EXT, '203.0.113.1/24', undefined],
  ]
  for (const [k, n, address, gateway, v6] of clients) {
    const veth = `l3v${k[0]}${hex}`
    await ip('link', 'add', bridges[n]!, 'type', 'bridge')
    await ip('link', 'set', bridges[n]!, 'up')
    await ip('netns', 'add', NS[k])
    await ip('-n', NS[k], 'link', 'set', 'lo', 'up')
    await ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', NS[k])
    await ip('link', 'set', veth, 'master', bridges[n]!, 'up')
    await ip('-n', NS[k], 'addr', 'add', address, 'dev', 'eth0')
    await ip('-n', NS[k], 'link', 'set', 'eth0', 'up')
    if (gateway) await ip('-n', NS[k], 'route', 'add', 'default', 'via', gateway)
    if (v6) {
      await ip('-n', NS[k], 'addr', 'add', v6, 'dev', 'eth0', 'nodad')
      await ip('-n', NS[k], '-6', 'route', 'add', 'default', 'via', v6.replace(/5\/64$/, '1'))
    }
  }
  // The outside routes the project subnets to the router only for the SNAT-off case (their addresses are private).
  await ip('-n', NS.out, 'route', 'add', '10.0.2.0/24', 'via', '203.0.113.10')
  const [atA, atB, outside] = [await listen(NS.a, '10.0.1.5'), await listen(NS.b, '10.0.2.5'), await listen(NS.out, '203.0.113.1')]
  listeners.push(atA, atB, outside)
  const ns = routerNamespace(ROUTER)
  const gw = routerDevices(P_G, 'qg')
  let agent = newAgent()

  t.test('a router joins two subnets and SNATs them to its gateway address', async (t) => {
    t.equal(await connect(NS.a, '10.0.2.5', 2_000), undefined, 'before: A cannot reach B')
    commands.length = 0
    const started = Date.now()
    await agent.apply([spec()])
    t.comment(`building a router with two interfaces and a gateway: apply took ${Date.now() - started} ms, ${commands.length} commands`)
    t.ok(existsSync(`/run/netns/${ns}`), `namespace ${ns}`)
    for (const [p, kind, bridge] of [[P_A, 'qr', bridges[NET_A]], [P_B, 'qr', bridges[NET_B]], [P_G, 'qg', bridges[NET_EXT]]] as const) {
      const dev = routerDevices(p, kind)
      const host = JSON.parse(await ip('-j', 'link', 'show', 'dev', dev.host)) as Array<{ master?: string; mtu: number; operstate: string }>
      t.equal(host[0]?.master, bridge, `${dev.host} is a port of ${bridge}`)
      t.equal(host[0]?.mtu, 1450, 'with the network MTU')
      t.match(await ip('-n', ns, 'link', 'show', 'dev', dev.inner), /mtu 1450 .*state UP[\s\S]*link\/ether fa:16:3e:/, `${dev.inner} is up, with the port's MAC`)
    }
    t.match(await ip('-n', ns, 'route', 'show', 'default'), /default via 203\.0\.113\.1 dev qg-/, 'the default route via the nexthop')
    t.equal((await inNs(ns, 'sysctl', '-n', 'net.ipv4.ip_forward')).trim(), '1', 'forwarding on in the namespace')

    const ab = await connect(NS.a, '10.0.2.5')
    t.ok(ab, 'A reaches B across the router', { why })
    t.equal(atB.seen.get(ab!), '10.0.1.5', 'from its own address: no NAT between the router\'s subnets')
    const ao = await connect(NS.a, '203.0.113.1')
    t.ok(ao, 'A reaches the outside')
    t.equal(outside.seen.get(ao!), '203.0.113.10', 'from the gateway address (SNAT)')
    t.equal(await connect(NS.out, '10.0.1.5', 2_000), undefined, 'the outside cannot reach A\'s fixed IP')
    t.ok(await reaches(NS.a, 'fd00:2::5'), 'IPv6 too: A pings B across the router')
    const l3json = JSON.parse(readFileSync(path.join(stateDir, 'l3.json'), 'utf8')) as Array<{ id: string; ports: Array<{ host: string }> }>
    t.same(l3json.map((r) => [r.id, r.ports.map((p) => p.host).sort()]), [[ROUTER, [P_A, P_B, P_G].map((p) => routerDevices(p, 'qr').host).sort()]], 'the state file records what was made')
  })

  t.test('a floating IP: the outside reaches A, and A goes out from it; no-change applies run nothing', async (t) => {
    commands.length = 0
    let started = Date.now()
    await agent.apply([spec({ floating: true })])
    t.comment(`adding a floating IP: apply took ${Date.now() - started} ms, ${commands.length} commands`)
    t.ok(commands.includes(`arping -U -c 1 -I ${gw.inner} 203.0.113.20`), 'the new address is announced (gratuitous ARP)')
    t.match(await ip('-n', ns, '-4', 'addr', 'show', 'dev', gw.inner), /inet 203\.0\.113\.20\/32/, 'the floating address is on the gateway device')
    const oa = await connect(NS.out, '203.0.113.20')
    t.ok(oa, 'the outside connects to the floating IP')
    t.equal(atA.seen.get(oa!), '203.0.113.1', 'and A sees the outside\'s address')
    const ao = await connect(NS.a, '203.0.113.1')
    t.equal(outside.seen.get(ao!), '203.0.113.20', 'A\'s connections come from its floating IP')
    const bo = await connect(NS.b, '203.0.113.1')
    t.equal(outside.seen.get(bo!), '203.0.113.10', 'B\'s still from the gateway address')

    commands.length = 0
    started = Date.now()
    await agent.apply([spec({ floating: true })])
    t.comment(`an apply that changes nothing took ${Date.now() - started} ms`)
    await agent.apply([spec({ floating: true })])
    t.same(commands, [], 'an apply that changes nothing runs no command (no iptables-restore)')

    // What it cannot see without commands (a table flushed by hand) comes back after resync().
    await inNs(ns, 'iptables', '-t', 'nat', '-F')
    await agent.apply([spec({ floating: true })])
    t.notMatch(await inNs(ns, 'iptables-save', '-t', 'nat'), /DNAT/, 'a flushed table is not noticed by a no-change apply')
    agent.resync()
    await agent.apply([spec({ floating: true })])
    t.match(await inNs(ns, 'iptables-save', '-t', 'nat'), /-A PREROUTING -d 203\.0\.113\.20\/32 -j DNAT --to-destination 10\.0\.1\.5/, 'resync(): the next apply converges it')
    t.notOk(commands.some((c) => /netns add|link (add|delete)/.test(c)), 'without recreating anything')
  })

  t.test('an agent that restarts keeps an established flow through a floating IP', async (t) => {
    const session = new Session(NS.out, '203.0.113.20')
    sessions.push(session)
    t.ok(await session.sees('connected', 15_000), 'connected through the floating IP')
    session.send('before')
    t.ok(await session.sees('before', 15_000), 'echoed')
    const accepted = atA.accepted
    const ifindex = async () => (JSON.parse(await ip('-j', 'link', 'show', 'dev', gw.host)) as Array<{ ifindex: number }>)[0]!.ifindex
    const before = await ifindex()

    agent = newAgent()
    commands.length = 0
    await agent.apply([spec({ floating: true })])
    t.ok(commands.some((c) => c.startsWith('iptables-restore')), 'the first apply of a run converges the router')
    t.notOk(commands.some((c) => /netns (add|delete)|link (add|delete)|conntrack/.test(c)), 'without recreating anything or flushing flows')
    t.equal(await ifindex(), before, 'the same devices')
    session.send('after')
    t.ok(await session.sees('after', 15_000), 'the established connection still carries data')
    t.equal(atA.accepted, accepted, 'on the same connection')

    commands.length = 0
    await agent.apply([spec({ floating: true })])
    t.same(commands, [], 'then no-change applies run nothing again')

    // The floating IP goes: a new connection fails within 1 s, and the established one stops too.
    const started = Date.now()
    await agent.apply([spec()])
    t.comment(`removing a floating IP: apply took ${Date.now() - started} ms, ${commands.length} commands`)
    t.ok(commands.some((c) => c.includes('conntrack -D -d 203.0.113.20')), 'its conntrack entries are deleted')
    t.equal(await connect(NS.out, '203.0.113.20', 1_000), undefined, `a new connection from the outside fails within 1 s (apply took ${Date.now() - started} ms)`)
    t.equal(atA.accepted, accepted, 'and never reached A')
    session.send('gone')
    t.notOk(await session.sees('gone', 2_000), 'the established connection no longer reaches A either')
    t.notMatch(await ip('-n', ns, '-4', 'addr', 'show', 'dev', gw.inner), /203\.0\.113\.20/, 'the address is gone')
    t.notMatch(await inNs(ns, 'iptables-save', '-t', 'nat'), /203\.0\.113\.20/, 'and its rules')
    const ao = await connect(NS.a, '203.0.113.1')
    t.equal(outside.seen.get(ao!), '203.0.113.10', 'A goes out from the gateway address again')
    session.close()
  })

  t.test('SNAT off: B\'s connections arrive from its own address', async (t) => {
    await agent.apply([spec({ snat: false })])
    const bo = await connect(NS.b, '203.0.113.1')
    t.ok(bo, 'B reaches the outside (which routes 10.0.2.0/24 to the router)')
    t.equal(outside.seen.get(bo!), '10.0.2.5', 'unNATed')
    await agent.apply([spec()])
    const again = await connect(NS.b, '203.0.113.1')
    t.equal(outside.seen.get(again!), '203.0.113.10', 'SNAT back on')
  })

  t.test('extra routes come and go; a router that is down forwards nothing', async (t) => {
    await ip('-n', NS.b, 'addr', 'add', '192.168.77.1/32', 'dev', 'lo')
    t.notOk(await ping(NS.a, '192.168.77.1'), 'before: no route to 192.168.77.0/24')
    await agent.apply([spec({ routes: [{ destination: '192.168.77.0/24', nexthop: '10.0.2.5' }] })])
    t.match(await ip('-n', ns, 'route', 'show', '192.168.77.0/24'), /via 10\.0\.2\.5 dev qr-.* proto static/)
    t.ok(await reaches(NS.a, '192.168.77.1'), 'A reaches 192.168.77.1 through the route via B')
    await agent.apply([spec()])
    t.equal((await ip('-n', ns, 'route', 'show', '192.168.77.0/24')).trim(), '', 'the route is gone')
    t.match(await ip('-n', ns, 'route', 'show', 'default'), /via 203\.0\.113\.1/, 'the default route stays')

    await agent.apply([spec({ up: false })])
    t.match(await ip('-n', ns, 'link', 'show', 'dev', routerDevices(P_A, 'qr').inner), /state DOWN/, 'admin state down: its links are down')
    t.notOk(await ping(NS.a, '10.0.2.5'), 'A cannot reach B')
    await agent.apply([spec()])
    t.ok(await reaches(NS.a, '10.0.2.5'), 'up again: A reaches B')
    const ao = await connect(NS.a, '203.0.113.1')
    t.equal(outside.seen.get(ao!), '203.0.113.10', 'and the outside, with the default route back')
  })

  t.test('an interface that moves to another router in one apply keeps working there, whichever router comes first', async (t) => {
    const withoutB = { ...spec(), interfaces: [spec().interfaces[0]!] }
    const second: RouterSpec = { id: ROUTER2, adminStateUp: true, interfaces: [spec().interfaces[1]!], routes: [], floatingIps: [] }
    const dev = routerDevices(P_B, 'qr')
    for (const order of [[second, withoutB], [withoutB, second]]) {
      await agent.apply([spec()])
      t.ok(await reaches(NS.b, '10.0.2.1'), 'B reaches its interface on the first router')
      await agent.apply(order)
      t.ok(linkExists(dev.host), `${dev.host} is there (${order[0]!.id === ROUTER2 ? 'new router first' : 'old router first'})`)
      t.ok(await ip('-n', routerNamespace(ROUTER2), 'link', 'show', 'dev', dev.inner).then(() => true, () => false), 'its peer is in the second router')
      t.notOk(await ip('-n', ns, 'link', 'show', 'dev', dev.inner).then(() => true, () => false), 'and no longer in the first')
      t.ok(await reaches(NS.b, '10.0.2.1'), 'B reaches its interface on the second router')
    }
    await agent.apply([spec()])
    t.notOk(existsSync(`/run/netns/${routerNamespace(ROUTER2)}`), 'the second router removed')
    t.ok(await connect(NS.a, '10.0.2.5'), 'A reaches B through the first router again')
  })

  t.test('a namespace or veth someone deleted is rebuilt on the next apply', async (t) => {
    await ip('link', 'delete', routerDevices(P_B, 'qr').host)
    t.equal(await connect(NS.a, '10.0.2.5', 2_000), undefined, 'B\'s interface gone: no way to B')
    commands.length = 0
    await agent.apply([spec()])
    t.ok(commands.some((c) => c.startsWith(`ip link add ${routerDevices(P_B, 'qr').host}`)), 'its pair made again')
    t.notOk(commands.some((c) => c.startsWith(`ip link add ${routerDevices(P_A, 'qr').host}`)), 'and only its pair')
    t.ok(await connect(NS.a, '10.0.2.5'), 'A reaches B again')

    await ip('netns', 'delete', ns)
    // The kernel tears a namespace down after its name is gone (asynchronously):
    // wait until its veths have gone with it before looking for a way out.
    const hostEnds = [routerDevices(P_A, 'qr').host, routerDevices(P_B, 'qr').host, routerDevices(P_G, 'qg').host]
    for (let i = 0; i < 400 && hostEnds.some(linkExists); i++) await new Promise((r) => setTimeout(r, 50))
    t.notOk(hostEnds.some(linkExists), 'the namespace went with its veths')
    t.equal(await connect(NS.a, '203.0.113.1', 2_000), undefined, 'namespace gone: no way out')
    await agent.apply([spec()])
    const ao = await connect(NS.a, '203.0.113.1')
    t.equal(outside.seen.get(ao!), '203.0.113.10', 'rebuilt, with its NAT')
  })

  t.test('a router that fails is rolled back and does not stop the others', async (t) => {
    await t.rejects(agent.apply([badRouter(), spec({ floating: true })]), { name: 'Internal', message: new RegExp(`^cannot apply 1 router\\(s\\): ${BAD_ROUTER}: cannot add route 192\\.168\\.77\\.0/24 via 192\\.0\\.2\\.99`) })
    t.notOk(existsSync(`/run/netns/${routerNamespace(BAD_ROUTER)}`), 'its namespace is gone')
    t.notOk(linkExists(routerDevices(P_BAD, 'qr').host), 'and its veth')
    const l3json = JSON.parse(readFileSync(path.join(stateDir, 'l3.json'), 'utf8')) as Array<{ id: string }>
    t.same(l3json.map((r) => r.id), [ROUTER], 'and its record')
    const oa = await connect(NS.out, '203.0.113.20')
    t.equal(atA.seen.get(oa!), '203.0.113.1', 'the other router was applied (its floating IP works)')
    await t.rejects(agent.apply([{ ...spec(), id: '../etc' }, spec({ floating: true })]), { message: /router "\.\.\/etc": its id cannot name a network namespace/, name: 'Internal' }, 'bad input is named')
    t.ok(await connect(NS.out, '203.0.113.20'), 'and changes nothing for the good one')
  })

  t.test('apply([]) by a restarted agent removes every namespace, device and record it made, and nothing else', async (t) => {
    // A router namespace the agent did not make (another agent's on a shared kernel): never touched.
    const foreign = routerNamespace(`${hex}-0000-4000-8000-00000000f0f0`)
    await ip('netns', 'add', foreign)
    t.teardown(() => ip('netns', 'delete', foreign).catch(() => undefined))
    // What an agent killed halfway through a build left: recorded (before it was made), namespace and one veth made.
    const crashed = `${hex}-0000-4000-8000-00000000c0c0`
    const half = routerDevices(`${hex}-5a00-4000-8000-000000000005`, 'qr')
    await ip('netns', 'add', routerNamespace(crashed))
    await ip('link', 'add', half.host, 'type', 'veth', 'peer', 'name', half.inner, 'netns', routerNamespace(crashed))
    t.teardown(async () => {
      await ip('netns', 'delete', routerNamespace(crashed)).catch(() => undefined)
      await ip('link', 'delete', half.host).catch(() => undefined)
    })
    const file = path.join(stateDir, 'l3.json')
    const recorded = JSON.parse(readFileSync(file, 'utf8')) as unknown[]
    writeFileSync(file, JSON.stringify([...recorded, {
      id: crashed, namespace: routerNamespace(crashed), floatingIps: [],
      ports: [{ portId: `${hex}-5a00-4000-8000-000000000005`, kind: 'qr', ...half, bridge: bridges[NET_A], addresses: [] }],
    }]))
    agent = newAgent()
    await agent.apply([])
    t.notOk(existsSync(`/run/netns/${routerNamespace(crashed)}`), 'a half-built router left by a killed agent is removed')
    t.notOk(linkExists(half.host), 'with its veth')
    const left = (await ip('netns', 'list')).split('\n').filter((l) => l.startsWith(`qrouter-${hex}`)).map((l) => l.split(' ')[0])
    t.same(left, [foreign], 'no namespace of its routers; the foreign one is left alone')
    const links = await ip('-o', 'link', 'show')
    for (const p of [P_A, P_B, P_G]) t.notMatch(links, routerDevices(p, 'qr').host, `no ${routerDevices(p, 'qr').host}`)
    t.same(JSON.parse(readFileSync(path.join(stateDir, 'l3.json'), 'utf8')), [], 'an empty record')
    for (const n of Object.values(NS)) t.ok(existsSync(`/run/netns/${n}`), `${n} (not the agent's) is left alone`)
    for (const b of Object.values(bridges)) t.ok(linkExists(b), `bridge ${b} (not the agent's) is left alone`)
    await agent.removeAll()
    t.notOk(existsSync(path.join(stateDir, 'l3.json')), 'removeAll also removes the state file')
  })
}
