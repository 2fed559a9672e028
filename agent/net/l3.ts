/**
 * Routers on the host, as Neutron's L3 agent builds them (legacy, centralized
 * routers): for each router the controller placed here, a network namespace
 * `qrouter-<router id>` that forwards between the router's networks.
 *
 * Each interface on a project subnet is a veth pair: `qr-<port id prefix>`
 * inside the namespace holds the port's MAC and addresses (the subnet's
 * gateway IP), `tap<port id prefix>` is plugged into the network's bridge. The
 * gateway on the external network is the same with `qg-<port id prefix>`,
 * which also holds every floating IP as a /32 (so the namespace answers ARP
 * for it) and carries the default route. The namespace's whole nat table is
 * the agent's (iptables-restore, no --noflush):
 *
 *   PREROUTING, OUTPUT  -d <floating>/32 → DNAT to its fixed IP
 *   POSTROUTING         not leaving by qg- and not DNATed → ACCEPT (no NAT between the router's subnets)
 *                       -s <fixed>/32 -o qg- → SNAT to its floating IP
 *                       -s <interface CIDR> -o qg- → SNAT to the gateway address  (enableSnat)
 *                       -s <interface CIDR>, DNATed → SNAT to the gateway address (enableSnat: a guest
 *                         reaching a floating IP of its own subnet gets the answer back through the router)
 *
 * A floating IP that goes has its conntrack entries deleted in the namespace,
 * so flows through it stop at once; those of floating IPs that stay are kept.
 * Each IPv4 address a router device gains (a floating IP, an interface) is
 * announced with a gratuitous ARP (arping, when installed).
 *
 * `apply` is called on every router-changed notice and on a timer, so an
 * apply that changes nothing runs no command: what each router was last made
 * from is kept per run, and only a missing namespace or device (checked in
 * /run/netns and /sys/class/net, no command) or a changed spec leads to work.
 * The first apply of a run converges each router from what the kernel has,
 * without recreating what exists (established flows survive an agent
 * restart). What was made is recorded in `<stateDir>/l3.json` before it is
 * made, so an agent that restarts removes the routers no longer wanted, and
 * never touches namespaces, devices or tables it did not make.
 */
import { existsSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { isIP, isIPv4 } from 'node:net'
import path from 'node:path'
import type { Logger } from 'pino'
import { Internal, InvalidArgument } from '../../proto/errors.js'
import { writePrivateFile } from '../../proto/private-file.js'
import { type Reverter, withReverter } from '../../proto/revert.js'
import type { RouterFloatingIp, RouterNetwork, RouterPort, RouterSpec } from '../../proto/router.js'
import { ensureBridge as ensureLinuxBridge } from './bridge.js'
import { run, type RunOptions } from './exec.js'

export type { RouterNetwork, RouterSpec }

// ------------------------------------------------------------------ names (pure)

/** The namespace of a router (Neutron's name). */
export function routerNamespace(routerId: string): string {
  return `qrouter-${routerId}`
}

/** Interface (`qr`) or gateway (`qg`). */
export type RouterPortKind = 'qr' | 'qg'

/** The veth ends of a router port: `tap…` on the host's bridge, `qr-…`/`qg-…` in the namespace (15 characters at most). */
export function routerDevices(portId: string, kind: RouterPortKind): { host: string; inner: string } {
  const id = portId.slice(0, 11)
  return { host: `tap${id}`, inner: `${kind}-${id}` }
}

// ------------------------------------------------------------------ validation (pure)

const ROUTER_ID = /^[A-Za-z0-9_.-]{1,200}$/
const PORT_ID = /^[A-Za-z0-9-]{11,}$/
const MAC = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/

function isCidr(v: string): boolean {
  const [addr, prefix, extra] = v.split('/')
  if (extra !== undefined || addr === undefined || prefix === undefined || !/^\d{1,3}$/.test(prefix)) return false
  const family = isIP(addr)
  return family !== 0 && Number(prefix) <= (family === 4 ? 32 : 128)
}

/** IPv4 address of `a.b.c.d/p`, or undefined for IPv6. */
function v4(addressWithPrefix: string): string | undefined {
  const a = addressWithPrefix.split('/')[0]!
  return isIPv4(a) ? a : undefined
}

function ports(spec: RouterSpec): Array<{ port: RouterPort; kind: RouterPortKind }> {
  return [...spec.interfaces.map((port) => ({ port, kind: 'qr' as const })), ...(spec.gateway ? [{ port: spec.gateway, kind: 'qg' as const }] : [])]
}

/**
 * Checks that a router can be built as given: names the kernel accepts,
 * addresses that parse, floating IPs only with an IPv4 gateway address.
 * @throws InvalidArgument naming the router and what is wrong with it.
 */
export function validateRouter(spec: RouterSpec): void {
  const bad = (what: string, field: string) => new InvalidArgument(`router ${JSON.stringify(spec.id)}: ${what}`, { field })
  if (!ROUTER_ID.test(spec.id)) throw bad('its id cannot name a network namespace (1-200 of [A-Za-z0-9_.-])', 'id')
  const prefixes = new Set<string>()
  for (const { port, kind } of ports(spec)) {
    const where = `${kind === 'qg' ? 'gateway' : 'interface'} port ${JSON.stringify(port.portId)}`
    if (!PORT_ID.test(port.portId)) throw bad(`${where}: a port id needs 11 or more of [A-Za-z0-9-] to name its devices`, 'port_id')
    const prefix = port.portId.slice(0, 11)
    if (prefixes.has(prefix)) throw bad(`${where}: another port of the router starts with ${prefix}, and both would be named after it`, 'port_id')
    prefixes.add(prefix)
    if (!MAC.test(port.macAddress)) throw bad(`${where}: ${JSON.stringify(port.macAddress)} is not a MAC address`, 'mac_address')
    const a = [...port.addresses, ...port.cidrs].find((x) => !isCidr(x))
    if (a !== undefined) throw bad(`${where}: ${JSON.stringify(a)} is not an address with a prefix length`, 'fixed_ips')
    if (!Number.isInteger(port.network.mtu) || (port.network.mtu !== 0 && (port.network.mtu < 68 || port.network.mtu > 65535))) {
      throw bad(`${where}: MTU ${port.network.mtu} is not 0 (the default) or 68-65535`, 'mtu')
    }
  }
  for (const r of spec.routes) {
    if (!isCidr(r.destination) || isIP(r.nexthop) === 0) throw bad(`route ${JSON.stringify(r)}: needs a destination CIDR and a nexthop address`, 'routes')
  }
  const g = spec.gateway
  if (g && g.nexthop !== '' && isIP(g.nexthop) === 0) throw bad(`gateway nexthop ${JSON.stringify(g.nexthop)} is not an address`, 'external_gateway_info')
  if (spec.floatingIps.length && !g) throw bad('floating IPs need an external gateway', 'floating_ips')
  if ((spec.floatingIps.length || g?.enableSnat) && g && !g.addresses.some((a) => v4(a))) {
    throw bad('the gateway has no IPv4 address to translate to (SNAT, floating IPs)', 'external_gateway_info')
  }
  const seen = new Set<string>()
  for (const f of spec.floatingIps) {
    if (!isIPv4(f.floatingIpAddress) || !isIPv4(f.fixedIpAddress)) throw bad(`floating IP ${JSON.stringify(f.id)}: ${f.floatingIpAddress} → ${f.fixedIpAddress} must be two IPv4 addresses`, 'floating_ips')
    if (seen.has(f.floatingIpAddress)) throw bad(`floating IP ${f.floatingIpAddress} is given twice`, 'floating_ips')
    seen.add(f.floatingIpAddress)
  }
}

// ------------------------------------------------------------------ rendering (pure)

/** The namespace's whole nat table (iptables-restore input, IPv4): see the module comment. */
export function renderNat(spec: RouterSpec): string {
  const lines = ['*nat', ':PREROUTING ACCEPT [0:0]', ':INPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0]', ':POSTROUTING ACCEPT [0:0]']
  const g = spec.gateway
  if (g) {
    const qg = routerDevices(g.portId, 'qg').inner
    const gatewayIp = g.addresses.map(v4).find((a) => a !== undefined)
    for (const f of spec.floatingIps) lines.push(`-A PREROUTING -d ${f.floatingIpAddress}/32 -j DNAT --to-destination ${f.fixedIpAddress}`)
    for (const f of spec.floatingIps) lines.push(`-A OUTPUT -d ${f.floatingIpAddress}/32 -j DNAT --to-destination ${f.fixedIpAddress}`)
    lines.push(`-A POSTROUTING ! -o ${qg} -m conntrack ! --ctstate DNAT -j ACCEPT`)
    for (const f of spec.floatingIps) lines.push(`-A POSTROUTING -s ${f.fixedIpAddress}/32 -o ${qg} -j SNAT --to-source ${f.floatingIpAddress}`)
    if (g.enableSnat && gatewayIp) {
      const cidrs = [...new Set(spec.interfaces.flatMap((p) => p.cidrs).filter((c) => v4(c)))]
      for (const c of cidrs) lines.push(`-A POSTROUTING -s ${c} -o ${qg} -j SNAT --to-source ${gatewayIp}`)
      for (const c of cidrs) lines.push(`-A POSTROUTING -s ${c} -m conntrack --ctstate DNAT -j SNAT --to-source ${gatewayIp}`)
    }
  }
  lines.push('COMMIT', '')
  return lines.join('\n')
}

/** The addresses a port's inner device holds: its own, and on the gateway every floating IP as a /32. */
export function portAddresses(spec: RouterSpec, port: RouterPort, kind: RouterPortKind): string[] {
  return [...port.addresses, ...(kind === 'qg' ? spec.floatingIps.map((f) => `${f.floatingIpAddress}/32`) : [])]
}

/** The static routes of the namespace, destination → nexthop (none while the router is down: its links are). */
export function renderRoutes(spec: RouterSpec): Map<string, string> {
  const routes = new Map<string, string>()
  if (!spec.adminStateUp) return routes
  if (spec.gateway?.nexthop) routes.set(isIPv4(spec.gateway.nexthop) ? '0.0.0.0/0' : '::/0', spec.gateway.nexthop)
  for (const r of spec.routes) routes.set(r.destination, r.nexthop)
  return routes
}

// ------------------------------------------------------------------ the diff (pure)

/** One port's devices as recorded in the state file. */
export interface MadePort {
  portId: string
  kind: RouterPortKind
  /** The host-side end (deleting it deletes the pair). */
  host: string
  inner: string
  bridge: string
  addresses: string[]
}

/** What the agent made for one router (`<stateDir>/l3.json` holds a list of these). */
export interface MadeRouter {
  id: string
  namespace: string
  ports: MadePort[]
  /** The floating IPs as last applied (their conntrack entries go when they do, even after a restart). */
  floatingIps: Array<Pick<RouterFloatingIp, 'floatingIpAddress' | 'fixedIpAddress'>>
}

/** What one router was last made from, in this run of the agent. */
export interface AppliedRouter {
  /** Port id → what its link was set from (`linkFingerprint`). */
  links: Map<string, string>
  /** Port id → the addresses its inner device was given. */
  addresses: Map<string, string[]>
  /** `routesFingerprint` */
  routes: string
  nat: string
}

/** What is there now (looked up without running commands). */
export interface Present {
  namespace: boolean
  /** Host-side devices that exist. */
  device(name: string): boolean
}

/** A port whose addresses are set: to `want`, from `have` (the last applied list: only the difference runs) or, when undefined, from what the kernel lists. */
export interface AddressChange {
  portId: string
  want: string[]
  have: string[] | undefined
}

/** The work one apply does for one router; nothing to do when `isEmptyPlan`. */
export interface RouterPlan {
  createNamespace: boolean
  /** lo up and forwarding on: a new namespace, or the router's first apply in this run. */
  setup: boolean
  /** Ports whose veth pair is made: new, or a device is gone. */
  plumb: string[]
  /** Ports whose MAC, MTU, bridge and link state are set. */
  links: string[]
  addresses: AddressChange[]
  /** Recorded ports no longer wanted: their pair is deleted. */
  unplug: MadePort[]
  routes: boolean
  /** The nat table to restore, when it changed. */
  nat: string | undefined
  /** Floating addresses whose conntrack entries are deleted (gone, or now mapped to another fixed IP). */
  forget: string[]
}

/** What a port's link is set from: a change means setting it again. */
export function linkFingerprint(spec: RouterSpec, port: RouterPort, bridge: string): string {
  return JSON.stringify([port.macAddress, port.network.mtu, bridge, spec.adminStateUp])
}

/**
 * What the routes depend on: the routes, and the links and addresses their
 * nexthops are reached through (the kernel drops a route whose nexthop's
 * link goes down or loses its subnet). Not the floating IPs: adding one
 * touches no route.
 */
export function routesFingerprint(spec: RouterSpec): string {
  return JSON.stringify([[...renderRoutes(spec)], spec.adminStateUp, ports(spec).map(({ port }) => [port.portId, port.addresses])])
}

/**
 * Decides which steps an apply runs for one router, from what is wanted, what
 * the state file says was made, what this run last applied (undefined: the
 * first apply of the run, which converges everything from what the kernel
 * has) and what exists.
 */
export function planRouter(spec: RouterSpec, made: MadeRouter | undefined, applied: AppliedRouter | undefined, present: Present, bridgeFor: (n: RouterNetwork) => string): RouterPlan {
  const createNamespace = !present.namespace
  const last = createNamespace ? undefined : applied
  const plumb: string[] = []
  const links: string[] = []
  const addresses: AddressChange[] = []
  for (const { port, kind } of ports(spec)) {
    const dev = routerDevices(port.portId, kind)
    const before = made?.ports.find((p) => p.portId === port.portId && p.kind === kind)
    const replumb = createNamespace || before === undefined || !present.device(dev.host)
    if (replumb) plumb.push(port.portId)
    if (replumb || last?.links.get(port.portId) !== linkFingerprint(spec, port, bridgeFor(port.network))) links.push(port.portId)
    const want = portAddresses(spec, port, kind)
    // A new device has no addresses yet (but its IPv6 link-local one, which is never touched).
    const have = replumb ? [] : last?.addresses.get(port.portId)
    if (have === undefined || JSON.stringify(have) !== JSON.stringify(want)) addresses.push({ portId: port.portId, want, have })
  }
  const unplug = (made?.ports ?? []).filter((p) => !ports(spec).some((w) => w.port.portId === p.portId && w.kind === p.kind))
  const routes = last === undefined || plumb.length > 0 || last.routes !== routesFingerprint(spec)
  const nat = renderNat(spec)
  const now = new Map(spec.floatingIps.map((f) => [f.floatingIpAddress, f.fixedIpAddress]))
  const forget = (made?.floatingIps ?? []).filter((f) => now.get(f.floatingIpAddress) !== f.fixedIpAddress).map((f) => f.floatingIpAddress)
  return { createNamespace, setup: last === undefined, plumb, links, addresses, unplug, routes, nat: last?.nat !== nat ? nat : undefined, forget }
}

export function isEmptyPlan(p: RouterPlan): boolean {
  return !p.createNamespace && !p.setup && !p.plumb.length && !p.links.length && !p.addresses.length && !p.unplug.length && !p.routes && p.nat === undefined && !p.forget.length
}

// ------------------------------------------------------------------ the agent

export interface L3AgentOptions {
  /** `<stateDir>/l3.json` records what was made. */
  stateDir: string
  /** The bridge a network's ports are on, on this host (as for a guest NIC). */
  bridgeFor: (n: RouterNetwork) => string
  /** Makes sure a bridge exists before a router port is plugged into it. @default bridge.ts ensureBridge */
  ensureBridge?: (name: string) => Promise<void>
  /** Each command is logged at debug level (`{ cmd, netns }`, "l3: run"). */
  log: Logger
}

interface IpAddr {
  family: string
  local: string
  prefixlen: number
  scope?: string
}

interface IpRoute {
  dst: string
  gateway?: string
}

/** A route's destination as `ip -j route` prints it, as a CIDR. */
function routeDst(dst: string, v6: boolean): string {
  if (dst === 'default') return v6 ? '::/0' : '0.0.0.0/0'
  return dst.includes('/') ? dst : `${dst}/${v6 ? 128 : 32}`
}

const NO_CONNTRACK_ENTRIES = /0 flow entries have been deleted/

/**
 * The L3 role's router builder: makes the host's routers exactly what the
 * controller places here. An agent announces the L3 role only when it has
 * one, so routers are placed only where they are built.
 */
export interface RouterBuilder {
  /**
   * Makes the host's routers exactly `routers`: builds or updates each and
   * removes the others it made. Serialized and idempotent; a router that
   * fails does not stop the others.
   */
  apply(routers: RouterSpec[]): Promise<void>
}

/**
 * Builds routers in memory only (l3Driver `fake`, for fake-driver hosts in
 * tests): keeps what it was told to build, as the fake virt driver keeps its
 * guests, so a test can see what its host holds.
 */
export class FakeRouterBuilder implements RouterBuilder {
  private readonly built = new Map<string, RouterSpec>()

  async apply(routers: RouterSpec[]): Promise<void> {
    this.built.clear()
    for (const r of routers) this.built.set(r.id, r)
  }

  /** The routers built here now, by id. */
  routers(): ReadonlyMap<string, RouterSpec> {
    return this.built
  }
}

export class L3Agent implements RouterBuilder {
  private readonly file: string
  private readonly ensureBridge: (name: string) => Promise<void>
  private readonly applied = new Map<string, AppliedRouter>()
  private made: MadeRouter[] | undefined
  private tail: Promise<void> = Promise.resolve()
  /** Gratuitous ARPs in flight (arping takes a second; apply does not wait for them). */
  private readonly announcing = new Set<Promise<void>>()
  private noArping = false

  constructor(private readonly o: L3AgentOptions) {
    this.file = path.join(o.stateDir, 'l3.json')
    this.ensureBridge = o.ensureBridge ?? (async (name) => void (await ensureLinuxBridge(name)))
  }

  /**
   * Makes the host's routers exactly `routers`: builds or updates each, and
   * removes those this agent made that are not among them. Serialized and
   * idempotent. A router that fails is rolled back as far as this apply built
   * it and does not stop the others.
   * @throws Internal naming every router that failed (with each error as `cause`, an AggregateError).
   */
  apply(routers: RouterSpec[]): Promise<void> {
    const next = this.tail.then(() => this.applyNow(routers))
    this.tail = next.catch(() => undefined)
    return next
  }

  /** Removes every router this agent made, and its state file (tests, an agent leaving the host). */
  removeAll(): Promise<void> {
    const next = this.tail.then(async () => {
      await this.applyNow([])
      await Promise.allSettled([...this.announcing])
      await rm(this.file, { force: true })
      this.made = undefined
    })
    this.tail = next.catch(() => undefined)
    return next
  }

  /**
   * Makes the next apply converge every router from what the kernel has (as
   * the first apply of a run does), instead of trusting what it last applied:
   * for a slow timer, or after the host's networking was touched by hand.
   */
  resync(): void {
    this.applied.clear()
  }

  /** Router id → namespace, of the routers this agent holds (for services that live in them). */
  async namespaces(): Promise<Map<string, string>> {
    await this.tail
    return new Map((await this.load()).map((r) => [r.id, r.namespace]))
  }

  private async applyNow(routers: RouterSpec[]): Promise<void> {
    const made = await this.load()
    const failures: Array<{ id: string; error: unknown }> = []
    const want = new Map<string, RouterSpec>()
    const owner = new Map<string, string>()
    for (const r of routers) {
      try {
        validateRouter(r)
        if (want.has(r.id)) throw new InvalidArgument(`router ${r.id} is given twice`)
        // Host-side device names are per host: two routers' ports must not share one.
        for (const { port, kind } of ports(r)) {
          const other = owner.get(routerDevices(port.portId, kind).host)
          if (other !== undefined) throw new InvalidArgument(`router ${JSON.stringify(r.id)}: port ${port.portId} would share its host device with a port of router ${other}`)
        }
        for (const { port, kind } of ports(r)) owner.set(routerDevices(port.portId, kind).host, r.id)
        want.set(r.id, r)
      } catch (error) {
        failures.push({ id: r.id, error })
      }
    }
    // A port that moved to another router keeps its host device name: the router it left must not delete the new one's.
    const claimed = new Set(owner.keys())
    for (const m of [...made]) {
      if (want.has(m.id) || failures.some((f) => f.id === m.id)) continue
      await this.removeRouter(m, claimed).catch((error: unknown) => failures.push({ id: m.id, error }))
    }
    for (const spec of want.values()) {
      await this.applyRouter(spec, claimed).catch((error: unknown) => {
        this.applied.delete(spec.id)
        failures.push({ id: spec.id, error })
      })
    }
    if (failures.length) {
      for (const f of failures) this.o.log.error({ err: f.error, routerId: f.id }, 'router not applied')
      const detail = failures.map((f) => `${f.id}: ${f.error instanceof Error ? f.error.message : String(f.error)}`).join('; ')
      throw new Internal(`cannot apply ${failures.length} router(s): ${detail}`, { cause: new AggregateError(failures.map((f) => f.error), 'routers not applied') })
    }
  }

  private async applyRouter(spec: RouterSpec, claimed: Set<string>): Promise<void> {
    const ns = routerNamespace(spec.id)
    const made = this.made!.find((m) => m.id === spec.id)
    const plan = planRouter(spec, made, this.applied.get(spec.id), {
      namespace: existsSync(`/run/netns/${ns}`),
      device: (name) => existsSync(`/sys/class/net/${name}`),
    }, this.o.bridgeFor)
    if (isEmptyPlan(plan)) return
    const log = this.o.log.child({ routerId: spec.id, namespace: ns })
    const started = Date.now()
    await withReverter(async (revert) => {
      const record = made ?? { id: spec.id, namespace: ns, ports: [], floatingIps: [] }
      if (!made) {
        // Recorded before it is made: a crash in between still leaves it ours to remove.
        this.made!.push(record)
        this.save()
        revert.add(`forget router ${spec.id}`, () => {
          this.made = this.made!.filter((m) => m !== record)
          this.save()
        })
      }
      if (plan.createNamespace) {
        await this.sh('ip', ['netns', 'add', ns])
        revert.add(`delete namespace ${ns}`, () => this.sh('ip', ['netns', 'delete', ns]).then(() => undefined))
      }
      if (plan.setup) {
        await this.sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
        // Both families, whatever the router has now: an IPv6 subnet added later needs no new setup.
        await this.sh('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1', ...(existsSync('/proc/sys/net/ipv6') ? ['net.ipv6.conf.all.forwarding=1'] : [])], { netns: ns })
      }
      for (const p of plan.unplug) {
        if (!claimed.has(p.host)) await this.deleteLink(p.host)
        record.ports = record.ports.filter((x) => x !== p)
        this.save()
      }
      const added: Array<{ dev: string; address: string }> = []
      for (const { port, kind } of ports(spec)) {
        const bridge = this.o.bridgeFor(port.network)
        if (plan.plumb.includes(port.portId)) await this.plumb(record, port, kind, bridge, ns, plan.createNamespace, revert)
        if (plan.links.includes(port.portId)) await this.link(spec, port, kind, bridge, ns)
        const change = plan.addresses.find((c) => c.portId === port.portId)
        if (change) for (const a of await this.addresses(change, kind, ns)) added.push({ dev: routerDevices(port.portId, kind).inner, address: a })
        this.record(record, port, kind, bridge)
      }
      if (plan.routes) await this.routes(spec, ns)
      if (plan.nat !== undefined) await this.sh('iptables-restore', [], { netns: ns, input: plan.nat, what: `apply the NAT rules of router ${spec.id}` })
      await Promise.all(plan.forget.map((address) => this.forgetFlows(ns, address)))
      record.floatingIps = spec.floatingIps.map((f) => ({ floatingIpAddress: f.floatingIpAddress, fixedIpAddress: f.fixedIpAddress }))
      this.save()
      // As Neutron does for every new router address: guests and the outside that were already
      // asking (a resolution under way, a floating IP that moved) learn the router's MAC at once.
      if (spec.adminStateUp) for (const a of added) if (v4(a.address)) this.announce(ns, a.dev, v4(a.address)!, log)
    }, { log, context: { routerId: spec.id } })
    this.applied.set(spec.id, {
      links: new Map(ports(spec).map(({ port }) => [port.portId, linkFingerprint(spec, port, this.o.bridgeFor(port.network))])),
      addresses: new Map(ports(spec).map(({ port, kind }) => [port.portId, portAddresses(spec, port, kind)])),
      routes: routesFingerprint(spec),
      nat: renderNat(spec),
    })
    const summary = { ...plan, addresses: plan.addresses.map((c) => c.portId), nat: plan.nat !== undefined, unplug: plan.unplug.map((p) => p.portId) }
    log.info({ plan: summary, ms: Date.now() - started }, 'router applied')
  }

  /** A new veth pair for a port (whatever is left of an old one goes first; nothing is, in a namespace just made: `fresh`). */
  private async plumb(record: MadeRouter, port: RouterPort, kind: RouterPortKind, bridge: string, ns: string, fresh: boolean, revert: Reverter): Promise<void> {
    const dev = routerDevices(port.portId, kind)
    if (!record.ports.some((p) => p.portId === port.portId && p.kind === kind)) {
      record.ports.push({ portId: port.portId, kind, host: dev.host, inner: dev.inner, bridge, addresses: port.addresses })
      this.save()
    }
    await this.deleteLink(dev.host)
    // A device of that name left in the namespace (its peer deleted with a stale host end) is the router's.
    if (!fresh && (await this.succeeds('ip', ['-n', ns, 'link', 'show', 'dev', dev.inner]))) await this.sh('ip', ['-n', ns, 'link', 'delete', 'dev', dev.inner])
    await this.sh('ip', ['link', 'add', dev.host, 'type', 'veth', 'peer', 'name', dev.inner, 'netns', ns])
    revert.add(`delete ${dev.host}`, () => this.deleteLink(dev.host))
  }

  /** Sets a port's MAC, MTU, bridge and link state. */
  private async link(spec: RouterSpec, port: RouterPort, kind: RouterPortKind, bridge: string, ns: string): Promise<void> {
    const dev = routerDevices(port.portId, kind)
    const mtu = port.network.mtu ? ['mtu', String(port.network.mtu)] : []
    const state = spec.adminStateUp ? 'up' : 'down'
    await this.ensureBridge(bridge)
    await this.sh('ip', ['-n', ns, 'link', 'set', 'dev', dev.inner, 'address', port.macAddress.toLowerCase(), ...mtu])
    await this.sh('ip', ['link', 'set', 'dev', dev.host, ...mtu, 'master', bridge, state])
    await this.sh('ip', ['-n', ns, 'link', 'set', 'dev', dev.inner, state])
  }

  /** Gives a port's inner device exactly the addresses it should have; returns those it added. */
  private async addresses(change: AddressChange, kind: RouterPortKind, ns: string): Promise<string[]> {
    const dev = routerDevices(change.portId, kind).inner
    const have = change.have ?? (JSON.parse(await this.sh('ip', ['-n', ns, '-j', 'addr', 'show', 'dev', dev])) as Array<{ addr_info?: IpAddr[] }>)
      .flatMap((l) => l.addr_info ?? []).filter((a) => a.scope !== 'link').map((a) => `${a.local}/${a.prefixlen}`)
    for (const a of have) if (!change.want.includes(a)) await this.sh('ip', ['-n', ns, 'addr', 'del', a, 'dev', dev])
    const added: string[] = []
    for (const a of change.want) {
      if (have.includes(a)) continue
      // nodad: the router's addresses are the controller's to hand out; an IPv6 one must work at once.
      await this.sh('ip', ['-n', ns, 'addr', 'replace', a, 'dev', dev, ...(v4(a) ? [] : ['nodad'])])
      added.push(a)
    }
    return added
  }

  /** Keeps the state file's record of a port's bridge and addresses current. */
  private record(record: MadeRouter, port: RouterPort, kind: RouterPortKind, bridge: string): void {
    const r = record.ports.find((p) => p.portId === port.portId && p.kind === kind)
    if (r && (r.bridge !== bridge || JSON.stringify(r.addresses) !== JSON.stringify(port.addresses))) {
      Object.assign(r, { bridge, addresses: port.addresses })
      this.save()
    }
  }

  /** Makes the namespace's static routes (ours are `proto static`) exactly what the spec says. */
  private async routes(spec: RouterSpec, ns: string): Promise<void> {
    const want = renderRoutes(spec)
    for (const v6 of [false, true]) {
      const family = v6 ? '-6' : '-4'
      const have = JSON.parse(await this.sh('ip', ['-n', ns, family, '-j', 'route', 'show', 'proto', 'static'])) as IpRoute[]
      for (const r of have) {
        const dst = routeDst(r.dst, v6)
        if (want.get(dst) !== r.gateway) await this.sh('ip', ['-n', ns, family, 'route', 'del', dst, ...(r.gateway ? ['via', r.gateway] : []), 'proto', 'static'])
      }
      for (const [dst, via] of want) {
        if (dst.includes(':') !== v6) continue
        if (have.some((r) => routeDst(r.dst, v6) === dst && r.gateway === via)) continue
        await this.sh('ip', ['-n', ns, family, 'route', 'replace', dst, 'via', via, 'proto', 'static'], { what: `add route ${dst} via ${via} to router ${spec.id}` })
      }
    }
  }

  /**
   * Deletes the namespace's conntrack entries of a floating address, both ways
   * (to it: inbound through the DNAT; replies to it: outbound through the
   * SNAT), so no established flow outlives the floating IP.
   */
  private async forgetFlows(ns: string, address: string): Promise<void> {
    await Promise.all(['-d', '-q'].map((flag) => this.sh('conntrack', ['-D', flag, address], { netns: ns, what: `forget the flows of floating IP ${address}` }).catch((error: unknown) => {
      if (!(error instanceof Internal && NO_CONNTRACK_ENTRIES.test(error.message))) throw error
    })))
  }

  /** Tells a network's neighbours where a new router address is (in the background: arping takes a second). */
  private announce(ns: string, dev: string, address: string, log: Logger): void {
    if (this.noArping) return
    const p = this.sh('arping', ['-U', '-c', '1', '-I', dev, address], { netns: ns, timeoutMs: 5_000 }).then(
      () => undefined,
      (err: unknown) => {
        // Without arping (Debian iputils-arping) neighbours learn the address when they next ask.
        if (err instanceof Internal && /exec of "arping" failed|ENOENT|No such file/.test(err.message)) {
          this.noArping = true
          log.info('arping is not installed: new router addresses are not announced with a gratuitous ARP')
        } else {
          log.warn({ err, address }, 'gratuitous ARP for a floating IP failed; neighbours learn it when they next ask')
        }
      },
    )
    this.announcing.add(p)
    void p.finally(() => this.announcing.delete(p))
  }

  private async removeRouter(m: MadeRouter, claimed: Set<string>): Promise<void> {
    for (const p of m.ports) if (!claimed.has(p.host)) await this.deleteLink(p.host)
    // Its conntrack entries, addresses and tables go with it.
    if (existsSync(`/run/netns/${m.namespace}`)) await this.sh('ip', ['netns', 'delete', m.namespace])
    this.made = this.made!.filter((x) => x !== m)
    this.applied.delete(m.id)
    this.save()
    this.o.log.info({ routerId: m.id, namespace: m.namespace }, 'router removed')
  }

  private async deleteLink(name: string): Promise<void> {
    if (existsSync(`/sys/class/net/${name}`)) await this.sh('ip', ['link', 'delete', 'dev', name])
  }

  private sh(cmd: string, args: string[], o: RunOptions = {}): Promise<string> {
    this.o.log.debug({ cmd: [cmd, ...args].join(' '), netns: o.netns }, 'l3: run')
    return run(cmd, args, o)
  }

  private succeeds(cmd: string, args: string[], o: RunOptions = {}): Promise<boolean> {
    return this.sh(cmd, args, o).then(() => true, () => false)
  }

  private async load(): Promise<MadeRouter[]> {
    if (this.made) return this.made
    try {
      this.made = JSON.parse(await readFile(this.file, 'utf8')) as MadeRouter[]
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new Internal(`L3: cannot read ${this.file}: ${(error as Error).message}`, { cause: error })
      this.made = []
    }
    return this.made
  }

  private save(): void {
    writePrivateFile(this.file, `${JSON.stringify(this.made ?? [], null, 2)}\n`, { dirMode: 0o700 })
  }
}
