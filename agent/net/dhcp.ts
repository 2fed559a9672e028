/**
 * DHCP on the host, as Neutron's DHCP agent runs it: for each network the
 * controller says this host serves, a network namespace `qdhcp-<network id>`
 * whose interface (`ns-<port id prefix>`, the DHCP port's MAC and fixed IPs,
 * plus 169.254.169.254/32 for the metadata service) is one end of a veth pair;
 * the other end (`tap<port id prefix>`) is plugged into the network's bridge.
 * In the namespace, one `dnsmasq` hands out static leases only: each port's
 * MAC gets its fixed IP (hosts file), with the subnet's gateway, DNS servers,
 * host routes, MTU and, as no router serves the subnet, a classless static
 * route to 169.254.169.254 via the DHCP port (opts file).
 *
 * Files live in `<dir>/<network id>/` (host, opts, leases, pid, log,
 * state.json). Port changes rewrite host/opts and SIGHUP dnsmasq; a change of
 * its command line (subnets, interface) restarts it. dnsmasq outlives the
 * agent: an agent that restarts adopts it by pid file when /proc/<pid>/cmdline
 * is exactly what it would start, and removes what belongs to networks it no
 * longer serves (the directories under `<dir>` are what it owns).
 *
 * Other services that live in the namespace (the metadata service) follow it
 * through `onNamespace` listeners.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import path from 'node:path'
import type { Logger } from 'pino'
import { Internal } from '../../proto/errors.js'
import type { DhcpNetwork, DhcpSubnet } from '../../proto/dhcp.js'
import { writePrivateFile } from '../../proto/private-file.js'
import { ensureBridge } from './bridge.js'
import { ip, run } from './exec.js'

export type { DhcpNetwork }

/** The metadata service's address, held by every DHCP namespace (Neutron's isolated metadata). */
export const METADATA_ADDRESS = '169.254.169.254'

/** The namespace serving DHCP (and metadata) for a network on this host. */
export function dhcpNamespace(networkId: string): string {
  return `qdhcp-${networkId}`
}

/** The veth ends of a DHCP port (15 characters at most, as Linux wants). */
export function dhcpInterfaces(portId: string): { host: string; ns: string } {
  return { host: `tap${portId.slice(0, 11)}`, ns: `ns-${portId.slice(0, 11)}` }
}

/** Told when a DHCP namespace is ready and before it goes away. */
export interface DhcpNamespaceListener {
  namespaceUp?(networkId: string, namespace: string): void | Promise<void>
  namespaceDown?(networkId: string, namespace: string): void | Promise<void>
}

/** Makes the host's DHCP service what the controller says (all of the host's networks, every time). */
export interface Dhcp {
  readonly name: string
  /**
   * Serves exactly `networks` (those with a DHCP-enabled subnet the DHCP port
   * has an address on) and takes down what it set up for any other network.
   * Idempotent; a network that fails does not stop the others, and the first
   * failure is thrown once all were tried.
   */
  apply(networks: DhcpNetwork[]): Promise<void>
  /** Subscribes to namespaces coming and going; returns an unsubscribe function. */
  onNamespace(listener: DhcpNamespaceListener): () => void
  /** Network id → namespace, of the namespaces up now. */
  namespaces(): Map<string, string>
}

/** No DHCP on this host (the fake driver's default). */
export class NoDhcp implements Dhcp {
  readonly name = 'off'
  async apply(): Promise<void> {}
  onNamespace(): () => void {
    return () => undefined
  }
  namespaces(): Map<string, string> {
    return new Map()
  }
}

// ------------------------------------------------------------------ rendering (pure)

function ipToInt(ip: string): number {
  return ip.split('.').reduce((a, o) => a * 256 + Number(o), 0)
}

function intToIp(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.')
}

/** 10.0.0.0/24 → network address and netmask. */
export function cidrParts(cidr: string): { network: string; netmask: string; prefix: number } {
  const [addr, p] = cidr.split('/')
  const prefix = Number(p)
  const mask = prefix === 0 ? 0 : (2 ** 32 - 2 ** (32 - prefix))
  const network = Math.floor(ipToInt(addr!) / 2 ** (32 - prefix)) * 2 ** (32 - prefix)
  return { network: intToIp(network), netmask: intToIp(mask), prefix }
}

/** dnsmasq tag of a subnet. */
export function subnetTag(subnetId: string): string {
  return `subnet-${subnetId}`
}

/** The subnets dnsmasq serves: DHCP-enabled, and the DHCP port has an address on them. */
export function servedSubnets(n: DhcpNetwork): Array<DhcpSubnet & { dhcpIp: string }> {
  return n.subnets.flatMap((s) => {
    const own = n.port.fixedIps.find((a) => a.subnetId === s.id)
    return s.enableDhcp && own ? [{ ...s, dhcpIp: own.ipAddress }] : []
  })
}

/** dnsmasq's command line (without the program name) for a network whose files are in `dir`. */
export function dnsmasqArgs(n: DhcpNetwork, dir: string): string[] {
  const iface = dhcpInterfaces(n.port.id).ns
  const args = [
    '--conf-file=/dev/null', '--no-hosts', '--no-resolv', '--port=0', '--strict-order', '--except-interface=lo', '--bind-interfaces', `--interface=${iface}`,
  ]
  for (const s of servedSubnets(n)) {
    const { network, netmask } = cidrParts(s.cidr)
    args.push(`--dhcp-range=set:${subnetTag(s.id)},${network},static,${netmask},${n.leaseSeconds}s`)
  }
  args.push(
    `--dhcp-hostsfile=${path.join(dir, 'host')}`, `--dhcp-optsfile=${path.join(dir, 'opts')}`, `--dhcp-leasefile=${path.join(dir, 'leases')}`,
    '--no-ping', `--pid-file=${path.join(dir, 'pid')}`, '--dhcp-authoritative', '--log-dhcp', `--log-facility=${path.join(dir, 'log')}`,
    // dnsmasq would drop to `nobody`, who may not be able to read the hosts file under the agent's state dir on SIGHUP.
    '--user=root',
  )
  return args
}

/** dnsmasq's hosts file: one `MAC,hostname,IP` line per fixed IP on a served subnet. */
export function renderHosts(n: DhcpNetwork): string {
  const served = new Set(servedSubnets(n).map((s) => s.id))
  const lines: string[] = []
  for (const h of n.hosts) {
    for (const a of h.fixedIps) if (served.has(a.subnetId)) lines.push(`${h.macAddress},${h.hostname},${a.ipAddress}`)
  }
  return lines.map((l) => `${l}\n`).join('')
}

/** The (MAC, IP) pairs of the `before` hosts file that the `after` one no longer has. */
export function staleLeases(before: string, after: string): Array<{ mac: string; ip: string }> {
  const pairs = (text: string) => text.split('\n').filter(Boolean).map((l) => l.split(',')).map((f) => ({ mac: f[0] ?? '', ip: f[f.length - 1] ?? '' }))
  const kept = new Set(pairs(after).map((p) => `${p.mac} ${p.ip}`))
  return pairs(before).filter((p) => p.mac && p.ip && !kept.has(`${p.mac} ${p.ip}`))
}

/**
 * dnsmasq's options file, tag-scoped per subnet: DNS servers, classless
 * static routes (host routes, 169.254.169.254/32 via the DHCP port when no
 * router serves the subnet, the default route via the gateway — RFC 3442
 * clients ignore option 3 once 121 is there), the router (none without a
 * gateway, so dnsmasq does not offer itself) and the MTU.
 */
export function renderOpts(n: DhcpNetwork): string {
  const lines: string[] = []
  for (const s of servedSubnets(n)) {
    const tag = `tag:${subnetTag(s.id)}`
    if (s.dnsNameservers.length) lines.push(`${tag},option:dns-server,${s.dnsNameservers.join(',')}`)
    const routes = s.hostRoutes.map((r) => `${r.destination},${r.nexthop}`)
    if (!s.hasRouter) routes.push(`${METADATA_ADDRESS}/32,${s.dhcpIp}`)
    if (s.gatewayIp && !s.hostRoutes.some((r) => r.destination === '0.0.0.0/0')) routes.push(`0.0.0.0/0,${s.gatewayIp}`)
    if (routes.length) {
      lines.push(`${tag},option:classless-static-route,${routes.join(',')}`)
      // Windows asks for the same routes as option 249.
      lines.push(`${tag},249,${routes.join(',')}`)
    }
    lines.push(s.gatewayIp ? `${tag},option:router,${s.gatewayIp}` : `${tag},option:router`)
    lines.push(`${tag},option:mtu,${n.mtu}`)
  }
  return lines.map((l) => `${l}\n`).join('')
}

// ------------------------------------------------------------------ dnsmasq in namespaces

export interface DnsmasqDhcpOptions {
  /** Where each network's files go (`<dir>/<network id>/`); only what is under it is ever removed. */
  dir: string
  /** The bridge of a network on this host (as for a NIC on it). */
  bridgeFor(n: DhcpNetwork): string
  log: Logger
}

/** What the agent needs to take a network's DHCP down again, even after a restart. */
interface NetworkState {
  networkId: string
  portId: string
  bridge: string
}

/** The process's command line, or undefined when there is no such process. */
function cmdline(pid: number): string[] | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1)
  } catch {
    return undefined
  }
}

function readPid(file: string): number | undefined {
  try {
    const n = Number(readFileSync(file, 'utf8').trim())
    return Number.isInteger(n) && n > 1 ? n : undefined
  } catch {
    return undefined
  }
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export class DnsmasqDhcp implements Dhcp {
  readonly name = 'dnsmasq'
  private readonly listeners = new Set<DhcpNamespaceListener>()
  /** Network id → namespace, of namespaces announced up by this agent's run. */
  private readonly up = new Map<string, string>()
  /** What the interfaces were last made from (skips the `ip` calls when only hosts changed). */
  private readonly plumbed = new Map<string, string>()

  constructor(private readonly o: DnsmasqDhcpOptions) {}

  onNamespace(listener: DhcpNamespaceListener): () => void {
    this.listeners.add(listener)
    for (const [networkId, ns] of this.up) void this.tell(listener, 'namespaceUp', networkId, ns)
    return () => this.listeners.delete(listener)
  }

  namespaces(): Map<string, string> {
    return new Map(this.up)
  }

  private async tell(l: DhcpNamespaceListener, what: 'namespaceUp' | 'namespaceDown', networkId: string, ns: string): Promise<void> {
    try {
      await l[what]?.(networkId, ns)
    } catch (err) {
      this.o.log.warn({ err, networkId, namespace: ns }, `DHCP namespace listener failed (${what})`)
    }
  }

  private async announce(what: 'namespaceUp' | 'namespaceDown', networkId: string, ns: string): Promise<void> {
    for (const l of [...this.listeners]) await this.tell(l, what, networkId, ns)
  }

  /**
   * Serves exactly `networks` (the ones with a served subnet); everything
   * this agent set up for other networks is removed. A network that fails
   * does not stop the others; the first failure is thrown at the end.
   */
  async apply(networks: DhcpNetwork[]): Promise<void> {
    mkdirSync(this.o.dir, { recursive: true, mode: 0o700 })
    chmodSync(this.o.dir, 0o700)
    const want = new Map(networks.filter((n) => servedSubnets(n).length > 0).map((n) => [n.networkId, n]))
    const errors: unknown[] = []
    for (const id of readdirSync(this.o.dir)) {
      if (!want.has(id)) await this.remove(id).catch((err) => errors.push(err))
    }
    for (const n of want.values()) await this.serve(n).catch((err) => errors.push(err))
    if (errors.length) throw errors[0]
  }

  /** Makes one network's namespace, interfaces, files and dnsmasq what `n` says. */
  private async serve(n: DhcpNetwork): Promise<void> {
    const dir = path.join(this.o.dir, n.networkId)
    const ns = dhcpNamespace(n.networkId)
    const bridge = this.o.bridgeFor(n)
    const log = this.o.log.child({ networkId: n.networkId, namespace: ns })
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    // dnsmasq creates its lease file and log with its umask (the agent's, or a test runner's): made private first.
    for (const f of ['leases', 'log']) {
      closeSync(openSync(path.join(dir, f), 'a', 0o600))
      chmodSync(path.join(dir, f), 0o600)
    }
    const prev = this.readState(dir)
    if (prev && prev.portId !== n.port.id) {
      // Another DHCP port (recreated): its dnsmasq and veth go; the namespace stays.
      await this.stopDnsmasq(dir, log)
      await ip('link', 'delete', 'dev', dhcpInterfaces(prev.portId).host).catch(() => undefined)
      this.plumbed.delete(n.networkId)
    }
    writePrivateFile(path.join(dir, 'state.json'), `${JSON.stringify({ networkId: n.networkId, portId: n.port.id, bridge } satisfies NetworkState)}\n`)

    const plumbing = JSON.stringify([n.port, bridge, n.mtu])
    if (this.plumbed.get(n.networkId) !== plumbing || !existsSync(`/run/netns/${ns}`)) {
      await this.plumb(n, ns, bridge)
      this.plumbed.set(n.networkId, plumbing)
    }

    const hosts = renderHosts(n)
    const opts = renderOpts(n)
    const before = readText(path.join(dir, 'host'))
    const changed = before !== hosts || readText(path.join(dir, 'opts')) !== opts
    // Private (dnsmasq runs as root: nobody else reads the guests' MACs and names) and atomic (dnsmasq never reads half a file).
    writePrivateFile(path.join(dir, 'host'), hosts)
    writePrivateFile(path.join(dir, 'opts'), opts)

    const args = dnsmasqArgs(n, dir)
    const pid = readPid(path.join(dir, 'pid'))
    const running = pid !== undefined ? cmdline(pid) : undefined
    const same = running !== undefined && path.basename(running[0] ?? '') === 'dnsmasq' && JSON.stringify(running.slice(1)) === JSON.stringify(args)
    if (same) {
      // Adopted after a restart (not known yet) or files changed: dnsmasq rereads its hosts and opts files.
      if (changed || !this.up.has(n.networkId)) {
        process.kill(pid!, 'SIGHUP')
        log.debug({ pid }, 'dnsmasq reloaded')
      }
    } else {
      await this.stopDnsmasq(dir, log)
      await this.startDnsmasq(ns, args, dir, log)
    }
    await this.releaseGone(ns, n, dir, staleLeases(before ?? '', hosts), log)
    if (!this.up.has(n.networkId)) {
      this.up.set(n.networkId, ns)
      log.info({ adopted: same, pid: same ? pid : readPid(path.join(dir, 'pid')) }, 'DHCP serving')
      await this.announce('namespaceUp', n.networkId, ns)
    }
  }

  /**
   * Releases the leases of host entries that are gone (a deleted port, or an
   * address now another MAC's), as Neutron's DHCP agent does with
   * `dhcp_release`: dnsmasq keeps a lease until it expires even when its host
   * entry is removed, and refuses the address to the next MAC it is configured
   * for ("not using configured address … because it is leased to …") — a
   * server given a deleted one's address would get no lease for a day.
   */
  private async releaseGone(ns: string, n: DhcpNetwork, dir: string, gone: Array<{ mac: string; ip: string }>, log: Logger): Promise<void> {
    if (!gone.length) return
    const leases = readText(path.join(dir, 'leases')) ?? ''
    for (const g of gone) {
      // <expiry> <mac> <ip> <hostname> <client id or *>
      const lease = leases.split('\n').map((l) => l.split(' ')).find((f) => f[1] === g.mac && f[2] === g.ip)
      if (!lease) continue
      const clientId = lease[4] && lease[4] !== '*' ? [lease[4]] : []
      await run('dhcp_release', [dhcpInterfaces(n.port.id).ns, g.ip, g.mac, ...clientId], { netns: ns }).then(
        () => log.info({ mac: g.mac, ip: g.ip }, 'DHCP lease released (its port is gone)'),
        (err: unknown) => log.warn({ err, mac: g.mac, ip: g.ip }, 'dhcp_release failed; the address stays leased until the lease expires'),
      )
    }
  }

  /** Namespace, veth pair into the bridge, addresses; each step idempotent. */
  private async plumb(n: DhcpNetwork, ns: string, bridge: string): Promise<void> {
    await ensureBridge(bridge)
    if (!existsSync(`/run/netns/${ns}`)) {
      await ip('netns', 'add', ns).catch((err) => {
        if (!/exists/i.test((err as Error).message)) throw err
      })
    }
    await ip('-n', ns, 'link', 'set', 'lo', 'up')
    const dev = dhcpInterfaces(n.port.id)
    const present = await ip('-n', ns, 'link', 'show', 'dev', dev.ns).then(() => true, () => false)
    if (!present) {
      await ip('link', 'delete', 'dev', dev.host).catch(() => undefined)
      await ip('link', 'add', dev.host, 'type', 'veth', 'peer', 'name', dev.ns, 'netns', ns)
    }
    await ip('-n', ns, 'link', 'set', 'dev', dev.ns, 'address', n.port.macAddress, 'mtu', String(n.mtu))
    await ip('link', 'set', 'dev', dev.host, 'mtu', String(n.mtu), 'master', bridge, 'up')
    await ip('-n', ns, 'link', 'set', 'dev', dev.ns, 'up')
    const want = new Set([...n.port.fixedIps.map((a) => `${a.ipAddress}/${cidrParts(a.cidr).prefix}`), `${METADATA_ADDRESS}/32`])
    const have = (JSON.parse(await ip('-n', ns, '-j', 'addr', 'show', 'dev', dev.ns)) as Array<{ addr_info?: Array<{ family: string; local: string; prefixlen: number }> }>)
      .flatMap((l) => l.addr_info ?? []).filter((a) => a.family === 'inet').map((a) => `${a.local}/${a.prefixlen}`)
    for (const a of have) if (!want.has(a)) await ip('-n', ns, 'addr', 'del', a, 'dev', dev.ns)
    for (const a of want) if (!have.includes(a)) await ip('-n', ns, 'addr', 'add', a, 'dev', dev.ns)
  }

  private async startDnsmasq(ns: string, args: string[], dir: string, log: Logger): Promise<void> {
    rmSync(path.join(dir, 'pid'), { force: true })
    // dnsmasq forks into its own session and outlives the agent; the parent exits once the daemon runs (or failed).
    await run('dnsmasq', args, { netns: ns, daemon: true, timeoutMs: 30_000, what: `start dnsmasq in ${ns}` })
    for (let i = 0; i < 100; i++) {
      const pid = readPid(path.join(dir, 'pid'))
      if (pid !== undefined && cmdline(pid)) {
        log.info({ pid }, 'dnsmasq started')
        return
      }
      await sleep(20)
    }
    throw new Internal(`dnsmasq in ${ns} wrote no pid file to ${dir}`)
  }

  /** Stops the network's dnsmasq, if the pid file names one of ours. */
  private async stopDnsmasq(dir: string, log: Logger): Promise<void> {
    const pid = readPid(path.join(dir, 'pid'))
    const argv = pid !== undefined ? cmdline(pid) : undefined
    if (pid === undefined || !argv?.includes(`--pid-file=${path.join(dir, 'pid')}`)) return
    process.kill(pid, 'SIGTERM')
    for (let i = 0; i < 150 && cmdline(pid); i++) await sleep(20)
    if (cmdline(pid)) process.kill(pid, 'SIGKILL')
    rmSync(path.join(dir, 'pid'), { force: true })
    log.info({ pid }, 'dnsmasq stopped')
  }

  private readState(dir: string): NetworkState | undefined {
    try {
      return JSON.parse(readFileSync(path.join(dir, 'state.json'), 'utf8')) as NetworkState
    } catch {
      return undefined
    }
  }

  /** Takes a network's DHCP down: dnsmasq, veth, namespace, files. */
  async remove(networkId: string): Promise<void> {
    const dir = path.join(this.o.dir, networkId)
    const ns = dhcpNamespace(networkId)
    const log = this.o.log.child({ networkId, namespace: ns })
    await this.announce('namespaceDown', networkId, ns)
    this.up.delete(networkId)
    this.plumbed.delete(networkId)
    await this.stopDnsmasq(dir, log)
    const state = this.readState(dir)
    if (state) await ip('link', 'delete', 'dev', dhcpInterfaces(state.portId).host).catch(() => undefined)
    if (existsSync(`/run/netns/${ns}`)) await ip('netns', 'delete', ns)
    rmSync(dir, { recursive: true, force: true })
    log.info('DHCP removed')
  }

  /** Takes every network's DHCP down (an agent leaving the host for good; tests). */
  async removeAll(): Promise<void> {
    if (!existsSync(this.o.dir)) return
    for (const id of readdirSync(this.o.dir)) await this.remove(id)
  }
}
