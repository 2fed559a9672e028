/**
 * The host as the provider network's gateway — for a single-host demo, where
 * the provider bridge has no uplink and nothing else holds the subnet's
 * gateway address (Neutron's deployments have a physical router there).
 *
 * For each provider network it is asked to serve, the agent plugs a veth pair
 * into the network's bridge, like a router's gateway port: `sgb<id>` is a
 * port of the bridge, `sgw<id>` stays in the host's namespace and holds the
 * subnet's gateway address (e.g. 192.168.201.1/24). The host then reaches
 * guests, and guests reach the host, through a bridge port — so the traffic
 * is bridged past the guests' taps and their security groups decide, as for
 * any other neighbour (an address on the bridge device itself would send the
 * host's packets around the port chains). With `nat`, traffic from the subnet
 * to anywhere else is masqueraded (iptables nat, the agent's own chain) and
 * IPv4 forwarding is turned on; without it, nothing is routed.
 *
 * What it made is recorded in `<stateDir>/host-gateway.json`, so an agent
 * that restarts removes what is no longer wanted and nothing else.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import type { Logger } from 'pino'
import { Internal, InvalidArgument } from '../../proto/errors.js'
import { writePrivateFile } from '../../proto/private-file.js'
import { run, succeeds } from './exec.js'

/** One provider network the host is the gateway of. */
export interface HostGatewayNetwork {
  networkId: string
  /** The Linux bridge the network's ports are on. */
  bridge: string
  /** The gateway address with the subnet's prefix, e.g. `192.168.201.1/24` (IPv4). */
  gateway: string
  /** The subnet, e.g. `192.168.201.0/24`. */
  cidr: string
}

export interface HostGatewayOptions {
  stateDir: string
  /** Masquerade the subnets' traffic to other networks (and turn on IPv4 forwarding). */
  nat: boolean
  /** The agent's host name: names its NAT chain, so agents sharing a kernel keep apart. */
  host: string
  /** Act in this network namespace instead of the agent's own (tests). */
  netns?: string
  log?: Logger
}

interface Made {
  networkId: string
  outer: string
  inner: string
  bridge: string
  gateway: string
  cidr: string
  nat: boolean
}

const IPV4_CIDR = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/

function checkCidr(v: string, what: string): void {
  const m = IPV4_CIDR.exec(v)
  if (!m || m.slice(1, 5).some((o) => Number(o) > 255) || Number(m[5]) > 32) {
    throw new InvalidArgument(`host gateway: ${what} '${v}' is not an IPv4 address with a prefix`)
  }
}

/** The pair's names: `sgw`/`sgb` + 11 characters of the network id (15 at most, as Linux wants). */
export function hostGatewayLinks(networkId: string): { outer: string; inner: string } {
  const id = networkId.replaceAll('-', '').slice(0, 11)
  return { outer: `sgw${id}`, inner: `sgb${id}` }
}

/** The agent's NAT chain: `strato-nat-` + 8 hex of its host name's SHA-256. */
export function natChain(host: string): string {
  return `strato-nat-${createHash('sha256').update(host).digest('hex').slice(0, 8)}`
}


export class HostGateway {
  private readonly file: string
  private running: Promise<void> = Promise.resolve()

  constructor(private readonly o: HostGatewayOptions) {
    this.file = path.join(o.stateDir, 'host-gateway.json')
  }

  private sh(cmd: string, args: string[]): Promise<string> {
    return run(cmd, args, { netns: this.o.netns })
  }

  /** Runs a command whose failure is an answer (a missing link, rule or chain). */
  private try(cmd: string, args: string[]): Promise<boolean> {
    return succeeds(cmd, args, { netns: this.o.netns })
  }

  private linkExists(name: string): Promise<boolean> {
    return this.try('ip', ['link', 'show', 'dev', name])
  }

  /** Makes the host the gateway of exactly `networks` (one apply at a time). */
  apply(networks: HostGatewayNetwork[]): Promise<void> {
    const next = this.running.then(() => this.applyNow(networks))
    this.running = next.catch(() => {})
    return next
  }

  private async applyNow(networks: HostGatewayNetwork[]): Promise<void> {
    for (const n of networks) {
      checkCidr(n.gateway, 'gateway')
      checkCidr(n.cidr, 'subnet')
    }
    const made = await this.load()
    const wanted = new Map<string, Made>()
    for (const n of networks) {
      const dup = [...wanted.values()].find((w) => w.cidr === n.cidr)
      if (dup) {
        this.o.log?.warn({ network: n.networkId, other: dup.networkId, cidr: n.cidr }, 'host gateway: two networks with one subnet; only the first is served')
        continue
      }
      wanted.set(n.networkId, { networkId: n.networkId, ...hostGatewayLinks(n.networkId), bridge: n.bridge, gateway: n.gateway, cidr: n.cidr, nat: this.o.nat })
    }
    const keep: Made[] = []
    for (const m of made) {
      const w = wanted.get(m.networkId)
      if (w && w.bridge === m.bridge && w.gateway === m.gateway && w.cidr === m.cidr && w.nat === m.nat && (await this.linkExists(m.outer))) {
        keep.push(m)
        wanted.delete(m.networkId)
      } else {
        await this.remove(m)
      }
    }
    await this.save(keep)
    for (const w of wanted.values()) {
      await this.add(w)
      keep.push(w)
      await this.save(keep)
    }
  }

  private async add(m: Made): Promise<void> {
    if (await this.linkExists(m.outer)) await this.sh('ip', ['link', 'del', 'dev', m.outer])
    await this.sh('ip', ['link', 'add', m.outer, 'type', 'veth', 'peer', 'name', m.inner])
    try {
      await this.sh('ip', ['link', 'set', 'dev', m.inner, 'master', m.bridge, 'up'])
      await this.sh('ip', ['addr', 'replace', m.gateway, 'dev', m.outer])
      await this.sh('ip', ['link', 'set', 'dev', m.outer, 'up'])
      if (m.nat) {
        await this.ensureNatChain()
        await this.sh('iptables', ['-w', '-t', 'nat', '-A', ...this.masquerade(m)])
        await this.sh('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'])
      }
    } catch (error) {
      await this.try('ip', ['link', 'del', 'dev', m.outer])
      throw error
    }
    this.o.log?.info({ network: m.networkId, bridge: m.bridge, gateway: m.gateway, nat: m.nat }, 'host is the gateway of a provider network')
  }

  private async remove(m: Made): Promise<void> {
    // Deleting one end of a veth pair deletes both, and the address with it.
    if (await this.linkExists(m.outer)) await this.sh('ip', ['link', 'del', 'dev', m.outer])
    if (m.nat) {
      await this.try('iptables', ['-w', '-t', 'nat', '-D', ...this.masquerade(m)])
    }
    this.o.log?.info({ network: m.networkId, bridge: m.bridge }, 'host no longer the gateway of a provider network')
  }

  /** The NAT rule of a network, as `iptables -A`/`-D` take it after the verb. */
  private masquerade(m: Made): string[] {
    return [natChain(this.o.host), '-s', m.cidr, '!', '-d', m.cidr, '-j', 'MASQUERADE', '-m', 'comment', '--comment', `strato ${m.networkId}`]
  }

  private async ensureNatChain(): Promise<void> {
    const chain = natChain(this.o.host)
    await this.try('iptables', ['-w', '-t', 'nat', '-N', chain])
    const hooked = await this.try('iptables', ['-w', '-t', 'nat', '-C', 'POSTROUTING', '-j', chain])
    if (!hooked) await this.sh('iptables', ['-w', '-t', 'nat', '-I', 'POSTROUTING', '1', '-j', chain])
  }

  /** Removes everything (the agent's `--cleanup`, and tests). */
  async clear(): Promise<void> {
    await this.apply([])
    const chain = natChain(this.o.host)
    await this.try('iptables', ['-w', '-t', 'nat', '-D', 'POSTROUTING', '-j', chain])
    await this.try('iptables', ['-w', '-t', 'nat', '-X', chain])
  }

  private async load(): Promise<Made[]> {
    try {
      return JSON.parse(await readFile(this.file, 'utf8')) as Made[]
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new Internal(`host gateway: cannot read ${this.file}: ${(error as Error).message}`, { cause: error })
    }
  }

  private async save(made: Made[]): Promise<void> {
    writePrivateFile(this.file, `${JSON.stringify(made, null, 2)}\n`)
  }
}
