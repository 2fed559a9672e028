/**
 * Runs the real agent daemon (`agent/main.ts`) as its own process, configured
 * the way an operator would: `STRATO_AGENT_*` environment variables. For tests
 * that kill it (SIGKILL mid-build) and start it again on the same state.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { IptablesFirewall } from '../../agent/net/firewall.js'
import { L3Agent } from '../../agent/net/l3.js'
import { DnsmasqDhcp } from '../../agent/net/dhcp.js'
import { exited, readLog, running, startDaemon, waitForLog } from './daemon.js'
import { virsh } from './libvirt.js'
import { natsCredsFor } from './nats.js'

export interface AgentProcessOptions {
  host: string
  natsUrl: string
  driver: 'fake' | 'libvirt'
  /** Kept across restarts; made (and removed on `remove()`) when not given. */
  stateDir?: string
  /** Extra STRATO_AGENT_* settings. */
  env?: Record<string, string>
}

export interface AgentProcess {
  host: string
  stateDir: string
  instancesDir: string
  proc: ChildProcess
  /** Everything the agent logged (JSON lines), across restarts. */
  log(): string
  /** Waits until the agent says it is running. */
  running(timeoutMs?: number): Promise<void>
  kill(signal: NodeJS.Signals): Promise<void>
  /** SIGTERM, and wait for a clean exit. */
  stop(): Promise<number | null>
  /** Starts it again on the same state dir and host, and waits until it runs (generously: a loaded machine starts Node slowly). */
  restart(timeoutMs?: number): Promise<void>
  /** Stops it and removes its state (when the helper made it). */
  remove(): Promise<void>
}

/** Destroys and undefines every libvirt domain whose disks live under `dir`. */
async function destroyDomainsUnder(dir: string): Promise<void> {
  const names = (await virsh('list', '--all', '--name').catch(() => '')).split('\n').map((l) => l.trim()).filter(Boolean)
  for (const name of names) {
    const xml = await virsh('dumpxml', name).catch(() => '')
    if (!xml.includes(`file='${dir}/`)) continue
    await virsh('destroy', name).catch(() => {})
    await virsh('undefine', name).catch(() => {})
  }
}

export async function spawnAgent(o: AgentProcessOptions): Promise<AgentProcess> {
  const made = !o.stateDir
  const stateDir = o.stateDir ?? mkdtempSync(path.join(tmpdir(), `strato-agentp-${o.host}-`))
  // No chmod: the agent makes its state dir 0710 for QEMU's group itself (agent/disk/guest-dirs.ts).
  const logFile = path.join(stateDir, 'agent.log')
  const creds = natsCredsFor(o.natsUrl)?.agentCreds(o.host)
  const launch = (): ChildProcess =>
    startDaemon('agent/main.ts', { STRATO_AGENT_HOST: o.host, STRATO_NATS_URL: o.natsUrl, STRATO_AGENT_DRIVER: o.driver, STRATO_AGENT_STATE_DIR: stateDir, ...(creds ? { STRATO_AGENT_NATS_CREDS: creds } : {}), ...o.env }, logFile)
  const read = () => readLog(logFile)
  const a: AgentProcess = {
    host: o.host,
    stateDir,
    instancesDir: o.env?.STRATO_AGENT_INSTANCES_DIR ?? path.join(stateDir, 'instances'),
    proc: launch(),
    log: read,
    running: (timeoutMs = 30_000) => waitForLog(a.proc, logFile, 'agent running', starts, timeoutMs, `agent ${o.host}`),
    async kill(signal) {
      const done = exited(a.proc)
      a.proc.kill(signal)
      await done
    },
    async stop() {
      const done = exited(a.proc)
      a.proc.kill('SIGTERM')
      return done
    },
    async restart(timeoutMs = 120_000) {
      if (running(a.proc)) await a.stop()
      starts++
      a.proc = launch()
      await a.running(timeoutMs)
    },
    async remove() {
      if (running(a.proc)) await a.kill('SIGKILL')
      // Guests this agent left (a test that failed half way): their disks are under its state dir.
      if (o.driver === 'libvirt') await destroyDomainsUnder(stateDir)
      // And its security-group chains in the host's iptables (an agent leaves filtering in place when it stops).
      if (o.driver === 'libvirt' && o.env?.STRATO_AGENT_FIREWALL !== 'none') await new IptablesFirewall({ host: o.host }).clear().catch(() => undefined)
      // And its DHCP (dnsmasq outlives the agent, as it does in Neutron): processes, namespaces, veths, files.
      await new DnsmasqDhcp({ dir: o.env?.STRATO_AGENT_DHCP_DIR ?? path.join(stateDir, 'dhcp'), bridgeFor: () => '', log: pino({ level: 'silent' }) }).removeAll().catch(() => undefined)
      // And its routers (they keep forwarding when the agent stops): namespaces, veths, the state file.
      await new L3Agent({ stateDir, bridgeFor: () => '', log: pino({ level: 'silent' }) }).removeAll().catch(() => undefined)
      if (made) rmSync(stateDir, { recursive: true, force: true })
    },
  }
  let starts = 1
  return a
}
