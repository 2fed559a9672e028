/**
 * Linux bridges for guest NICs, through iproute2 (`ip link`). The agent maps a
 * physical network to a bridge name from its config and calls
 * `ensureBridge(name)` before spawning a guest with a NIC on it. Only bridges
 * whose name the caller gives are ever touched.
 */
import { withReverter } from '../../proto/revert.js'
import { FailedPrecondition, Internal, InvalidArgument } from '../../proto/errors.js'
import { ip as runIp } from './exec.js'

/** Linux interface names: 1–15 bytes, no slash, colon or whitespace. */
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/

export interface BridgeOptions {
  /** Network namespace (`ip -n NAME`) to act in. @default the agent's own */
  netns?: string
}

interface IpLink {
  ifname: string
  operstate?: string
  flags?: string[]
  linkinfo?: { info_kind?: string }
}

function ipArgs(options: BridgeOptions, ...args: string[]): string[] {
  return options.netns === undefined ? args : ['-n', options.netns, ...args]
}

function ip(options: BridgeOptions, ...args: string[]): Promise<string> {
  return runIp(...ipArgs(options, ...args))
}

function checkName(name: string): void {
  if (!IFNAME_RE.test(name)) {
    throw new InvalidArgument(`invalid bridge name ${JSON.stringify(name)}: 1-15 characters of [A-Za-z0-9_.-]`, { field: 'bridge' })
  }
}

/** The link called `name`, or undefined when there is none. */
async function showLink(name: string, options: BridgeOptions): Promise<IpLink | undefined> {
  try {
    const links = JSON.parse(await ip(options, '-j', '-d', 'link', 'show', 'dev', name)) as IpLink[]
    return links[0]
  } catch (error) {
    if (error instanceof Internal && /does not exist/i.test(error.message)) return undefined
    throw error
  }
}

/** Is there a bridge called `name`? */
export async function bridgeExists(name: string, options: BridgeOptions = {}): Promise<boolean> {
  checkName(name)
  return (await showLink(name, options))?.linkinfo?.info_kind === 'bridge'
}

export interface EnsureBridgeResult {
  /** True when this call created the bridge. */
  created: boolean
}

/**
 * Makes sure a bridge called `name` exists and is up; creates it if missing.
 * @throws InvalidArgument for a name Linux would refuse.
 * @throws FailedPrecondition when `name` exists but is not a bridge.
 */
export async function ensureBridge(name: string, options: BridgeOptions = {}): Promise<EnsureBridgeResult> {
  checkName(name)
  const existing = await showLink(name, options)
  if (existing !== undefined) {
    if (existing.linkinfo?.info_kind !== 'bridge') {
      throw new FailedPrecondition(`interface ${name} exists but is a ${existing.linkinfo?.info_kind ?? 'plain'} device, not a bridge`)
    }
    if (!(existing.flags ?? []).includes('UP')) await ip(options, 'link', 'set', 'dev', name, 'up')
    return { created: false }
  }
  return withReverter(async (revert) => {
    try {
      await ip(options, 'link', 'add', 'name', name, 'type', 'bridge')
    } catch (error) {
      // Another agent thread made it first: fine, as long as it is a bridge.
      if (error instanceof Internal && /exists/i.test(error.message)) return ensureBridge(name, options)
      throw error
    }
    revert.add(`delete bridge ${name}`, async () => {
      await ip(options, 'link', 'delete', 'dev', name, 'type', 'bridge')
    })
    await ip(options, 'link', 'set', 'dev', name, 'up')
    return { created: true }
  })
}

/**
 * Deletes the bridge called `name`; a missing one is fine.
 * @throws FailedPrecondition when `name` is not a bridge (it is left alone).
 */
export async function deleteBridge(name: string, options: BridgeOptions = {}): Promise<void> {
  checkName(name)
  const existing = await showLink(name, options)
  if (existing === undefined) return
  if (existing.linkinfo?.info_kind !== 'bridge') {
    throw new FailedPrecondition(`refusing to delete ${name}: it is not a bridge`)
  }
  await ip(options, 'link', 'delete', 'dev', name, 'type', 'bridge')
}

/** Names of the interfaces enslaved to bridge `name` (e.g. guests' tap devices). */
export async function bridgePorts(name: string, options: BridgeOptions = {}): Promise<string[]> {
  checkName(name)
  const links = JSON.parse(await ip(options, '-j', 'link', 'show', 'master', name)) as IpLink[]
  return links.map((link) => link.ifname)
}
