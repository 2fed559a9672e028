/**
 * A cloud with a libvirt agent that runs the volume role (the integration
 * tests of block storage share it): the controller in this process, a real
 * nats-server, and the agent daemon as its own process driving libvirt (KVM,
 * TCG without /dev/kvm) with its volumes as qcow2 files of the native
 * engine. `volumeAgent` spawns more such agents (another host, its own state
 * and instances dir, network exports set up); `close` leaves no domain,
 * bridge, export server or state behind.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import { startCloud, type TestCloud } from './cloud.js'
import { spawnAgent, type AgentProcess } from './agent-process.js'
import { ensureLibvirtd, virsh } from './libvirt.js'
import { client, type Decoded } from './grpc.js'
import { eventually } from './agents.js'
import { VolumesClient, type Volume } from '../../proto/gen/strato/volume/v1/volume.js'

const run = promisify(execFile)

/** The settings of a libvirt agent with the volume role (`extra` adds or overrides). */
export function volumeAgentEnv(controller: string, bridge: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    STRATO_AGENT_CONTROLLER: controller,
    STRATO_AGENT_BRIDGE_MAPPINGS: `provider:${bridge}`,
    STRATO_AGENT_SHUTDOWN_TIMEOUT_MS: '3000',
    STRATO_AGENT_POWER_SYNC_INTERVAL_MS: '1000',
    STRATO_AGENT_DISK_GB: '50',
    STRATO_AGENT_VOLUME: 'on',
    STRATO_AGENT_VOLUME_FORMAT: 'qcow2',
    ...extra,
  }
}

/** A libvirt agent of `host` with the volume role (not waited for). */
export function spawnVolumeAgent(host: string, natsUrl: string, controller: string, bridge: string, extra: Record<string, string> = {}): Promise<AgentProcess> {
  return spawnAgent({ host, natsUrl, driver: 'libvirt', env: volumeAgentEnv(controller, bridge, extra) })
}

export interface VolumeCloud {
  cloud: TestCloud
  /** The first agent (the volume host). */
  agent: AgentProcess
  /** Every agent spawned, the first included. */
  agents: AgentProcess[]
  volumes: VolumesClient
  bridge: string
  /** Servers the test made: their domains are removed at close, whatever happened. */
  made: string[]
  /** Spawns another agent (running, mapped), e.g. a second host with `STRATO_AGENT_INSTANCES_DIR` elsewhere. */
  volumeAgent(host: string, extra?: Record<string, string>): Promise<AgentProcess>
  /** The volume file of `id` on `agent` (the first by default). */
  fileOf(id: string, agent?: AgentProcess): string
  close(t: Test): Promise<void>
}

/** Starts the cloud and its first agent (`host`), and waits until its volume backend is reported. */
export async function startVolumeCloud(o: { host: string; bridgePrefix: string; agentEnv?: Record<string, string> }): Promise<VolumeCloud> {
  await ensureLibvirtd()
  const bridge = `${o.bridgePrefix}-${randomBytes(3).toString('hex')}`
  const cloud = await startCloud({ hosts: [], controller: { hosts: { heartbeatIntervalMs: 500, missedHeartbeats: 10 }, servers: { castRetryMs: 1_000, agentCallTimeoutMs: 20_000 } } })
  const agents: AgentProcess[] = []
  const backends = async () => (await cloud.s.controller.db.selectFrom('volume_backends').selectAll().execute()).length
  const volumeAgent = async (host: string, extra: Record<string, string> = {}) => {
    const before = await backends()
    const a = await spawnVolumeAgent(host, cloud.nats.url, cloud.s.address, bridge, extra)
    agents.push(a)
    await a.running(60_000)
    await eventually(async () => {
      await cloud.s.controller.hosts.discover()
      return (await cloud.s.controller.hosts.get(host).catch(() => undefined))?.mapped || undefined
    }, 20_000, `host ${host} to be discovered`)
    if (extra.STRATO_AGENT_VOLUME !== 'off') await eventually(async () => (await backends()) > before, 20_000, `the volume backend of ${host}`)
    return a
  }
  const agent = await volumeAgent(o.host, o.agentEnv)
  const volumes = client(VolumesClient, cloud.s.address)
  const made: string[] = []
  return {
    cloud, agent, agents, volumes, bridge, made, volumeAgent,
    fileOf: (id, a = agent) => path.join(a.stateDir, 'volumes', `volume-${id}.qcow2`),
    async close(t) {
      if (t.passing() === false || process.env.STRATO_TEST_LOG) for (const a of agents) t.comment(`${a.host}:\n${a.log().slice(-6000)}`)
      volumes.close()
      for (const uuid of made) {
        await virsh('destroy', `instance-${uuid}`).catch(() => {})
        await virsh('undefine', `instance-${uuid}`, '--nvram').catch(() => {})
      }
      for (const a of agents) {
        const left = await exportServersUnder(a.stateDir)
        await a.remove()
        stopAll(left)
      }
      await cloud.close()
      await run('ip', ['link', 'del', bridge]).catch(() => {})
    },
  }
}

/** The pids of the NBD export servers recorded under an agent's state dir that still run. */
export async function exportServersUnder(stateDir: string): Promise<number[]> {
  const dir = path.join(stateDir, 'volumes', 'exports')
  const out: number[] = []
  for (const f of await readdir(dir).catch(() => [] as string[])) {
    if (!f.endsWith('.json')) continue
    const { pid } = JSON.parse(await readFile(path.join(dir, f), 'utf8')) as { pid: number }
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')
    if (cmd.includes('qemu-storage-daemon')) out.push(pid)
  }
  return out
}

/** The statuses a volume rests in (no transition under way). */
export const STABLE_VOLUME_STATUSES = ['available', 'in-use', 'error']

/** Waits until volume `id` (read by `get`) is out of every transitional status; returns it. */
export function settleVolume(get: (id: string) => Promise<Decoded<Volume>>, id: string, ms = 180_000): Promise<Decoded<Volume>> {
  return eventually(async () => {
    const v = await get(id)
    return STABLE_VOLUME_STATUSES.includes(v.status) ? v : undefined
  }, ms, `volume ${id} to settle`)
}

/**
 * Starts `action`, SIGKILLs `agent` once it logged `msg` (e.g. `attach_volume
 * started`) for the volume, and starts it again on the same state.
 */
export async function killDuring(t: Test, agent: AgentProcess, msg: string, volumeId: () => string, action: () => Promise<unknown>): Promise<void> {
  const from = agent.log().length
  await action()
  await eventually(() => agent.log().slice(from).split('\n').some((l) => l.includes(`"msg":"${msg}"`) && l.includes(volumeId())) || undefined, 120_000, `${agent.host}'s agent to log ${msg}`)
  await agent.kill('SIGKILL')
  t.comment(`${agent.host}'s agent SIGKILLed after "${msg}"`)
  await agent.restart()
}

/** Kills export servers a test left (a failed one): none may outlive it. */
function stopAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone meanwhile
    }
  }
}
