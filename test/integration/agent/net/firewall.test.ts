/**
 * Integration: security groups enforced by the agent's iptables firewall
 * (agent/net/firewall.ts) on real bridged traffic, all inside network
 * namespaces this test makes: a bridge namespace (the host), two "guests"
 * whose tap devices are Strato ports, and an outsider on the same bridge.
 * TCP connections (node in the namespaces) say what passes. Needs root.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { IptablesFirewall, type FirewallRule, type PortFirewall } from '../../../../agent/net/firewall.js'

const run = promisify(execFile)
const id = process.pid.toString(16)
const ns = { host: `fwh-${id}`, a: `fwa-${id}`, c: `fwc-${id}`, out: `fwo-${id}` }
const A = { portId: `a${id.padEnd(10, '0')}-0000-4000-8000-000000000001`, mac: 'fa:16:3e:00:aa:01', ip: '10.77.0.10', ip6: 'fd77::10' }
const C = { portId: `c${id.padEnd(10, '0')}-0000-4000-8000-000000000003`, mac: 'fa:16:3e:00:cc:03', ip: '10.77.0.30', ip6: 'fd77::30' }
const OUT = { ip: '10.77.0.20', ip6: 'fd77::20' }
const tap = (portId: string) => `tap${portId.slice(0, 11)}`

const rule = (r: Partial<FirewallRule> & Pick<FirewallRule, 'direction'>): FirewallRule => ({ ethertype: 'IPv4', protocol: -1, portMin: 0, portMax: 0, remotePrefix: '', ...r })
/** Neutron's default group for a port, with `members` as the group's addresses. */
const defaultGroup = (members: string[]): FirewallRule[] => [
  rule({ direction: 'egress' }),
  rule({ direction: 'egress', ethertype: 'IPv6' }),
  ...members.map((m) => rule({ direction: 'ingress', remotePrefix: `${m}/32` })),
]
const port = (p: typeof A, rules: FirewallRule[], fixedIps = [p.ip, p.ip6]): PortFirewall => ({ portId: p.portId, macAddress: p.mac, fixedIps, rules })

const servers: ChildProcess[] = []
/** TCP listeners in a namespace, on each port, answering "ok". */
async function listen(where: string, ports: number[]): Promise<void> {
  const child = spawn('ip', ['netns', 'exec', where, process.execPath, '-e', `
    const net = require('node:net'); let n = 0
    for (const p of ${JSON.stringify(ports)}) net.createServer((s) => { s.on('error', () => undefined); s.end('ok') }).listen(p, '::', () => { if (++n === ${ports.length}) console.log('ready') })
  `], { stdio: ['ignore', 'pipe', 'inherit'] })
  servers.push(child)
  await new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve())
    child.once('exit', (code) => reject(new Error(`listener in ${where} exited ${code}`)))
  })
}

/** Whether a TCP connection from `where` (optionally from address `from`) to ip:port gets its "ok". */
async function connects(where: string, ip: string, portNo: number, from?: string): Promise<boolean> {
  const { stdout } = await run('ip', ['netns', 'exec', where, process.execPath, '-e', `
    const s = require('node:net').connect({ host: ${JSON.stringify(ip)}, port: ${portNo}${from ? `, localAddress: ${JSON.stringify(from)}` : ''} })
    s.setTimeout(800, () => { console.log('no'); process.exit() })
    s.on('data', () => { console.log('yes'); process.exit() })
    s.on('error', () => { console.log('no'); process.exit() })
  `])
  return stdout.trim() === 'yes'
}

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root for network namespaces')
} else {
  const ipn = (...args: string[]) => run('ip', args)
  for (const n of Object.values(ns)) await ipn('netns', 'add', n)
  t.teardown(async () => {
    for (const s of servers) s.kill('SIGKILL')
    for (const n of Object.values(ns)) await ipn('netns', 'delete', n).catch(() => undefined)
  })
  await ipn('-n', ns.host, 'link', 'add', 'br0', 'type', 'bridge')
  await ipn('-n', ns.host, 'link', 'set', 'br0', 'up')
  for (const [where, dev, mac, ip, ip6] of [[ns.a, tap(A.portId), A.mac, A.ip, A.ip6], [ns.c, tap(C.portId), C.mac, C.ip, C.ip6], [ns.out, 'out0', 'fa:16:3e:00:ee:20', OUT.ip, OUT.ip6]] as const) {
    await ipn('-n', ns.host, 'link', 'add', dev, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', where)
    await ipn('-n', ns.host, 'link', 'set', dev, 'master', 'br0')
    await ipn('-n', ns.host, 'link', 'set', dev, 'up')
    await ipn('-n', where, 'link', 'set', 'eth0', 'address', mac)
    await ipn('-n', where, 'addr', 'add', `${ip}/24`, 'dev', 'eth0')
    await ipn('-n', where, 'addr', 'add', `${ip6}/64`, 'dev', 'eth0', 'nodad')
    await ipn('-n', where, 'link', 'set', 'eth0', 'up')
    await ipn('-n', where, 'link', 'set', 'lo', 'up')
  }
  await listen(ns.a, [22, 80])
  await listen(ns.out, [80, 443])
  const fw = new IptablesFirewall({ host: 'fw-test', netns: ns.host })

  t.test('without filtering everything passes (the namespaces work)', async (t) => {
    t.equal(await connects(ns.out, A.ip, 22), true)
    t.equal(await connects(ns.a, OUT.ip, 80), true)
  })

  t.test("the default group: only the group's members reach a port; egress is open", async (t) => {
    await fw.apply([port(A, defaultGroup([A.ip, C.ip])), port(C, defaultGroup([A.ip, C.ip]))])
    t.equal(await connects(ns.out, A.ip, 22), false, 'an outsider is dropped')
    t.equal(await connects(ns.c, A.ip, 22), true, 'a member of the group gets through (its egress and A\'s ingress)')
    t.equal(await connects(ns.a, OUT.ip, 80), true, 'egress to anywhere, and the answer comes back (established)')
  })

  t.test('a tcp 22 rule opens 22 to everyone, and nothing else', async (t) => {
    await fw.apply([port(A, [...defaultGroup([A.ip, C.ip]), rule({ direction: 'ingress', protocol: 6, portMin: 22, portMax: 22 })]), port(C, defaultGroup([A.ip, C.ip]))])
    t.equal(await connects(ns.out, A.ip, 22), true, 'port 22 from an outsider')
    t.equal(await connects(ns.out, A.ip, 80), false, 'port 80 still dropped')
  })

  t.test('egress narrowed to tcp 443: other destinations are dropped', async (t) => {
    await fw.apply([port(A, [rule({ direction: 'egress', protocol: 6, portMin: 443, portMax: 443 })])])
    t.equal(await connects(ns.a, OUT.ip, 443), true)
    t.equal(await connects(ns.a, OUT.ip, 80), false)
  })

  t.test('anti-spoofing: another source address or MAC is dropped', async (t) => {
    await fw.apply([port(A, [rule({ direction: 'egress' })])])
    t.equal(await connects(ns.a, OUT.ip, 80), true, 'from its own address')
    await ipn('-n', ns.a, 'addr', 'add', '10.77.0.99/24', 'dev', 'eth0')
    t.equal(await connects(ns.a, OUT.ip, 80, '10.77.0.99'), false, 'from an address that is not its fixed IP')
    await ipn('-n', ns.a, 'addr', 'del', '10.77.0.99/24', 'dev', 'eth0')
    await ipn('-n', ns.a, 'link', 'set', 'eth0', 'address', 'fa:16:3e:00:aa:99')
    t.equal(await connects(ns.a, OUT.ip, 80), false, 'from another MAC')
    await ipn('-n', ns.a, 'link', 'set', 'eth0', 'address', A.mac)
    // The others learnt the wrong MAC on the way; forget it.
    for (const n of [ns.out, ns.c]) await ipn('-n', n, 'neigh', 'flush', 'all')
  })

  t.test('IPv6: neighbour discovery passes, rules apply per ethertype', async (t) => {
    await fw.apply([port(A, [rule({ direction: 'egress', ethertype: 'IPv6' }), rule({ direction: 'ingress', ethertype: 'IPv6', protocol: 6, portMin: 22, portMax: 22 })])])
    t.equal(await connects(ns.out, A.ip6, 22), true, 'tcp 22 over IPv6')
    t.equal(await connects(ns.out, A.ip6, 80), false, '80 over IPv6 dropped')
    t.equal(await connects(ns.out, A.ip, 22), false, 'the IPv6 rule opens nothing over IPv4')
    t.equal(await connects(ns.a, OUT.ip6, 80), true, 'egress over IPv6')
  })

  t.test('DHCP through the filtering: a guest without an address gets its lease; a guest cannot be a DHCP server', async (t) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'strato-fw-dhcp-'))
    t.teardown(() => rmSync(dir, { recursive: true, force: true }))
    const script = path.join(dir, 'udhcpc.sh')
    writeFileSync(script, '#!/bin/sh\n[ "$1" = bound ] && echo "bound $ip"\nexit 0\n', { mode: 0o755 })
    /** A dnsmasq in `where` handing out static leases only. */
    const dnsmasq = (where: string, hosts: string[], tag: string) => {
      const child = spawn('ip', ['netns', 'exec', where, 'dnsmasq', '--keep-in-foreground', '--no-hosts', '--no-resolv', '--port=0', '--bind-interfaces', '--interface=eth0',
        '--except-interface=lo', '--dhcp-range=10.77.0.0,static,255.255.255.0,120s', '--leasefile-ro', `--pid-file=${path.join(dir, `${tag}.pid`)}`, '--dhcp-authoritative',
        ...hosts.map((h) => `--dhcp-host=${h}`)], { stdio: 'ignore' })
      servers.push(child)
      return child
    }
    /** Runs a DHCP client on `where`'s eth0 without its IPv4 address; the address it was leased, if any. */
    const lease = async (where: string, own: string): Promise<string | undefined> => {
      await ipn('-n', where, 'addr', 'del', `${own}/24`, 'dev', 'eth0')
      try {
        const out = await run('ip', ['netns', 'exec', where, 'busybox', 'udhcpc', '-i', 'eth0', '-n', '-q', '-f', '-t', '3', '-T', '1', '-s', script]).then((r) => r.stdout, (e: { stdout?: string }) => e.stdout ?? '')
        return /bound (\S+)/.exec(out)?.[1]
      } finally {
        await ipn('-n', where, 'addr', 'flush', 'dev', 'eth0', 'scope', 'global').catch(() => undefined)
        await ipn('-n', where, 'addr', 'add', `${own}/24`, 'dev', 'eth0')
        await ipn('-n', where, 'addr', 'add', `${where === ns.a ? A.ip6 : C.ip6}/64`, 'dev', 'eth0', 'nodad').catch(() => undefined)
      }
    }
    // The network's own DHCP server (here: the outsider's), which knows A's MAC.
    const provider = dnsmasq(ns.out, [`${A.mac},${A.ip}`], 'provider')
    await new Promise((r) => setTimeout(r, 500))
    await fw.apply([port(A, defaultGroup([A.ip, C.ip])), port(C, defaultGroup([A.ip, C.ip]))])
    t.equal(await lease(ns.a, A.ip), A.ip, 'A gets its address from the DHCP server, through its filtering')
    provider.kill('SIGKILL')

    // A rogue DHCP server on guest A, offering C an address.
    const rogue = dnsmasq(ns.a, [`${C.mac},10.77.0.77`], 'rogue')
    await new Promise((r) => setTimeout(r, 500))
    await fw.apply([])
    t.equal(await lease(ns.c, C.ip), '10.77.0.77', 'unfiltered, the rogue server is heard (the test can tell)')
    await fw.apply([port(A, defaultGroup([A.ip, C.ip])), port(C, defaultGroup([A.ip, C.ip]))])
    t.equal(await lease(ns.c, C.ip), undefined, "filtered, A's DHCP answers never leave it")
    rogue.kill('SIGKILL')
  })

  t.test("a port's chains go when it goes; another agent's chains are left alone", async (t) => {
    const other = new IptablesFirewall({ host: 'fw-test-other', netns: ns.host })
    await other.apply([port(C, defaultGroup([]))])
    await fw.apply([port(A, defaultGroup([]))])
    await fw.apply([])
    const dump = (await run('ip', ['netns', 'exec', ns.host, 'iptables-save', '-t', 'filter'])).stdout
    t.notMatch(dump, `:strato-i-${A.portId.slice(0, 11)}`, "A's chains are removed")
    t.match(dump, `:strato-i-${C.portId.slice(0, 11)}`, "the other agent's port keeps its chains")
    t.equal(await connects(ns.out, A.ip, 80), true, 'an unfiltered port passes again')
    await other.clear()
    await fw.clear()
    const after = (await run('ip', ['netns', 'exec', ns.host, 'iptables-save', '-t', 'filter'])).stdout
    t.notMatch(after, /strato-/, 'clear() leaves nothing')
  })
}
