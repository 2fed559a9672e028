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
import { parseNatsUrls } from '../proto/nats-urls.js'
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
    /**
     * The server pings every connection this often; one that does not answer
     * within keepaliveTimeoutMs is closed. This is also what frees connections
     * HTTP/2 gave up on (a header block over nghttp2's 64 KiB field limit gets
     * GOAWAY, and Node then stops reading without closing the socket).
     * @default 30000
     */
    keepaliveTimeMs: number
    /** @default 10000 */
    keepaliveTimeoutMs: number
    /** Connections without a call for this long are closed (clients reconnect when they need to). @default 300000 */
    maxConnectionIdleMs: number
    /** A client stream (image upload) that sends nothing for this long is aborted; the image goes back to queued. @default 60000 */
    uploadIdleTimeoutMs: number
    /** Image uploads receiving at once; more wait (unread, so HTTP/2 flow control holds their senders) for a turn. Each one receiving holds the image store's batches and native stage; on 2 cores two already keep the digests busy. @default 2 */
    maxConcurrentUploads: number
  }
  /**
   * The OpenStack REST APIs (controller/rest/): one listener, paths per
   * service as DevStack has them (`/identity/v3`, `/compute/v2.1`, `/image`,
   * `/network`, `/volume/v3`, `/placement`). It speaks TLS whenever the gRPC
   * listener does, with the same certificate.
   */
  rest: {
    /** @default the gRPC listen host. `STRATO_REST_HOST` */
    host: string | null
    /** 0 picks a free port; null serves no REST. `STRATO_REST_PORT` @default 8771 */
    port: number | null
    /** The URL clients are told (catalog, clouds.yaml), e.g. `https://cloud.example:8771`. `STRATO_REST_PUBLIC_URL` @default as bound */
    publicUrl: string | null
  }
  /**
   * TLS on the gRPC listener. With no files given, the controller keeps its
   * own CA in `dir` (made on first start) and issues itself a certificate for
   * localhost, 127.0.0.1, ::1, the host name, the listen and public addresses
   * and `names`; clients trust `<dir>/ca.pem` (admin-openrc's OS_CACERT).
   */
  tls: {
    /**
     * `on`, or `off` for plaintext: allowed only when the listen address is
     * loopback, and even then any local user can read the traffic (tokens,
     * passwords). `STRATO_TLS` @default on
     */
    mode: 'on' | 'off'
    /** The operator's certificate (PEM, chain allowed); with keyFile, used instead of a generated one. `STRATO_TLS_CERT_FILE` @default null */
    certFile: string | null
    /** Its key (PEM). `STRATO_TLS_KEY_FILE` @default null */
    keyFile: string | null
    /** The CA clients should trust, written to admin-openrc as OS_CACERT. `STRATO_TLS_CA_FILE` @default `<dir>/ca.pem` when generated */
    caFile: string | null
    /** More DNS names or IPs for the generated certificate. `STRATO_TLS_NAMES` (comma-separated) @default [] */
    names: string[]
    /** Where the generated CA and certificate live (0700). @default `<dataDir>/tls` */
    dir: string
  }
  /** `sqlite:PATH` (default `sqlite:<dataDir>/strato.db`) or `postgres://...` */
  databaseUrl: string
  /**
   * NATS server URLs, comma-separated (the nodes of a NATS cluster; the
   * connection fails over between them), all `nats://` or all `tls://`;
   * null runs without the message bus (identity-only tests). `STRATO_NATS_URL` @default null
   */
  natsUrl: string | null
  /**
   * Replicas of the JetStream streams (casts, events) and their consumers:
   * 3 keeps them through the loss of one node of a 3-node cluster. Must not
   * exceed the cluster's size (JetStream refuses the stream).
   * `STRATO_NATS_STREAM_REPLICAS` @default 3 when natsUrl lists more than one server, else 1
   */
  natsStreamReplicas: number
  /**
   * The controller's NATS credentials (a `.creds` file: user JWT + seed, mode
   * 0600, made by bus/credentials.ts); null connects without (a server with no
   * auth: only tests of other areas). `STRATO_NATS_CREDS` @default null
   */
  natsCredsFile: string | null
  /**
   * The CA nats-server's certificate is checked against; set, the controller
   * (and the agents it admits) speak TLS to NATS. `STRATO_NATS_CA_FILE` @default null
   */
  natsCaFile: string | null
  /**
   * The NATS operator and account keys (bus/credentials.ts `ensureOperator`):
   * set, the controller can sign bus credentials for hosts that join with a
   * join token (Hosts/JoinHost); null, no host can join. `STRATO_NATS_OPERATOR_DIR` @default null
   */
  natsOperatorDir: string | null
  /** The NATS URLs joining hosts are told to use (comma-separated in `STRATO_NATS_ADVERTISE_URLS`). @default [natsUrl] */
  natsAdvertiseUrls: string[]
  token: {
    /** Token lifetime. @default 3600 */
    expirationSeconds: number
    /** Signing keys kept (primary + staged + secondaries), like Keystone's max_active_keys. @default 3 */
    maxActiveKeys: number
    /** Validated tokens remembered to skip signature checks (revocation is still checked). @default 100000 */
    cacheSize: number
    /** Lifetime of the image-read tokens in build specs (one image, one host); a host that needs longer asks again. @default 600 */
    imageReadSeconds: number
    /**
     * How often the revocation events and signing keys other controllers on
     * the same database recorded are read again (they also announce them on
     * NATS, which takes effect at once; this covers a lost message). 0: never. @default 2000
     */
    revocationPollMs: number
  }
  bootstrap: {
    /** Where the first run writes the admin credentials (mode 0600). null: do not bootstrap. @default null */
    openrcPath: string | null
    /** @default `RegionOne` */
    region: string
    /** Name of the project whose admins are cloud admins. @default `admin` */
    adminProjectName: string
    /**
     * Keystone's behaviour when `admin_project_name` is unset: the admin role
     * on ANY project makes a cloud admin. Unsafe where projects have their
     * own admins; it exists for Tempest, whose dynamic credentials make its
     * "admin" an admin of a fresh project (`npm run test:tempest` sets it).
     * `STRATO_ANY_PROJECT_ADMIN` @default false
     */
    anyProjectAdmin: boolean
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
    /**
     * The types a project's own network gets, first that can be had (ML2
     * `tenant_network_types`): `local` (a bridge per network per host, not
     * connected across hosts) or `vlan` (a VLAN id from vlanRanges). This
     * kernel has no VXLAN, VLAN or GRE devices, hence `local`. @default ['local']
     */
    tenantNetworkTypes: Array<'local' | 'vlan'>
    /**
     * A router is moved off its L3 agent once the agent has been down for
     * longer than this (Neutron's `allow_automatic_l3agent_failover`). @default 60000
     */
    routerRescheduleAfterMs: number
  }
  /** Filters, weighers and claims; every field is documented with its default in `scheduler/scheduler.ts`. */
  scheduler: SchedulerConfig
  /** Host discovery, heartbeats, zones, allocation ratios; defaults documented in `compute/hosts.ts`. */
  hosts: HostsConfig
  /** Cast retries and agent call deadlines; defaults documented in `compute/server-model.ts`. */
  servers: Omit<ServersConfig, 'defaultAvailabilityZone'>
  /** Lifetimes of join tokens for new hosts; defaults documented in `compute/join-tokens.ts`. */
  joinTokens: JoinTokensConfig
  volumes: {
    /**
     * How long volume work (create, delete, extend, snapshots; attach and
     * detach on a server's host) may wait on a host that is down before the
     * volume is given a stable status (error, or the attach or detach
     * failed) with a reason naming the host (its work comes again if the
     * agent returns, and is then ignored). @default 600000
     */
    stuckAfterMs: number
  }
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
    rest: {
      host: env.STRATO_REST_HOST || undefined,
      port: env.STRATO_REST_PORT === 'off' ? null : intFrom('STRATO_REST_PORT', env.STRATO_REST_PORT),
      publicUrl: env.STRATO_REST_PUBLIC_URL || undefined,
    },
    tls: {
      mode: (env.STRATO_TLS || undefined) as ControllerConfig['tls']['mode'] | undefined,
      certFile: env.STRATO_TLS_CERT_FILE || undefined,
      keyFile: env.STRATO_TLS_KEY_FILE || undefined,
      caFile: env.STRATO_TLS_CA_FILE || undefined,
      names: env.STRATO_TLS_NAMES ? env.STRATO_TLS_NAMES.split(',').map((n) => n.trim()).filter(Boolean) : undefined,
    },
    databaseUrl: env.STRATO_DATABASE_URL || undefined,
    natsUrl: env.STRATO_NATS_URL || undefined,
    natsStreamReplicas: intFrom('STRATO_NATS_STREAM_REPLICAS', env.STRATO_NATS_STREAM_REPLICAS),
    natsCredsFile: env.STRATO_NATS_CREDS || undefined,
    natsCaFile: env.STRATO_NATS_CA_FILE || undefined,
    natsOperatorDir: env.STRATO_NATS_OPERATOR_DIR || undefined,
    natsAdvertiseUrls: env.STRATO_NATS_ADVERTISE_URLS ? env.STRATO_NATS_ADVERTISE_URLS.split(',').map((u) => u.trim()).filter(Boolean) : undefined,
    token: { expirationSeconds: intFrom('STRATO_TOKEN_EXPIRATION', env.STRATO_TOKEN_EXPIRATION) },
    bootstrap: { openrcPath: env.STRATO_OPENRC || undefined, anyProjectAdmin: boolFrom(env.STRATO_ANY_PROJECT_ADMIN) },
    log: { level: env.STRATO_LOG_LEVEL || undefined, pretty: boolFrom(env.STRATO_LOG_PRETTY) },
  }
  const defaults: ControllerConfig = {
    dataDir: path.resolve('.strato/controller'),
    grpc: { host: '127.0.0.1', port: 8770, publicAddress: null, keepaliveTimeMs: 30_000, keepaliveTimeoutMs: 10_000, maxConnectionIdleMs: 300_000, uploadIdleTimeoutMs: 60_000, maxConcurrentUploads: 2 },
    rest: { host: null, port: 8771, publicUrl: null },
    tls: { mode: 'on', certFile: null, keyFile: null, caFile: null, names: [], dir: '' },
    databaseUrl: '',
    natsUrl: null,
    natsStreamReplicas: 0,
    natsCredsFile: null,
    natsCaFile: null,
    natsOperatorDir: null,
    natsAdvertiseUrls: [],
    token: { expirationSeconds: 3600, maxActiveKeys: 3, cacheSize: 100_000, imageReadSeconds: 600, revocationPollMs: 2000 },
    bootstrap: { openrcPath: null, region: 'RegionOne', adminProjectName: 'admin', anyProjectAdmin: false },
    log: { level: 'info', pretty: false },
    shutdownGraceMs: 10_000,
    network: { physicalNetworks: ['provider'], vlanRanges: { provider: [100, 4094] }, dhcpLeaseSeconds: DEFAULT_LEASE_SECONDS, tenantNetworkTypes: ['local'], routerRescheduleAfterMs: 60_000 },
    scheduler: {
      enabledFilters: ['ComputeFilter', 'AvailabilityZoneFilter', 'ImagePropertiesFilter', 'ServerGroupAffinityFilter', 'ServerGroupAntiAffinityFilter', 'LocalNetworkFilter', 'VolumeHostFilter'],
      weighers: ['RAMWeigher', 'CPUWeigher', 'DiskWeigher', 'ServerGroupSoftAffinityWeigher', 'ServerGroupSoftAntiAffinityWeigher'],
      strategy: 'spread',
      weightMultipliers: { RAMWeigher: 1, CPUWeigher: 1, DiskWeigher: 1, ServerGroupSoftAffinityWeigher: 1, ServerGroupSoftAntiAffinityWeigher: 1 },
      hostSubsetSize: 1,
      maxAttempts: 3,
      maxPlacementResults: 1000,
      windowOffset: Math.random(),
    },
    hosts: {
      discoverIntervalMs: -1,
      heartbeatIntervalMs: 10_000,
      missedHeartbeats: 6,
      defaultAvailabilityZone: 'nova',
      allocationRatios: { VCPU: 4, MEMORY_MB: 1, DISK_GB: 1 },
      reserved: { VCPU: 0, MEMORY_MB: 512, DISK_GB: 0 },
      castAckWaitMs: 30_000,
      heartbeatWriteMs: 5_000,
    },
    servers: { castRetryMs: 2_000, agentCallTimeoutMs: 10_000, orphanAllocationGraceMs: 60_000 },
    joinTokens: { defaultTtlMs: 3_600_000, maxTtlMs: 7 * 86_400_000 },
    volumes: { stuckAfterMs: 600_000 },
  }
  const { configFile: _ignored, ...rest } = overrides
  const cfg = merge(defaults, fromFile, fromEnv as Partial<ControllerConfig>, rest as Partial<ControllerConfig>)
  cfg.dataDir = path.resolve(cfg.dataDir)
  if (!cfg.databaseUrl) cfg.databaseUrl = `sqlite:${path.join(cfg.dataDir, 'strato.db')}`
  checkTls(cfg)
  checkNats(cfg)
  if (cfg.token.expirationSeconds < 1) throw new InvalidArgument('token.expirationSeconds must be at least 1', { field: 'token.expirationSeconds' })
  if (!Number.isInteger(cfg.token.imageReadSeconds) || cfg.token.imageReadSeconds < 1) throw new InvalidArgument(`token.imageReadSeconds must be an integer ≥ 1, got ${cfg.token.imageReadSeconds}`, { field: 'token.imageReadSeconds' })
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
  const types = cfg.network.tenantNetworkTypes
  if (!Array.isArray(types) || types.length === 0 || types.some((t) => t !== 'local' && t !== 'vlan')) {
    throw new InvalidArgument(`network.tenantNetworkTypes must be a non-empty list of local and vlan (this kernel has no VXLAN or GRE devices), got ${JSON.stringify(types)}`, { field: 'network.tenantNetworkTypes' })
  }
  if (!Number.isInteger(cfg.network.routerRescheduleAfterMs) || cfg.network.routerRescheduleAfterMs < 0) throw new InvalidArgument(`network.routerRescheduleAfterMs must be an integer ≥ 0, got ${cfg.network.routerRescheduleAfterMs}`, { field: 'network.routerRescheduleAfterMs' })
  if (cfg.scheduler.strategy !== 'spread' && cfg.scheduler.strategy !== 'pack') throw new InvalidArgument(`scheduler.strategy must be spread or pack, got '${String(cfg.scheduler.strategy)}'`, { field: 'scheduler.strategy' })
  if (!Number.isInteger(cfg.scheduler.hostSubsetSize) || cfg.scheduler.hostSubsetSize < 1) throw new InvalidArgument('scheduler.hostSubsetSize must be an integer ≥ 1', { field: 'scheduler.hostSubsetSize' })
  if (!Number.isInteger(cfg.scheduler.maxAttempts) || cfg.scheduler.maxAttempts < 1) throw new InvalidArgument('scheduler.maxAttempts must be an integer ≥ 1', { field: 'scheduler.maxAttempts' })
  if (!Number.isInteger(cfg.scheduler.maxPlacementResults) || cfg.scheduler.maxPlacementResults < 1) throw new InvalidArgument(`scheduler.maxPlacementResults must be an integer ≥ 1, got ${cfg.scheduler.maxPlacementResults}`, { field: 'scheduler.maxPlacementResults' })
  if (typeof cfg.scheduler.windowOffset !== 'number' || !(cfg.scheduler.windowOffset >= 0 && cfg.scheduler.windowOffset < 1)) throw new InvalidArgument(`scheduler.windowOffset must be a number in [0, 1) (a fraction of the host list), got ${cfg.scheduler.windowOffset}`, { field: 'scheduler.windowOffset' })
  if (!Number.isInteger(cfg.servers.orphanAllocationGraceMs) || cfg.servers.orphanAllocationGraceMs < 0) throw new InvalidArgument(`servers.orphanAllocationGraceMs must be an integer ≥ 0, got ${cfg.servers.orphanAllocationGraceMs}`, { field: 'servers.orphanAllocationGraceMs' })
  if (!Number.isInteger(cfg.hosts.heartbeatWriteMs) || cfg.hosts.heartbeatWriteMs < 1) throw new InvalidArgument(`hosts.heartbeatWriteMs must be an integer ≥ 1, got ${cfg.hosts.heartbeatWriteMs}`, { field: 'hosts.heartbeatWriteMs' })
  if (cfg.hosts.heartbeatIntervalMs < 1 || cfg.hosts.missedHeartbeats < 1) throw new InvalidArgument('hosts.heartbeatIntervalMs and hosts.missedHeartbeats must be ≥ 1', { field: 'hosts.heartbeatIntervalMs' })
  for (const [rc, ratio] of Object.entries(cfg.hosts.allocationRatios)) {
    if (!(ratio > 0)) throw new InvalidArgument(`hosts.allocationRatios.${rc} must be > 0, got ${ratio}`, { field: `hosts.allocationRatios.${rc}` })
  }
  for (const k of ['keepaliveTimeMs', 'keepaliveTimeoutMs', 'maxConnectionIdleMs', 'uploadIdleTimeoutMs', 'maxConcurrentUploads'] as const) {
    if (!Number.isInteger(cfg.grpc[k]) || cfg.grpc[k] < 1) throw new InvalidArgument(`grpc.${k} must be an integer ≥ 1, got ${cfg.grpc[k]}`, { field: `grpc.${k}` })
  }
  if (!Number.isInteger(cfg.token.revocationPollMs) || cfg.token.revocationPollMs < 0) throw new InvalidArgument(`token.revocationPollMs must be an integer ≥ 0 (0: never poll), got ${cfg.token.revocationPollMs}`, { field: 'token.revocationPollMs' })
  if (cfg.token.maxActiveKeys < 2) throw new InvalidArgument('token.maxActiveKeys must be at least 2 (a primary and a staged key)', { field: 'token.maxActiveKeys' })
  return cfg
}

function checkNats(cfg: ControllerConfig): void {
  // Checked here, so a bad list stops the controller before it opens anything.
  const servers = cfg.natsUrl ? parseNatsUrls(cfg.natsUrl).servers : []
  // 0: not configured (the default follows the list).
  if (!cfg.natsStreamReplicas) cfg.natsStreamReplicas = servers.length > 1 ? 3 : 1
  const r = cfg.natsStreamReplicas
  // JetStream's own bounds: 1 to 5 replicas.
  if (!Number.isInteger(r) || r < 1 || r > 5) throw new InvalidArgument(`natsStreamReplicas (STRATO_NATS_STREAM_REPLICAS) must be an integer from 1 to 5 (JetStream's limits), got ${r}`, { field: 'natsStreamReplicas' })
}

/** 127.0.0.0/8, ::1, localhost: addresses only this machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase()
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\./.test(h)
}

function checkTls(cfg: ControllerConfig): void {
  const tls = cfg.tls
  if (tls.mode !== 'on' && tls.mode !== 'off') throw new InvalidArgument(`tls.mode (STRATO_TLS) must be on or off, got '${String(tls.mode)}'`, { field: 'tls.mode' })
  if (tls.mode === 'off' && !isLoopback(cfg.grpc.host)) {
    throw new InvalidArgument(
      `refusing plaintext gRPC on ${cfg.grpc.host}: it is not a loopback address, so tokens and passwords would cross the network in the clear; set tls.mode (STRATO_TLS) to on, or listen on 127.0.0.1`,
      { field: 'tls.mode' },
    )
  }
  const restHost = cfg.rest.host ?? cfg.grpc.host
  if (tls.mode === 'off' && cfg.rest.port !== null && !isLoopback(restHost)) {
    throw new InvalidArgument(`refusing plaintext REST on ${restHost}: it is not a loopback address, so tokens and passwords would cross the network in the clear; set tls.mode (STRATO_TLS) to on, or listen on 127.0.0.1`, { field: 'tls.mode' })
  }
  if (Boolean(tls.certFile) !== Boolean(tls.keyFile)) throw new InvalidArgument('tls.certFile (STRATO_TLS_CERT_FILE) and tls.keyFile (STRATO_TLS_KEY_FILE) go together: give both, or neither to use the generated certificate', { field: tls.certFile ? 'tls.keyFile' : 'tls.certFile' })
  for (const f of ['certFile', 'keyFile', 'caFile'] as const) if (tls[f]) tls[f] = path.resolve(tls[f]!)
  tls.dir = path.resolve(tls.dir || path.join(cfg.dataDir, 'tls'))
  if (!tls.certFile && !tls.caFile) tls.caFile = path.join(tls.dir, 'ca.pem')
}
