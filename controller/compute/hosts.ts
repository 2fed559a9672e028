/**
 * Compute hosts (Nova services + cells v2 host mappings). An agent announces
 * its host with capabilities and inventory; the host and its resource
 * provider are recorded at once but the host is NOT schedulable until it is
 * mapped — by DiscoverHosts (`nova-manage cell_v2 discover_hosts`), or
 * automatically every `discoverIntervalMs` when configured (Nova's
 * `discover_hosts_in_cells_interval`, off by default). Heartbeats mark hosts
 * up; a host is down after `missedHeartbeats` intervals without one.
 * Operators disable hosts with a reason.
 *
 * Heartbeats reach one controller (the agents' events are shared by a queue
 * of controllers), so up/down is judged from the database: the controller
 * that receives a heartbeat records it (at most once per host per
 * `heartbeatWriteMs`), and every controller reads the recent ones on a timer,
 * and with each host it lists. The same read notices hosts other controllers
 * announced, mapped or disabled, and invalidates the scheduler's cache.
 */
import { isIP } from 'node:net'
import { Conflict, InvalidArgument, NotFound } from '../../proto/errors.js'
import { isUuid } from '../../proto/ids.js'
import type { Db } from '../store/db.js'
import type { ComputeHostTable } from '../store/schema.js'
import { checkText } from '../identity/validate.js'
import { DISK_GB, MEMORY_MB, VCPU, type Inventory } from '../scheduler/model.js'
import type { Placement } from '../scheduler/placement.js'
import type { HostLiveness } from '../scheduler/scheduler.js'

export interface HostsConfig {
  /** Map waiting hosts automatically every N ms; -1 never (Nova `discover_hosts_in_cells_interval` = -1). @default -1 */
  discoverIntervalMs: number
  /** How often agents send heartbeats (told to them when they announce). @default 10000 */
  heartbeatIntervalMs: number
  /** A host is down after this many intervals without a heartbeat (Nova `service_down_time` = 60 s ≈ 6 × 10 s). @default 6 */
  missedHeartbeats: number
  /** Zone of hosts that announce none (Nova `default_availability_zone`). @default `nova` */
  defaultAvailabilityZone: string
  /** Initial allocation ratios (Nova since Antelope). @default { VCPU: 4, MEMORY_MB: 1, DISK_GB: 1 } */
  allocationRatios: Record<string, number>
  /** Kept for the host itself (Nova `reserved_host_memory_mb` = 512 …). @default { VCPU: 0, MEMORY_MB: 512, DISK_GB: 0 } */
  reserved: Record<string, number>
  /** How long a cast an agent took without acking waits before it is delivered again (the agent died). @default 30000 */
  castAckWaitMs: number
  /**
   * A host's heartbeats are written to the database at most this often (the
   * others only update this controller's memory); every controller reads
   * them back as often. Capped at a third of the down time
   * (heartbeatIntervalMs × missedHeartbeats), so no controller ever sees a
   * live host as down. @default 5000
   */
  heartbeatWriteMs: number
}

/** What an agent says about its host. */
export interface HostAnnouncement {
  host: string
  uuid: string
  availabilityZone?: string
  /** The agent runs the L3 role (router namespaces). @default true */
  l3?: boolean
  capabilities: {
    cpuModel: string
    arch: string
    vcpus: number
    memoryMb: number
    diskGb: number
    accelerator: string
    hypervisorType: string
    hypervisorVersion: string
    /** '' when the agent reports none. */
    hostIp: string
  }
}

export interface HostView {
  host: string
  id: string
  availabilityZone: string
  status: 'enabled' | 'disabled'
  state: 'up' | 'down'
  disabledReason: string
  mapped: boolean
  capabilities: HostAnnouncement['capabilities']
  lastHeartbeatAt: Date | undefined
  createdAt: Date
}

export interface DiscoverResult {
  lines: string[]
  mapped: HostView[]
}

/** DNS host names: labels of letters, digits and hyphens. No '_' so subjects can use it for '.'. */
const HOST_RE = /^(?=.{1,255}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

export function checkHostName(host: string | undefined, field = 'host'): string {
  if (!host || !HOST_RE.test(host)) throw new InvalidArgument(`host name '${host ?? ''}' must be a DNS name (letters, digits, hyphens, dots)`, { field })
  return host
}

/** Standard trait names for what a host reports (os-traits). */
function traitsOf(c: HostAnnouncement['capabilities']): string[] {
  const t = [`CUSTOM_ARCH_${c.arch.toUpperCase().replace(/[^A-Z0-9_]/g, '_')}`]
  if (c.accelerator === 'kvm') t.push('COMPUTE_ACCELERATOR_KVM')
  return t
}

export class HostRegistry implements HostLiveness {
  /** Last heartbeat (or announce) per host, ms since the epoch. */
  private readonly seen = new Map<string, number>()
  /** The heartbeat of each host last written to the database here, ms since the epoch. */
  private readonly written = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined
  private livenessTimer: NodeJS.Timeout | undefined
  /** What the last read of compute_hosts saw change (count, announces and updates, mappings). */
  private hostsSignature: string | undefined
  private readingLiveness: Promise<void> | undefined
  /** Called after any change the scheduler must see (its cache is invalidated). */
  onChange: () => void = () => {}

  constructor(
    private readonly db: Db,
    private readonly placement: Placement,
    private readonly config: HostsConfig,
    private readonly log?: { info(o: object, m: string): void; warn(o: object, m: string): void },
  ) {}

  /** Loads last heartbeats so a restarted controller judges up/down from what it knew. */
  async load(): Promise<void> {
    for (const r of await this.db.selectFrom('compute_hosts').select(['host', 'last_heartbeat_at']).execute()) {
      if (r.last_heartbeat_at) this.seen.set(r.host, Date.parse(r.last_heartbeat_at))
    }
    this.hostsSignature = await this.signature()
  }

  /** How often heartbeats are written, and read back (see HostsConfig.heartbeatWriteMs). */
  get heartbeatWriteMs(): number {
    return Math.max(1, Math.min(this.config.heartbeatWriteMs, Math.floor((this.config.heartbeatIntervalMs * this.config.missedHeartbeats) / 3)))
  }

  /**
   * Reads the heartbeats other controllers recorded within the down time,
   * and whether hosts were announced, mapped or changed through them (then
   * `onChange`: the scheduler reloads). Calls while one runs share it.
   */
  readLiveness(): Promise<void> {
    this.readingLiveness ??= (async () => {
      const since = new Date(Date.now() - this.config.heartbeatIntervalMs * this.config.missedHeartbeats).toISOString()
      for (const r of await this.db.selectFrom('compute_hosts').select(['host', 'last_heartbeat_at']).where('last_heartbeat_at', '>=', since).execute()) {
        this.saw(r.host, r.last_heartbeat_at)
      }
      const signature = await this.signature()
      if (signature !== this.hostsSignature) {
        this.hostsSignature = signature
        this.onChange()
      }
    })().finally(() => {
      this.readingLiveness = undefined
    })
    return this.readingLiveness
  }

  private async signature(): Promise<string> {
    const r = await this.db.selectFrom('compute_hosts').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.max('updated_at').as('updated'), eb.fn.max('mapped_at').as('mapped')]).executeTakeFirst()
    return `${Number(r?.n ?? 0)}|${r?.updated ?? ''}|${r?.mapped ?? ''}`
  }

  /** A heartbeat time read from the database: kept if newer than what this controller knew. */
  private saw(host: string, at: string | null): void {
    const t = at ? Date.parse(at) : NaN
    if (t > (this.seen.get(host) ?? 0)) this.seen.set(host, t)
  }

  /** Starts reading liveness from the database, and automatic discovery when configured. */
  start(): void {
    if (!this.livenessTimer) {
      this.livenessTimer = setInterval(() => {
        this.readLiveness().catch((err) => this.log?.warn({ err }, 'reading host heartbeats from the database failed; trying again'))
      }, this.heartbeatWriteMs)
      this.livenessTimer.unref()
    }
    if (this.config.discoverIntervalMs > 0 && !this.timer) {
      this.timer = setInterval(() => {
        this.discover().then(
          (r) => r.mapped.length && this.log?.info({ mapped: r.mapped.map((h) => h.host) }, 'hosts mapped automatically'),
          (err) => this.log?.warn({ err }, 'automatic host discovery failed'),
        )
      }, this.config.discoverIntervalMs)
      this.timer.unref()
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    if (this.livenessTimer) clearInterval(this.livenessTimer)
    this.timer = undefined
    this.livenessTimer = undefined
  }

  get heartbeatIntervalMs(): number {
    return this.config.heartbeatIntervalMs
  }

  isUp(host: string, at = Date.now()): boolean {
    const last = this.seen.get(host)
    return last !== undefined && at - last <= this.config.heartbeatIntervalMs * this.config.missedHeartbeats
  }

  /** Since when `host` counts as down (ms since the epoch): 0 when it was never seen, undefined while it is up. */
  downSince(host: string, at = Date.now()): number | undefined {
    if (this.isUp(host, at)) return undefined
    const last = this.seen.get(host)
    return last === undefined ? 0 : last + this.config.heartbeatIntervalMs * this.config.missedHeartbeats
  }

  /**
   * Records (or updates) a host and its resource provider from an agent's
   * announcement. Returns whether it is mapped.
   * @throws Conflict when the host name is known with another uuid.
   */
  async announce(a: HostAnnouncement): Promise<{ mapped: boolean }> {
    const host = checkHostName(a.host)
    if (!isUuid(a.uuid)) throw new InvalidArgument(`host uuid '${a.uuid}' must be a lower-case canonical uuid`, { field: 'uuid' })
    const c = a.capabilities
    for (const [field, v] of [['vcpus', c.vcpus], ['memory_mb', c.memoryMb], ['disk_gb', c.diskGb]] as const) {
      if (!Number.isInteger(v) || v < 0) throw new InvalidArgument(`capabilities.${field} must be a non-negative integer, got ${v}`, { field: `capabilities.${field}` })
    }
    if (c.hostIp && !isIP(c.hostIp)) throw new InvalidArgument(`capabilities.host_ip '${c.hostIp}' is not an IP address`, { field: 'capabilities.host_ip' })
    const az = a.availabilityZone || this.config.defaultAvailabilityZone
    const ts = new Date().toISOString()
    const inventory = (rc: string, total: number): Inventory => ({
      total,
      reserved: Math.min(this.config.reserved[rc] ?? 0, total),
      minUnit: 1,
      maxUnit: Math.max(total, 1),
      stepSize: 1,
      allocationRatio: this.config.allocationRatios[rc] ?? 1,
    })
    const mapped = await this.db.transaction().execute(async (trx) => {
      const byName = await trx.selectFrom('compute_hosts').select(['uuid', 'mapped']).where('host', '=', host).executeTakeFirst()
      if (byName && byName.uuid !== a.uuid) throw new Conflict(`host '${host}' is already registered with uuid ${byName.uuid}, not ${a.uuid}; an agent keeps its uuid across restarts`)
      const byUuid = await trx.selectFrom('compute_hosts').select('host').where('uuid', '=', a.uuid).executeTakeFirst()
      if (byUuid && byUuid.host !== host) throw new Conflict(`uuid ${a.uuid} already belongs to host '${byUuid.host}'`)
      await this.placement.setProvider(trx, {
        uuid: a.uuid,
        name: host,
        inventories: { [VCPU]: inventory(VCPU, c.vcpus), [MEMORY_MB]: inventory(MEMORY_MB, c.memoryMb), [DISK_GB]: inventory(DISK_GB, c.diskGb) },
        traits: traitsOf(c),
      })
      const fields = {
        availability_zone: az, cpu_model: c.cpuModel, arch: c.arch, accelerator: c.accelerator, hypervisor_type: c.hypervisorType,
        hypervisor_version: c.hypervisorVersion, host_ip: c.hostIp, vcpus: c.vcpus, memory_mb: c.memoryMb, disk_gb: c.diskGb, l3: a.l3 === false ? 0 : 1, last_heartbeat_at: ts, updated_at: ts,
      }
      if (byName) await trx.updateTable('compute_hosts').set(fields).where('host', '=', host).execute()
      else await trx.insertInto('compute_hosts').values({ host, uuid: a.uuid, ...fields, mapped: 0, mapped_at: null, disabled: 0, disabled_reason: '', created_at: ts }).execute()
      return byName?.mapped === 1
    })
    this.seen.set(host, Date.parse(ts))
    this.written.set(host, Date.parse(ts))
    this.onChange()
    return { mapped }
  }

  /**
   * A heartbeat from a host's agent. Unknown hosts are ignored (their agent
   * announces itself again on reconnect); returns whether the host is known.
   */
  async heartbeat(host: string, at = new Date()): Promise<boolean> {
    const t = at.getTime()
    const written = this.written.get(host)
    // Written recently enough for every controller to judge the host up: memory only.
    if (written !== undefined && t >= written && t - written < this.heartbeatWriteMs) {
      if (t > (this.seen.get(host) ?? 0)) this.seen.set(host, t)
      return true
    }
    // A host known here is up as of this beat however long the write waits for a connection
    // (a pool busy with transactions queued on a lock): this controller judges it up meanwhile.
    if (written !== undefined && t > (this.seen.get(host) ?? 0)) this.seen.set(host, t)
    const r = await this.db.updateTable('compute_hosts').set({ last_heartbeat_at: at.toISOString() }).where('host', '=', host).executeTakeFirst()
    if (Number(r.numUpdatedRows) === 0) {
      this.written.delete(host)
      return false
    }
    this.written.set(host, t)
    if (t > (this.seen.get(host) ?? 0)) this.seen.set(host, t)
    return true
  }

  /** Maps every waiting host, mirroring `nova-manage cell_v2 discover_hosts --verbose`. */
  async discover(): Promise<DiscoverResult> {
    const lines: string[] = []
    const mapped = await this.db.transaction().execute(async (trx) => {
      const waiting = await trx.selectFrom('compute_hosts').select(['host', 'uuid']).where('mapped', '=', 0).orderBy('host').execute()
      const ts = new Date().toISOString()
      lines.push(`Getting computes from cell 'cell1'`)
      const mapped: string[] = []
      for (const h of waiting) {
        lines.push(`Checking host mapping for compute host '${h.host}': ${h.uuid}`)
        // Claimed: another controller discovering at the same time maps it first (this update then waits for it and finds it mapped).
        const r = await trx.updateTable('compute_hosts').set({ mapped: 1, mapped_at: ts }).where('host', '=', h.host).where('mapped', '=', 0).executeTakeFirst()
        if (Number(r.numUpdatedRows) === 0) continue
        lines.push(`Creating host mapping for compute host '${h.host}': ${h.uuid}`)
        mapped.push(h.host)
      }
      lines.push(`Found ${mapped.length} unmapped computes in cell: cell1`)
      return mapped
    })
    if (mapped.length) this.onChange()
    const views = mapped.length ? (await this.list()).filter((h) => mapped.includes(h.host)) : []
    return { lines, mapped: views }
  }

  async list(f: { availabilityZone?: string; unmappedOnly?: boolean } = {}): Promise<HostView[]> {
    let q = this.db.selectFrom('compute_hosts').selectAll().orderBy('host')
    if (f.availabilityZone) q = q.where('availability_zone', '=', f.availabilityZone)
    if (f.unmappedOnly) q = q.where('mapped', '=', 0)
    return (await q.execute()).map((r) => this.view(r))
  }

  /** Whether a mapped host announces zone `name`. */
  async zoneExists(name: string): Promise<boolean> {
    return (await this.db.selectFrom('compute_hosts').select('host').where('availability_zone', '=', name).where('mapped', '=', 1).limit(1).executeTakeFirst()) !== undefined
  }

  /** The zones mapped hosts announce. */
  async zoneNames(): Promise<string[]> {
    return (await this.db.selectFrom('compute_hosts').select('availability_zone').distinct().where('mapped', '=', 1).execute()).map((r) => r.availability_zone)
  }

  async get(host: string): Promise<HostView> {
    const r = await this.db.selectFrom('compute_hosts').selectAll().where('host', '=', host).executeTakeFirst()
    if (!r) throw new NotFound(`no compute host '${host}'`, { field: 'host' })
    return this.view(r)
  }

  /** Enables or disables scheduling to a host; a disable keeps its reason, an enable clears it. */
  async update(host: string, u: { enabled?: boolean; disabledReason?: string }): Promise<HostView> {
    const reason = checkText('disabled_reason', u.disabledReason, 255)
    if (u.enabled === true && reason) throw new InvalidArgument('disabled_reason is only for disabling a host', { field: 'disabled_reason' })
    await this.get(host)
    const set = u.enabled === undefined ? (reason ? { disabled_reason: reason } : {}) : u.enabled ? { disabled: 0, disabled_reason: '' } : { disabled: 1, disabled_reason: reason }
    if (Object.keys(set).length) {
      await this.db.updateTable('compute_hosts').set({ ...set, updated_at: new Date().toISOString() }).where('host', '=', host).execute()
      this.onChange()
    }
    return this.get(host)
  }

  private view(r: ComputeHostTable): HostView {
    // A heartbeat another controller recorded counts at once.
    this.saw(r.host, r.last_heartbeat_at)
    return {
      host: r.host,
      id: r.uuid,
      availabilityZone: r.availability_zone,
      status: r.disabled ? 'disabled' : 'enabled',
      state: this.isUp(r.host) ? 'up' : 'down',
      disabledReason: r.disabled_reason,
      mapped: r.mapped === 1,
      capabilities: {
        cpuModel: r.cpu_model, arch: r.arch, vcpus: Number(r.vcpus), memoryMb: Number(r.memory_mb), diskGb: Number(r.disk_gb),
        accelerator: r.accelerator, hypervisorType: r.hypervisor_type, hypervisorVersion: r.hypervisor_version, hostIp: r.host_ip,
      },
      lastHeartbeatAt: r.last_heartbeat_at ? new Date(r.last_heartbeat_at) : undefined,
      createdAt: new Date(r.created_at),
    }
  }
}
