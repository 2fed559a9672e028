/**
 * The agent's typed configuration, compiled once. Sources, later ones
 * winning: defaults, `STRATO_AGENT_*` environment variables, explicit
 * overrides (tests). This is the only file of the agent that reads `process.env`.
 */
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { hostname, networkInterfaces } from 'node:os'
import { isIP } from 'node:net'
import path from 'node:path'
import { InvalidArgument } from '../proto/errors.js'
import { JOIN_STATE_FILE, type JoinState } from './join-state.js'
import { readCredsFile } from '../proto/nats-creds.js'
import { parseGrpcUrl } from '../proto/grpc-url.js'
import { parseNatsUrls, type NatsServers } from '../proto/nats-urls.js'
import { writePrivateFile } from '../proto/private-file.js'

/** The NATS URL list's parser lives in proto/ (the controller reads the same lists). */
export { parseNatsUrls, type NatsServers }

export interface AgentConfig {
  /** Host name announced to the controller (a DNS name). @default os.hostname() */
  host: string
  /** Compute node uuid; when null, read from (or created in) `<stateDir>/compute_id`, like nova's compute_id file. @default null */
  uuid: string | null
  /**
   * NATS server URLs, comma-separated: `nats://host:port` (or `host:port`) in
   * plaintext, or `tls://host:port` (nats-server's certificate checked against
   * `caFile`); one kind only. `STRATO_NATS_URL` @default `nats://127.0.0.1:4222`
   */
  natsUrl: string
  /** `natsUrl` parsed (parseNatsUrls): the servers to dial and whether TLS is required. Not an override; it follows `natsUrl`. */
  nats: NatsServers
  /**
   * This host's NATS credentials (a `.creds` file, mode 0600: a group- or
   * world-readable one is refused); null connects without (a server with no
   * auth). `STRATO_AGENT_NATS_CREDS` @default null
   */
  natsCredsFile: string | null
  /**
   * The content of `natsCredsFile`, read and checked once, here: the service
   * connects with it (a secret: never log the config whole). Not an override;
   * it follows `natsCredsFile`.
   */
  natsCreds: Uint8Array | null
  /** Agent state (compute_id). @default `./.strato/agent` */
  stateDir: string
  /** Where guests' disks and console logs live. @default `<stateDir>/instances` */
  instancesDir: string
  /** Availability zone to announce; empty: the controller's default. @default '' */
  availabilityZone: string
  /** Disk inventory in GiB; null: the size of the instances dir's file system. @default null */
  diskGb: number | null
  /**
   * The group QEMU runs as (qemu.conf `group`): the directories on the way to
   * the guests' disks are root:<this group>, mode 0710 (disk/guest-dirs.ts).
   * `STRATO_AGENT_QEMU_GROUP` @default `libvirt-qemu` (Debian's)
   */
  qemuGroup: string
  /** `fake` (in memory) or `libvirt`. @default `libvirt` */
  driver: 'fake' | 'libvirt'
  /** Heartbeat interval until the controller says otherwise. @default 10000 */
  heartbeatIntervalMs: number
  /** Timeout of requests to the conductor. @default 5000 */
  requestTimeoutMs: number
  /**
   * The controller's gRPC address (images are downloaded from it):
   * `grpcs://host:port` (TLS), `grpc://host:port` (plaintext), or `host:port`
   * (TLS when caFile is set); several, comma-separated, for several
   * controllers (the next is used when one cannot be reached); null: the
   * one the controller announces. @default null
   */
  controllerAddress: string | null
  /** The CA the controller's certificate must chain to (PEM file); null: the system's roots, for `grpcs://` only. `STRATO_AGENT_CA_FILE` @default null */
  caFile: string | null
  /**
   * Physical network → Linux bridge on this host, for flat networks (Neutron
   * linuxbridge `physical_interface_mappings`, with a bridge instead of an
   * interface); created when missing. `STRATO_AGENT_BRIDGE_MAPPINGS=provider:br-provider,…`
   * @default { provider: 'br-provider' }
   */
  bridgeMappings: Record<string, string>
  /** How long a stop waits for the guest's ACPI shutdown before pulling the plug (Nova `shutdown_timeout`). @default 60000 */
  shutdownTimeoutMs: number
  /** How often the power state of every guest is reported (Nova `sync_power_state_interval`, 600 s). @default 60000 */
  powerSyncIntervalMs: number
  /** This host's address, reported as the hypervisor's host_ip (Nova's `my_ip`). @default the first non-loopback IPv4 address, else 127.0.0.1 */
  myIp: string
  /** Casts worked on at once (different servers; one server's casts run in order). @default 8 */
  maxConcurrentCasts: number
  /**
   * Security groups on this host: `iptables` (bridged traffic through per-port
   * chains; see net/firewall.ts) or `none` (no filtering). @default iptables
   * with the libvirt driver, none with the fake one
   */
  firewall: 'iptables' | 'none'
  /** How often the filtering is refreshed even without a change notice. @default 60000 */
  firewallSyncIntervalMs: number
  /**
   * DHCP for the networks of this host's servers: `dnsmasq` (one per network
   * in a `qdhcp-<network id>` namespace; see net/dhcp.ts) or `off`.
   * @default dnsmasq with the libvirt driver, off with the fake one
   */
  dhcp: 'dnsmasq' | 'off'
  /** Where the DHCP files of each network live. @default `<stateDir>/dhcp` */
  dhcpDir: string
  /** How often DHCP is resynced even without a change notice (Neutron `resync_interval`). @default 30000 */
  dhcpSyncIntervalMs: number
  /**
   * Physical networks (flat) whose subnets' gateway address this host takes,
   * through a veth port of the network's bridge (net/host-gateway.ts): the
   * single-host demo, where no router holds it. `STRATO_AGENT_HOST_GATEWAY`
   * (comma-separated) @default none
   */
  hostGateway: string[]
  /** Masquerade those subnets' traffic to other networks. `STRATO_AGENT_HOST_GATEWAY_NAT=1` @default false */
  hostGatewayNat: boolean
  /**
   * The metadata service (metadata/service.ts): `on` serves 169.254.169.254
   * in the namespaces the DHCP side attaches; `off` attaches nothing.
   * `STRATO_AGENT_METADATA` @default on
   */
  metadata: 'on' | 'off'
  /** Its port inside each namespace. `STRATO_AGENT_METADATA_PORT` @default 80 */
  metadataPort: number
  /** How long an answer is cached (a miss: a tenth of it, at most 3 s). `STRATO_AGENT_METADATA_CACHE_TTL_MS` @default 30000 */
  metadataCacheTtlMs: number
  /**
   * The volume role (cinder-volume): this agent keeps volumes and reports
   * their backend's capacity. `STRATO_AGENT_VOLUME` @default on
   */
  volume: 'on' | 'off'
  /**
   * The L3 role (Neutron's L3 agent): the controller may place routers here,
   * each built in a `qrouter-<id>` namespace. Announced to the controller.
   * `STRATO_AGENT_L3` (1/0, true/false) @default true
   */
  l3: boolean
  /**
   * How the L3 role builds its routers: `namespaces` (a `qrouter-<id>`
   * namespace each, veths into the networks' bridges, NAT; see net/l3.ts),
   * `fake` (kept in memory only: fake-driver hosts in tests) or `none`
   * (nothing is built, so the host does not announce the L3 role and no
   * router is placed here, whatever `l3` says).
   * `STRATO_AGENT_L3_DRIVER` @default namespaces with the libvirt driver, none with the fake one
   */
  l3Driver: 'namespaces' | 'fake' | 'none'
  /** How often the routers are resynced even without a change notice. `STRATO_AGENT_L3_SYNC_INTERVAL_MS` @default 30000 */
  l3SyncIntervalMs: number
  /** Where volumes and snapshots live. `STRATO_AGENT_VOLUME_DIR` @default `<stateDir>/volumes` */
  volumeDir: string
  /** The volumes' file format: qcow2 (copy-on-write snapshots) or raw (copies). `STRATO_AGENT_VOLUME_FORMAT` @default qcow2 */
  volumeFormat: 'qcow2' | 'raw'
  /**
   * The address this host's network exports of volumes (NBD) listen on and
   * other hosts dial: its storage network address. Empty: no network exports
   * (volumes attach only to servers of this host). `STRATO_AGENT_VOLUME_EXPORT_ADDRESS` @default ''
   */
  volumeExportAddress: string
  /**
   * The NBD server's x509 directory (QEMU's layout: ca-cert.pem,
   * server-cert.pem, server-key.pem, issued by the cloud's CA); clients must
   * present a certificate of the same CA whose subject is `CN=<their host
   * name>`, and an export lets in only the hosts it is for (QEMU under
   * libvirt: qemu.conf's nbd_tls_x509_cert_dir, /etc/pki/qemu by default).
   * `STRATO_AGENT_VOLUME_EXPORT_TLS_DIR` @default `<stateDir>/nbd-tls`
   */
  volumeExportTlsDir: string
  /**
   * Where QEMU under libvirt reads this host's NBD client certificate
   * (qemu.conf's `nbd_tls_x509_cert_dir`): `strato-agent join` (and `npm
   * start`) put ca-cert.pem, client-cert.pem and client-key.pem there besides
   * `volumeExportTlsDir`. Empty: nowhere (a host with no QEMU).
   * `STRATO_AGENT_NBD_CLIENT_TLS_DIR` @default `/etc/pki/qemu` (libvirt's default) with the libvirt driver, empty with the fake one
   */
  nbdClientTlsDir: string
  /**
   * How this host's servers attach volumes: `auto`, a volume of this host's
   * backend as its file and any other over the network; `network`, every
   * volume over the network (an NBD export even from this host: tests and
   * benchmarks of the network path on one machine).
   * `STRATO_AGENT_VOLUME_ATTACH` @default auto
   */
  volumeAttach: 'auto' | 'network'
  log: {
    /** @default `info` */
    level: string
  }
}

export type AgentConfigOverrides = Partial<Omit<AgentConfig, 'log' | 'nats' | 'natsCreds'>> & { log?: Partial<AgentConfig['log']> }

/** libvirt's NBD client certificate directory when qemu.conf sets none (`default_tls_x509_cert_dir`). */
export const LIBVIRT_NBD_CLIENT_TLS_DIR = '/etc/pki/qemu'

/** The state directory when none is given: `STRATO_AGENT_STATE_DIR`, else `./.strato/agent`. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.STRATO_AGENT_STATE_DIR ?? '.strato/agent')
}

function boolEnv(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const raw = env[name]
  if (raw === undefined || raw === '') return undefined
  const v = raw.toLowerCase()
  if (['1', 'true', 'yes', 'on'].includes(v)) return true
  if (['0', 'false', 'no', 'off'].includes(v)) return false
  throw new InvalidArgument(`${name} must be 1/0, true/false, yes/no or on/off, got '${raw}'`, { field: name })
}

export function loadAgentConfig(overrides: AgentConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const stateDir = overrides.stateDir ? path.resolve(overrides.stateDir) : defaultStateDir(env)
  const diskRaw = overrides.diskGb !== undefined ? overrides.diskGb : env.STRATO_AGENT_DISK_GB ? Number(env.STRATO_AGENT_DISK_GB) : null
  // What `strato-agent join` left in the state dir: defaults under the environment and overrides.
  const joined = readJoinState(stateDir)
  const inState = (file: string | undefined) => (file ? path.join(stateDir, file) : undefined)
  const natsUrl = overrides.natsUrl ?? env.STRATO_NATS_URL ?? (joined?.natsUrls?.length ? joined.natsUrls.join(',') : 'nats://127.0.0.1:4222')
  const natsCredsFile = overrides.natsCredsFile ?? (env.STRATO_AGENT_NATS_CREDS ? path.resolve(env.STRATO_AGENT_NATS_CREDS) : inState(joined?.natsCredsFile) ?? null)
  const cfg: AgentConfig = {
    host: overrides.host ?? env.STRATO_AGENT_HOST ?? joined?.host ?? hostname(),
    uuid: overrides.uuid ?? env.STRATO_AGENT_UUID ?? null,
    natsUrl,
    nats: parseNatsUrls(natsUrl),
    natsCredsFile,
    // Read now, so a bad file stops the agent before it does anything.
    natsCreds: natsCredsFile ? readCredsFile(natsCredsFile) : null,
    stateDir,
    instancesDir: path.resolve(overrides.instancesDir ?? env.STRATO_AGENT_INSTANCES_DIR ?? path.join(stateDir, 'instances')),
    availabilityZone: overrides.availabilityZone ?? env.STRATO_AGENT_AVAILABILITY_ZONE ?? '',
    diskGb: diskRaw,
    qemuGroup: overrides.qemuGroup ?? env.STRATO_AGENT_QEMU_GROUP ?? 'libvirt-qemu',
    driver: overrides.driver ?? (env.STRATO_AGENT_DRIVER as AgentConfig['driver'] | undefined) ?? 'libvirt',
    heartbeatIntervalMs: overrides.heartbeatIntervalMs ?? 10_000,
    requestTimeoutMs: overrides.requestTimeoutMs ?? envInt(env, 'STRATO_AGENT_REQUEST_TIMEOUT_MS') ?? 5_000,
    controllerAddress: overrides.controllerAddress ?? env.STRATO_AGENT_CONTROLLER ?? joined?.controllerAddress ?? null,
    caFile: overrides.caFile !== undefined ? overrides.caFile : env.STRATO_AGENT_CA_FILE ? path.resolve(env.STRATO_AGENT_CA_FILE) : inState(joined?.caFile) ?? null,
    bridgeMappings: overrides.bridgeMappings ?? parseMappings(env.STRATO_AGENT_BRIDGE_MAPPINGS) ?? { provider: 'br-provider' },
    shutdownTimeoutMs: overrides.shutdownTimeoutMs ?? envInt(env, 'STRATO_AGENT_SHUTDOWN_TIMEOUT_MS') ?? 60_000,
    powerSyncIntervalMs: overrides.powerSyncIntervalMs ?? envInt(env, 'STRATO_AGENT_POWER_SYNC_INTERVAL_MS') ?? 60_000,
    myIp: overrides.myIp ?? env.STRATO_AGENT_MY_IP ?? firstAddress(),
    maxConcurrentCasts: overrides.maxConcurrentCasts ?? envInt(env, 'STRATO_AGENT_MAX_CONCURRENT_CASTS') ?? 8,
    firewall: overrides.firewall ?? (env.STRATO_AGENT_FIREWALL as AgentConfig['firewall'] | undefined) ?? ((overrides.driver ?? env.STRATO_AGENT_DRIVER ?? 'libvirt') === 'fake' ? 'none' : 'iptables'),
    firewallSyncIntervalMs: overrides.firewallSyncIntervalMs ?? envInt(env, 'STRATO_AGENT_FIREWALL_SYNC_INTERVAL_MS') ?? 60_000,
    dhcp: overrides.dhcp ?? (env.STRATO_AGENT_DHCP as AgentConfig['dhcp'] | undefined) ?? ((overrides.driver ?? env.STRATO_AGENT_DRIVER ?? 'libvirt') === 'fake' ? 'off' : 'dnsmasq'),
    dhcpDir: path.resolve(overrides.dhcpDir ?? env.STRATO_AGENT_DHCP_DIR ?? path.join(stateDir, 'dhcp')),
    dhcpSyncIntervalMs: overrides.dhcpSyncIntervalMs ?? envInt(env, 'STRATO_AGENT_DHCP_SYNC_INTERVAL_MS') ?? 30_000,
    hostGateway: overrides.hostGateway ?? (env.STRATO_AGENT_HOST_GATEWAY ?? '').split(',').map((s) => s.trim()).filter(Boolean),
    hostGatewayNat: overrides.hostGatewayNat ?? ['1', 'true', 'yes'].includes((env.STRATO_AGENT_HOST_GATEWAY_NAT ?? '').toLowerCase()),
    metadata: overrides.metadata ?? (env.STRATO_AGENT_METADATA as AgentConfig['metadata'] | undefined) ?? 'on',
    metadataPort: overrides.metadataPort ?? envInt(env, 'STRATO_AGENT_METADATA_PORT') ?? 80,
    metadataCacheTtlMs: overrides.metadataCacheTtlMs ?? envInt(env, 'STRATO_AGENT_METADATA_CACHE_TTL_MS') ?? 30_000,
    volume: overrides.volume ?? (env.STRATO_AGENT_VOLUME as AgentConfig['volume'] | undefined) ?? 'on',
    l3: overrides.l3 ?? boolEnv(env, 'STRATO_AGENT_L3') ?? true,
    l3Driver: overrides.l3Driver ?? (env.STRATO_AGENT_L3_DRIVER as AgentConfig['l3Driver'] | undefined) ?? ((overrides.driver ?? env.STRATO_AGENT_DRIVER ?? 'libvirt') === 'fake' ? 'none' : 'namespaces'),
    l3SyncIntervalMs: overrides.l3SyncIntervalMs ?? envInt(env, 'STRATO_AGENT_L3_SYNC_INTERVAL_MS') ?? 30_000,
    volumeDir: path.resolve(overrides.volumeDir ?? env.STRATO_AGENT_VOLUME_DIR ?? path.join(stateDir, 'volumes')),
    volumeFormat: overrides.volumeFormat ?? (env.STRATO_AGENT_VOLUME_FORMAT as AgentConfig['volumeFormat'] | undefined) ?? 'qcow2',
    volumeExportAddress: overrides.volumeExportAddress ?? env.STRATO_AGENT_VOLUME_EXPORT_ADDRESS ?? '',
    volumeExportTlsDir: path.resolve(overrides.volumeExportTlsDir ?? env.STRATO_AGENT_VOLUME_EXPORT_TLS_DIR ?? path.join(stateDir, 'nbd-tls')),
    nbdClientTlsDir: overrides.nbdClientTlsDir ?? env.STRATO_AGENT_NBD_CLIENT_TLS_DIR ?? ((overrides.driver ?? env.STRATO_AGENT_DRIVER ?? 'libvirt') === 'fake' ? '' : LIBVIRT_NBD_CLIENT_TLS_DIR),
    volumeAttach: overrides.volumeAttach ?? (env.STRATO_AGENT_VOLUME_ATTACH as AgentConfig['volumeAttach'] | undefined) ?? 'auto',
    log: { level: overrides.log?.level ?? env.STRATO_LOG_LEVEL ?? 'info' },
  }
  if (cfg.nbdClientTlsDir) cfg.nbdClientTlsDir = path.resolve(cfg.nbdClientTlsDir)
  if (cfg.controllerAddress !== null && !cfg.controllerAddress.split(',').every((a) => parseGrpcUrl(a.trim()))) throw new InvalidArgument(`controllerAddress (STRATO_AGENT_CONTROLLER) must be grpcs://host:port, grpc://host:port or host:port (or several, comma-separated), got '${cfg.controllerAddress}'`, { field: 'controllerAddress' })
  if (!isIP(cfg.myIp)) throw new InvalidArgument(`myIp (STRATO_AGENT_MY_IP) must be an IP address, got '${cfg.myIp}'`, { field: 'myIp' })
  if (!Number.isInteger(cfg.maxConcurrentCasts) || cfg.maxConcurrentCasts < 1) throw new InvalidArgument('maxConcurrentCasts must be an integer ≥ 1', { field: 'maxConcurrentCasts' })
  for (const [physnet, bridge] of Object.entries(cfg.bridgeMappings)) {
    if (!/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw new InvalidArgument(`bridgeMappings.${physnet}: '${bridge}' is not a Linux interface name (1-15 of [A-Za-z0-9_.-])`, { field: `bridgeMappings.${physnet}` })
  }
  if (cfg.firewall !== 'iptables' && cfg.firewall !== 'none') throw new InvalidArgument(`firewall (STRATO_AGENT_FIREWALL) must be iptables or none, got '${String(cfg.firewall)}'`, { field: 'firewall' })
  if (!['namespaces', 'fake', 'none'].includes(cfg.l3Driver)) throw new InvalidArgument(`l3Driver (STRATO_AGENT_L3_DRIVER) must be namespaces, fake or none, got '${String(cfg.l3Driver)}'`, { field: 'l3Driver' })
  if (cfg.l3SyncIntervalMs < 1000) throw new InvalidArgument(`l3SyncIntervalMs (STRATO_AGENT_L3_SYNC_INTERVAL_MS) must be ≥ 1000, got ${cfg.l3SyncIntervalMs}`, { field: 'l3SyncIntervalMs' })
  if (cfg.dhcp !== 'dnsmasq' && cfg.dhcp !== 'off') throw new InvalidArgument(`dhcp (STRATO_AGENT_DHCP) must be dnsmasq or off, got '${String(cfg.dhcp)}'`, { field: 'dhcp' })
  if (cfg.hostGateway.length && cfg.dhcp === 'off') throw new InvalidArgument('hostGateway (STRATO_AGENT_HOST_GATEWAY) needs DHCP (STRATO_AGENT_DHCP=dnsmasq): the gateway follows the networks DHCP serves', { field: 'hostGateway' })
  if (cfg.dhcpSyncIntervalMs < 1000) throw new InvalidArgument(`dhcpSyncIntervalMs (STRATO_AGENT_DHCP_SYNC_INTERVAL_MS) must be ≥ 1000, got ${cfg.dhcpSyncIntervalMs}`, { field: 'dhcpSyncIntervalMs' })
  if (cfg.metadata !== 'on' && cfg.metadata !== 'off') throw new InvalidArgument(`metadata (STRATO_AGENT_METADATA) must be on or off, got '${String(cfg.metadata)}'`, { field: 'metadata' })
  if (!Number.isInteger(cfg.metadataPort) || cfg.metadataPort < 1 || cfg.metadataPort > 65535) throw new InvalidArgument(`metadataPort (STRATO_AGENT_METADATA_PORT) must be in 1-65535, got ${cfg.metadataPort}`, { field: 'metadataPort' })
  if (cfg.volume !== 'on' && cfg.volume !== 'off') throw new InvalidArgument(`volume (STRATO_AGENT_VOLUME) must be on or off, got '${String(cfg.volume)}'`, { field: 'volume' })
  if (cfg.volumeAttach !== 'auto' && cfg.volumeAttach !== 'network') throw new InvalidArgument(`volumeAttach (STRATO_AGENT_VOLUME_ATTACH) must be auto or network, got '${String(cfg.volumeAttach)}'`, { field: 'volumeAttach' })
  if (cfg.volumeExportAddress && !isIP(cfg.volumeExportAddress)) throw new InvalidArgument(`volumeExportAddress (STRATO_AGENT_VOLUME_EXPORT_ADDRESS) must be an IP address (the NBD server's certificate names it), got '${cfg.volumeExportAddress}'`, { field: 'volumeExportAddress' })
  if (cfg.volumeFormat !== 'qcow2' && cfg.volumeFormat !== 'raw') throw new InvalidArgument(`volumeFormat (STRATO_AGENT_VOLUME_FORMAT) must be qcow2 or raw, got '${String(cfg.volumeFormat)}'`, { field: 'volumeFormat' })
  if (cfg.driver !== 'fake' && cfg.driver !== 'libvirt') throw new InvalidArgument(`driver must be fake or libvirt, got '${String(cfg.driver)}'`, { field: 'driver' })
  if (cfg.diskGb !== null && (!Number.isInteger(cfg.diskGb) || cfg.diskGb < 0)) throw new InvalidArgument('diskGb must be a non-negative integer', { field: 'diskGb' })
  return cfg
}

/** `<stateDir>/join.json` (agent/join.ts writes it), or undefined when the host did not join that way. */
function readJoinState(stateDir: string): Partial<JoinState> | undefined {
  const file = path.join(stateDir, JOIN_STATE_FILE)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch {
    return undefined
  }
  try {
    return JSON.parse(text) as Partial<JoinState>
  } catch (err) {
    throw new InvalidArgument(`${file} is not JSON (written by strato-agent join): ${(err as Error).message}`, { field: 'stateDir' })
  }
}

/** The servers of a NATS URL list and the one TLS setting of a connection to them. */
/** Like Nova's my_ip default: the first non-internal IPv4 address of the host. */
function firstAddress(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address
  }
  return '127.0.0.1'
}

/** A whole number from the environment, or undefined when unset; anything else is refused by name. */
function envInt(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name]
  if (raw === undefined || raw === '') return undefined
  const n = Number(raw)
  if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgument(`${name}: '${raw}' is not a whole number`, { field: name })
  return n
}

/** `physnet:bridge,physnet:bridge` → a map; undefined when unset. */
function parseMappings(text: string | undefined): Record<string, string> | undefined {
  if (!text) return undefined
  const out: Record<string, string> = {}
  for (const pair of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const [physnet, bridge, ...rest] = pair.split(':')
    if (!physnet || !bridge || rest.length) throw new InvalidArgument(`STRATO_AGENT_BRIDGE_MAPPINGS: '${pair}' is not physnet:bridge`, { field: 'bridgeMappings' })
    out[physnet] = bridge
  }
  return out
}

/** The compute node uuid: configured, or kept in `<stateDir>/compute_id` across restarts. */
export function computeId(cfg: AgentConfig): string {
  if (cfg.uuid) return cfg.uuid
  const file = path.join(cfg.stateDir, 'compute_id')
  try {
    return readFileSync(file, 'utf8').trim()
  } catch {
    const id = randomUUID()
    writePrivateFile(file, `${id}\n`, { dirMode: 0o700 })
    return id
  }
}
