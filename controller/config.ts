/**
 * The controller's typed configuration, compiled once.
 *
 * Sources, later ones winning: built-in defaults, a JSON file (`STRATO_CONFIG`
 * or the `configFile` override), `STRATO_*` environment variables, then
 * explicit overrides (tests). This is the only file of the controller that
 * reads `process.env`.
 */
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { InvalidArgument } from '../proto/errors.js'
import { DEFAULT_LEASE_SECONDS } from '../proto/dhcp.js'
import type { SchedulerConfig } from './scheduler/scheduler.js'
import type { HostsConfig } from './compute/hosts.js'
import type { JoinTokensConfig } from './compute/join-tokens.js'
import type { ServersConfig } from './compute/server-model.js'

export interface ControllerConfig {
  /** Directory for the database, signing keys and other state. @default `./.strato/controller` */
  dataDir: string
  grpc: {
    /** @default `127.0.0.1` */
    host: string
    /** 0 picks a free port. @default 8770 */
    port: number
    /** Address clients are told to use (catalog, openrc). @default `host:port` as bound */
    publicAddress: string | null
  }
  /** `sqlite:PATH` (default `sqlite:<dataDir>/strato.db`) or `postgres://...` */
  databaseUrl: string
  /** NATS server URL; null runs without the message bus (identity-only tests). @default null */
  natsUrl: string | null
  token: {
    /** Token lifetime. @default 3600 */
    expirationSeconds: number
    /** Signing keys kept (primary + staged + secondaries), like Keystone's max_active_keys. @default 3 */
    maxActiveKeys: number
    /** Validated tokens remembered to skip signature checks (revocation is still checked). @default 100000 */
    cacheSize: number
  }
  bootstrap: {
    /** Where the first run writes the admin credentials (mode 0600). null: do not bootstrap. @default null */
    openrcPath: string | null
    /** @default `RegionOne` */
    region: string
    /** Name of the project whose admins are cloud admins. @default `admin` */
    adminProjectName: string
  }
  log: {
    /** @default `info` */
    level: string
    /** Human-readable lines instead of JSON. @default false */
    pretty: boolean
  }
  /** How long shutdown waits for in-flight calls before forcing. @default 10000 */
  shutdownGraceMs: number
  /** Neutron ML2 settings for provider networks. */
  network: {
    /** Physical networks flat and vlan networks may use (ML2 `flat_networks`). @default ['provider'] */
    physicalNetworks: string[]
    /** VLAN ids per physical network, inclusive [min, max] (ML2 `network_vlan_ranges`). @default { provider: [100, 4094] } */
    vlanRanges: Record<string, [number, number]>
    /** Lease time DHCP gives guests, in seconds (Neutron `dhcp_lease_duration`). @default 86400 */
    dhcpLeaseSeconds: number
  }
  /** Filters, weighers and claims; every field is documented with its default in `scheduler/scheduler.ts`. */
  scheduler: SchedulerConfig
  /** Host discovery, heartbeats, zones, allocation ratios; defaults documented in `compute/hosts.ts`. */
  hosts: HostsConfig
  /** Cast retries and agent call deadlines; defaults documented in `compute/server-model.ts`. */
  servers: Omit<ServersConfig, 'defaultAvailabilityZone'>
  /** Lifetimes of join tokens for new hosts; defaults documented in `compute/join-tokens.ts`. */
  joinTokens: JoinTokensConfig
}

export type ConfigOverrides = {
  [K in keyof ControllerConfig]?: ControllerConfig[K] extends object | null
    ? Partial<NonNullable<ControllerConfig[K]>> | ControllerConfig[K]
    : ControllerConfig[K]
} & { configFile?: string }

function intFrom(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined
  const n = Number(raw)
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgument(`${name} must be a non-negative integer, got '${raw}'`, { field: name })
  return n
}

function boolFrom(raw: string | undefined): boolean | undefined {
  if (raw === undefined || raw === '') return undefined
  return ['1', 'true', 'yes', 'on'].includes(raw.toLowerCase())
}

function merge<T extends object>(base: T, ...layers: Array<Partial<T> | undefined>): T {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) }
  for (const layer of layers) {
    if (!layer) continue
    for (const [k, v] of Object.entries(layer)) {
      if (v === undefined) continue
      const cur = out[k]
      out[k] = cur && typeof cur === 'object' && v && typeof v === 'object' && !Array.isArray(v) ? merge(cur as object, v as object) : v
    }
  }
  return out as T
}

export function loadConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): ControllerConfig {
  const fileName = overrides.configFile ?? env.STRATO_CONFIG
  let fromFile: Partial<ControllerConfig> = {}
  if (fileName) {
    try {
      fromFile = JSON.parse(readFileSync(fileName, 'utf8')) as Partial<ControllerConfig>
    } catch (err) {
      throw new InvalidArgument(`cannot read config file ${fileName}: ${(err as Error).message}`, { cause: err })
    }
  }
  const fromEnv: ConfigOverrides = {
    dataDir: env.STRATO_DATA_DIR || undefined,
    grpc: { host: env.STRATO_GRPC_HOST || undefined, port: intFrom('STRATO_GRPC_PORT', env.STRATO_GRPC_PORT), publicAddress: env.STRATO_PUBLIC_ADDRESS || undefined },
    databaseUrl: env.STRATO_DATABASE_URL || undefined,
    natsUrl: env.STRATO_NATS_URL || undefined,
    token: { expirationSeconds: intFrom('STRATO_TOKEN_EXPIRATION', env.STRATO_TOKEN_EXPIRATION) },
    bootstrap: { openrcPath: env.STRATO_OPENRC || undefined },
    log: { level: env.STRATO_LOG_LEVEL || undefined, pretty: boolFrom(env.STRATO_LOG_PRETTY) },
  }
  const defaults: ControllerConfig = {
    dataDir: path.resolve('.strato/controller'),
    grpc: { host: '127.0.0.1', port: 8770, publicAddress: null },
    databaseUrl: '',
    natsUrl: null,
    token: { expirationSeconds: 3600, maxActiveKeys: 3, cacheSize: 100_000 },
    bootstrap: { openrcPath: null, region: 'RegionOne', adminProjectName: 'admin' },
    log: { level: 'info', pretty: false },
    shutdownGraceMs: 10_000,
    network: { physicalNetworks: ['provider'], vlanRanges: { provider: [100, 4094] }, dhcpLeaseSeconds: DEFAULT_LEASE_SECONDS },
    scheduler: {
      enabledFilters: ['ComputeFilter', 'AvailabilityZoneFilter', 'ImagePropertiesFilter', 'ServerGroupAffinityFilter', 'ServerGroupAntiAffinityFilter'],
      weighers: ['RAMWeigher', 'CPUWeigher', 'DiskWeigher', 'ServerGroupSoftAffinityWeigher', 'ServerGroupSoftAntiAffinityWeigher'],
      strategy: 'spread',
      weightMultipliers: { RAMWeigher: 1, CPUWeigher: 1, DiskWeigher: 1, ServerGroupSoftAffinityWeigher: 1, ServerGroupSoftAntiAffinityWeigher: 1 },
      hostSubsetSize: 1,
      maxAttempts: 3,
    },
    hosts: {
      discoverIntervalMs: -1,
      heartbeatIntervalMs: 10_000,
      missedHeartbeats: 6,
      defaultAvailabilityZone: 'nova',
      allocationRatios: { VCPU: 4, MEMORY_MB: 1, DISK_GB: 1 },
      reserved: { VCPU: 0, MEMORY_MB: 512, DISK_GB: 0 },
      castAckWaitMs: 30_000,
    },
    servers: { castRetryMs: 2_000, agentCallTimeoutMs: 10_000 },
    joinTokens: { defaultTtlMs: 3_600_000, maxTtlMs: 7 * 86_400_000 },
  }
  const { configFile: _ignored, ...rest } = overrides
  const cfg = merge(defaults, fromFile, fromEnv as Partial<ControllerConfig>, rest as Partial<ControllerConfig>)
  cfg.dataDir = path.resolve(cfg.dataDir)
  if (!cfg.databaseUrl) cfg.databaseUrl = `sqlite:${path.join(cfg.dataDir, 'strato.db')}`
  if (cfg.token.expirationSeconds < 1) throw new InvalidArgument('token.expirationSeconds must be at least 1', { field: 'token.expirationSeconds' })
  // A configured range map replaces the default one instead of merging into it.
  const ranges = (rest as Partial<ControllerConfig>).network?.vlanRanges ?? fromFile.network?.vlanRanges
  if (ranges) cfg.network.vlanRanges = ranges
  for (const [physnet, range] of Object.entries(cfg.network.vlanRanges)) {
    const field = `network.vlanRanges.${physnet}`
    if (!cfg.network.physicalNetworks.includes(physnet)) throw new InvalidArgument(`${field}: '${physnet}' is not in network.physicalNetworks`, { field })
    const [min, max] = range
    if (!Number.isInteger(min) || !Number.isInteger(max) || min < 1 || max > 4094 || min > max) throw new InvalidArgument(`${field} must be [min, max] with 1 <= min <= max <= 4094, got ${JSON.stringify(range)}`, { field })
  }
  if (!Number.isInteger(cfg.network.dhcpLeaseSeconds) || cfg.network.dhcpLeaseSeconds < 120) throw new InvalidArgument(`network.dhcpLeaseSeconds must be an integer ≥ 120 (dnsmasq's minimum lease), got ${cfg.network.dhcpLeaseSeconds}`, { field: 'network.dhcpLeaseSeconds' })
  if (cfg.scheduler.strategy !== 'spread' && cfg.scheduler.strategy !== 'pack') throw new InvalidArgument(`scheduler.strategy must be spread or pack, got '${String(cfg.scheduler.strategy)}'`, { field: 'scheduler.strategy' })
  if (!Number.isInteger(cfg.scheduler.hostSubsetSize) || cfg.scheduler.hostSubsetSize < 1) throw new InvalidArgument('scheduler.hostSubsetSize must be an integer ≥ 1', { field: 'scheduler.hostSubsetSize' })
  if (!Number.isInteger(cfg.scheduler.maxAttempts) || cfg.scheduler.maxAttempts < 1) throw new InvalidArgument('scheduler.maxAttempts must be an integer ≥ 1', { field: 'scheduler.maxAttempts' })
  if (cfg.hosts.heartbeatIntervalMs < 1 || cfg.hosts.missedHeartbeats < 1) throw new InvalidArgument('hosts.heartbeatIntervalMs and hosts.missedHeartbeats must be ≥ 1', { field: 'hosts.heartbeatIntervalMs' })
  for (const [rc, ratio] of Object.entries(cfg.hosts.allocationRatios)) {
    if (!(ratio > 0)) throw new InvalidArgument(`hosts.allocationRatios.${rc} must be > 0, got ${ratio}`, { field: `hosts.allocationRatios.${rc}` })
  }
  if (cfg.token.maxActiveKeys < 2) throw new InvalidArgument('token.maxActiveKeys must be at least 2 (a primary and a staged key)', { field: 'token.maxActiveKeys' })
  return cfg
}
