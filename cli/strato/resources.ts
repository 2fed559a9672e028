/**
 * Helpers shared by the compute, image and network nouns: name-or-id lookups
 * (openstackclient's find_resource: an id first, then a unique name), parsing
 * of `k=v` and `a=x,b=y` option values, integers, and timestamps as the
 * OpenStack APIs print them.
 */
import { NotFound } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import { FlavorsClient, type Flavor } from '../../proto/gen/strato/compute/v1/compute.js'
import { ServersClient, type Server } from '../../proto/gen/strato/compute/v1/servers.js'
import { ImagesClient, type Image } from '../../proto/gen/strato/image/v1/image.js'
import {
  FloatingIpsClient, NetworksClient, PortsClient, SecurityGroupsClient, SubnetsClient,
  type FloatingIp, type Network, type Port, type SecurityGroup, type Subnet,
} from '../../proto/gen/strato/network/v1/network.js'
import type { Context } from './context.js'
import { CliError, UsageError } from './errors.js'
import type { Args } from './registry.js'

/** A uuid as people type it (any case). */
const isUuidRef = (ref: string): boolean => isUuid(ref.toLowerCase())

/** Runs a lookup, turning NOT_FOUND into undefined. */
export async function maybe<T>(p: Promise<T>): Promise<T | undefined> {
  try {
    return await p
  } catch (err) {
    if (err instanceof NotFound) return undefined
    throw err
  }
}

/** The same words as the identity nouns' lookups (openstackclient's find_resource). */
export const noSuch = (kind: string, ref: string, by = 'a name or ID'): NotFound => new NotFound(`No ${kind} with ${by} of '${ref}' exists.`)

const ambiguous = (kind: string, ref: string, n: number): CliError =>
  new CliError(`More than one ${kind} exists with the name '${ref}' (${n} of them); use the ID instead.`)

/** A flavor by id (any string: `0` is a valid flavor id) or by name. */
export async function findFlavor(ctx: Context, ref: string): Promise<Flavor> {
  const f = (await maybe(ctx.call(FlavorsClient, 'getFlavor', { id: ref }))) ?? (await maybe(ctx.call(FlavorsClient, 'getFlavor', { name: ref })))
  if (!f) throw noSuch('flavor', ref)
  return f
}

export async function findImage(ctx: Context, ref: string): Promise<Image> {
  if (isUuidRef(ref)) {
    const byId = await maybe(ctx.call(ImagesClient, 'getImage', { id: ref }))
    if (byId) return byId
  }
  const named = (await ctx.call(ImagesClient, 'listImages', { name: ref, limit: 2, memberStatus: 'all' })).images ?? []
  if (named.length > 1) throw ambiguous('image', ref, named.length)
  const img = named[0] ?? (await maybe(ctx.call(ImagesClient, 'getImage', { name: ref })))
  if (!img) throw noSuch('image', ref)
  return img
}

export async function findNetwork(ctx: Context, ref: string): Promise<Network> {
  if (isUuidRef(ref)) {
    const byId = await maybe(ctx.call(NetworksClient, 'getNetwork', { id: ref }))
    if (byId) return byId
  }
  const named = (await ctx.call(NetworksClient, 'listNetworks', { name: ref })).networks ?? []
  if (named.length > 1) throw ambiguous('network', ref, named.length)
  if (!named[0]) throw noSuch('network', ref)
  return named[0]
}

export async function findSubnet(ctx: Context, ref: string, networkId?: string): Promise<Subnet> {
  if (isUuidRef(ref)) {
    const byId = await maybe(ctx.call(SubnetsClient, 'getSubnet', { id: ref }))
    if (byId) return byId
  }
  const named = (await ctx.call(SubnetsClient, 'listSubnets', { name: ref, networkId: networkId ?? '' })).subnets ?? []
  if (named.length > 1) throw ambiguous('subnet', ref, named.length)
  if (!named[0]) throw noSuch('subnet', ref)
  return named[0]
}

export async function findPort(ctx: Context, ref: string): Promise<Port> {
  if (isUuidRef(ref)) {
    const byId = await maybe(ctx.call(PortsClient, 'getPort', { id: ref }))
    if (byId) return byId
  }
  const named = (await ctx.call(PortsClient, 'listPorts', { name: ref })).ports ?? []
  if (named.length > 1) throw ambiguous('port', ref, named.length)
  if (!named[0]) throw noSuch('port', ref)
  return named[0]
}

export async function findSecurityGroup(ctx: Context, ref: string): Promise<SecurityGroup> {
  if (isUuidRef(ref)) {
    const byId = await maybe(ctx.call(SecurityGroupsClient, 'getSecurityGroup', { id: ref }))
    if (byId) return byId
  }
  // Listing by name also creates the project's `default` group on first use.
  const named = (await ctx.call(SecurityGroupsClient, 'listSecurityGroups', { name: ref })).securityGroups ?? []
  if (named.length > 1) throw ambiguous('security group', ref, named.length)
  if (!named[0]) throw noSuch('security group', ref)
  return named[0]
}

/** A server by id, or by name when exactly one visible server has it (the API resolves both). */
export async function findServer(ctx: Context, ref: string): Promise<Server> {
  const s = await maybe(ctx.call(ServersClient, 'getServer', { id: ref }))
  if (!s) throw noSuch('server', ref)
  return s
}

/** A floating IP by id or by its address. */
export async function findFloatingIp(ctx: Context, ref: string): Promise<FloatingIp> {
  if (isUuidRef(ref)) {
    const byId = await maybe(ctx.call(FloatingIpsClient, 'getFloatingIp', { id: ref }))
    if (byId) return byId
  }
  const found = (await ctx.call(FloatingIpsClient, 'listFloatingIps', { floatingIpAddress: ref })).floatingIps ?? []
  if (!found[0]) throw noSuch('floating IP', ref, 'an address or ID')
  return found[0]
}

// ------------------------------------------------------------------ option values

/** `--property k=v` (repeatable) → { k: v }. */
export function keyValues(cmd: string, flag: string, values: string[]): Record<string, string> {
  const out: Record<string, string> = {}
  for (const v of values) {
    const eq = v.indexOf('=')
    if (eq <= 0) throw new UsageError(`strato ${cmd}: ${flag} '${v}' is not key=value`)
    out[v.slice(0, eq)] = v.slice(eq + 1)
  }
  return out
}

/**
 * `start=A,end=B` → { start: A, end: B }, checking the keys (openstackclient's
 * MultiKeyValueAction): every required key present, no unknown key.
 */
export function multiKeyValue(cmd: string, flag: string, value: string, required: string[], optional: string[] = []): Record<string, string> {
  const out: Record<string, string> = {}
  const allowed = [...required, ...optional]
  const shape = `${flag} ${[...required.map((k) => `${k}=<${k}>`), ...optional.map((k) => `[${k}=<${k}>]`)].join(',')}`
  for (const part of value.split(',')) {
    const eq = part.indexOf('=')
    const k = eq > 0 ? part.slice(0, eq) : ''
    if (!k || !allowed.includes(k)) throw new UsageError(`strato ${cmd}: ${flag} '${value}': expected ${shape}`)
    out[k] = part.slice(eq + 1)
  }
  const missing = required.filter((k) => out[k] === undefined || out[k] === '')
  if (missing.length) throw new UsageError(`strato ${cmd}: ${flag} '${value}' lacks ${missing.join(', ')}: expected ${shape}`)
  return out
}

/** An integer option, or undefined when not given; a non-integer is a usage error. */
export function intOpt(cmd: string, a: Args, dest: string, flag: string, min = 0): number | undefined {
  const v = a.str(dest)
  if (v === undefined) return undefined
  if (!/^-?\d+$/.test(v.trim()) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
    throw new UsageError(`strato ${cmd}: ${flag} must be an integer${min === 0 ? ' ≥ 0' : min === -1 ? ' (-1 for unlimited)' : ` ≥ ${min}`}, got '${v}'`)
  }
  return Number(v)
}

/** Refuses a value that is not one of `choices`, as argparse does. */
export function choice(cmd: string, flag: string, value: string, choices: readonly string[]): string {
  if (!choices.includes(value)) throw new UsageError(`strato ${cmd}: argument ${flag}: invalid choice: '${value}' (choose from ${choices.map((c) => `'${c}'`).join(', ')})`)
  return value
}

/** `2015-03-26T16:52:10Z`: the APIs print seconds, no fraction. */
export const iso = (d: Date | undefined): string | null => (d ? d.toISOString().replace(/\.\d+Z$/, 'Z') : null)

/** `2015-03-26T16:52:10.000000`: how Nova prints its database times (launched_at, a service's updated_at). */
export const novaTime = (d: Date | undefined): string | null => (d ? d.toISOString().replace(/\.(\d{3})Z$/, '.$1000') : null)

/** Expands a leading `~/` as the shell would (for paths given in quotes). */
export function expandHome(file: string, env: Record<string, string | undefined>): string {
  return file.startsWith('~/') && env.HOME ? env.HOME + file.slice(1) : file
}
