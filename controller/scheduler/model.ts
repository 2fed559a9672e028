/**
 * The scheduler's model (Placement semantics): a compute host is a resource
 * provider with inventories of standard resource classes; consumers (servers)
 * hold allocations against them. Filters and weighers see a {@link HostState}:
 * the provider with its usage, the host's capabilities and its service status.
 */

/** Standard resource classes a compute host provides. */
export const VCPU = 'VCPU'
export const MEMORY_MB = 'MEMORY_MB'
export const DISK_GB = 'DISK_GB'
export const STANDARD_CLASSES = [VCPU, MEMORY_MB, DISK_GB] as const

/** One resource class of a provider, as Placement's inventory record. */
export interface Inventory {
  total: number
  reserved: number
  minUnit: number
  maxUnit: number
  stepSize: number
  allocationRatio: number
}

/** Amounts per resource class. */
export type Resources = Record<string, number>

/** What may be allocated from an inventory in all: `(total − reserved) × allocation_ratio`. */
export function capacity(inv: Inventory): number {
  return (inv.total - inv.reserved) * inv.allocationRatio
}

/**
 * Why `amount` cannot be allocated from `inv` with `used` already allocated,
 * or undefined if it can (Placement's min_unit / max_unit / step_size and
 * capacity checks).
 */
export function allocationProblem(rc: string, inv: Inventory | undefined, used: number, amount: number): string | undefined {
  if (!inv) return `no ${rc} inventory`
  if (amount < inv.minUnit) return `${rc} ${amount} is below min_unit ${inv.minUnit}`
  if (amount > inv.maxUnit) return `${rc} ${amount} is above max_unit ${inv.maxUnit}`
  if (amount % inv.stepSize !== 0) return `${rc} ${amount} is not a multiple of step_size ${inv.stepSize}`
  const cap = capacity(inv)
  if (used + amount > cap) return `${rc}: ${used} of ${cap} used, ${amount} more requested`
  return undefined
}

/** Capabilities an agent reports for its host. */
export interface HostCapabilityInfo {
  cpuModel: string
  arch: string
  /** `kvm` or `tcg`. */
  accelerator: string
  /** Nova's hypervisor_type: `QEMU` or `fake`. */
  hypervisorType: string
  hypervisorVersion: string
}

/** A host as the scheduler sees it. */
export interface HostState {
  host: string
  /** Compute node uuid = resource provider uuid. */
  uuid: string
  availabilityZone: string
  mapped: boolean
  disabled: boolean
  disabledReason: string
  /** Derived from heartbeats when the state is taken. */
  up: boolean
  capabilities: HostCapabilityInfo
  traits: ReadonlySet<string>
  inventories: ReadonlyMap<string, Inventory>
  /** Allocated (committed and in-flight claims) per resource class. */
  usage: ReadonlyMap<string, number>
}

/** Free amount of a resource class on a host (capacity minus usage); 0 without inventory. */
export function freeOf(host: HostState, rc: string): number {
  const inv = host.inventories.get(rc)
  return inv ? capacity(inv) - (host.usage.get(rc) ?? 0) : 0
}

/** What to place: one consumer's resources and the constraints on its host. */
export interface RequestSpec {
  /** The consumer (server) uuid the allocation is recorded for. */
  instanceUuid: string
  projectId: string
  userId: string
  /** Resource class → amount, e.g. from the flavor: VCPU, MEMORY_MB, DISK_GB. */
  resources: Resources
  /** Only hosts in this zone. */
  availabilityZone?: string
  /** Only this host (a cloud admin's `ZONE:HOST`); filters still apply. */
  forceHost?: string
  /** The hosts whose volume backends can make the server's new volumes, and why (VolumeHostFilter); absent: any. */
  volumeHosts?: { hosts: string[]; why: string }
  /** Image properties (Glance), e.g. `hw_architecture`, `img_hv_type`. */
  imageProperties?: Record<string, string>
  /** Traits the host must have. */
  requiredTraits?: string[]
  /** Traits the host must not have. */
  forbiddenTraits?: string[]
  /** The server group the server joins (Nova's `group` scheduler hint). */
  group?: GroupSpec
  /** The server's networks of type `local`, each with the hosts its ports are bound to (those placed earlier in the same request included). */
  localNetworks?: LocalNetworkSpec[]
}

/** A network that is a bridge per host, not connected across hosts, and where it already lives. */
export interface LocalNetworkSpec {
  networkId: string
  hosts: string[]
}

/** A server group as the scheduler needs it: its policy and where its members run. */
export interface GroupSpec {
  id: string
  policy: 'affinity' | 'anti-affinity' | 'soft-affinity' | 'soft-anti-affinity'
  /** anti-affinity: members one host may hold. */
  maxServerPerHost: number
  /** Hosts of the members, once per member (those placed earlier in the same request included). */
  memberHosts: string[]
}

/** How many members of the request's group run on `host`. */
export function groupMembersOn(spec: RequestSpec, host: string): number {
  let n = 0
  for (const h of spec.group?.memberHosts ?? []) if (h === host) n++
  return n
}

/**
 * A host filter (nova `filters/*.py`): one per file, enabled by name in
 * `scheduler.enabledFilters`, applied in that order after the placement
 * capacity step. Pure: no I/O, no mutation.
 */
export interface HostFilter {
  /** The name config lists use, e.g. `AvailabilityZoneFilter`. */
  readonly name: string
  hostPasses(host: HostState, spec: RequestSpec): boolean
  /** What the filter asked of hosts for this request, for NoValidHost messages, e.g. `az=nova2`. */
  describe?(spec: RequestSpec): string | undefined
  /** Why a host failed, for NoValidHost messages, e.g. `disabled: maintenance`. */
  reason?(host: HostState, spec: RequestSpec): string
}

/**
 * A host weigher (nova `weights/*.py`): one per file, enabled by name in
 * `scheduler.weighers`. Raw weights are normalised to [0, 1] across the
 * candidates and summed with their multipliers; higher wins. A positive
 * multiplier spreads (prefers the emptiest host), a negative one packs.
 */
export interface HostWeigher {
  readonly name: string
  /** false: not a resource weigher, so `strategy: pack` does not reverse it. @default true */
  readonly resource?: boolean
  weigh(host: HostState, spec: RequestSpec): number
}
