/**
 * The agent's typed configuration, compiled once. Sources, later ones
 * winning: defaults, `STRATO_AGENT_*` environment variables, explicit
 * overrides (tests). This is the only file of the agent that reads `process.env`.
 */
import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { InvalidArgument } from '../proto/errors.js'

export interface AgentConfig {
  /** Host name announced to the controller (a DNS name). @default os.hostname() */
  host: string
  /** Compute node uuid; when null, read from (or created in) `<stateDir>/compute_id`, like nova's compute_id file. @default null */
  uuid: string | null
  /** NATS server URL. @default `nats://127.0.0.1:4222` */
  natsUrl: string
  /** Agent state (compute_id). @default `./.strato/agent` */
  stateDir: string
  /** Where guests' disks and console logs live. @default `<stateDir>/instances` */
  instancesDir: string
  /** Availability zone to announce; empty: the controller's default. @default '' */
  availabilityZone: string
  /** Disk inventory in GiB; null: the size of the instances dir's file system. @default null */
  diskGb: number | null
  /** `fake` (in memory) or `libvirt`. @default `libvirt` */
  driver: 'fake' | 'libvirt'
  /** Heartbeat interval until the controller says otherwise. @default 10000 */
  heartbeatIntervalMs: number
  /** Timeout of requests to the conductor. @default 5000 */
  requestTimeoutMs: number
  log: {
    /** @default `info` */
    level: string
  }
}

export type AgentConfigOverrides = Partial<Omit<AgentConfig, 'log'>> & { log?: Partial<AgentConfig['log']> }

export function loadAgentConfig(overrides: AgentConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const stateDir = path.resolve(overrides.stateDir ?? env.STRATO_AGENT_STATE_DIR ?? '.strato/agent')
  const diskRaw = overrides.diskGb !== undefined ? overrides.diskGb : env.STRATO_AGENT_DISK_GB ? Number(env.STRATO_AGENT_DISK_GB) : null
  const cfg: AgentConfig = {
    host: overrides.host ?? env.STRATO_AGENT_HOST ?? hostname(),
    uuid: overrides.uuid ?? env.STRATO_AGENT_UUID ?? null,
    natsUrl: overrides.natsUrl ?? env.STRATO_NATS_URL ?? 'nats://127.0.0.1:4222',
    stateDir,
    instancesDir: path.resolve(overrides.instancesDir ?? env.STRATO_AGENT_INSTANCES_DIR ?? path.join(stateDir, 'instances')),
    availabilityZone: overrides.availabilityZone ?? env.STRATO_AGENT_AVAILABILITY_ZONE ?? '',
    diskGb: diskRaw,
    driver: overrides.driver ?? (env.STRATO_AGENT_DRIVER as AgentConfig['driver'] | undefined) ?? 'libvirt',
    heartbeatIntervalMs: overrides.heartbeatIntervalMs ?? 10_000,
    requestTimeoutMs: overrides.requestTimeoutMs ?? 5_000,
    log: { level: overrides.log?.level ?? env.STRATO_LOG_LEVEL ?? 'info' },
  }
  if (cfg.driver !== 'fake' && cfg.driver !== 'libvirt') throw new InvalidArgument(`driver must be fake or libvirt, got '${String(cfg.driver)}'`, { field: 'driver' })
  if (cfg.diskGb !== null && (!Number.isInteger(cfg.diskGb) || cfg.diskGb < 0)) throw new InvalidArgument('diskGb must be a non-negative integer', { field: 'diskGb' })
  return cfg
}

/** The compute node uuid: configured, or kept in `<stateDir>/compute_id` across restarts. */
export function computeId(cfg: AgentConfig): string {
  if (cfg.uuid) return cfg.uuid
  const file = path.join(cfg.stateDir, 'compute_id')
  try {
    return readFileSync(file, 'utf8').trim()
  } catch {
    mkdirSync(cfg.stateDir, { recursive: true })
    const id = randomUUID()
    writeFileSync(file, `${id}\n`)
    return id
  }
}
