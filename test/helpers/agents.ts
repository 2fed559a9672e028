/** Runs agents on the fake driver in the test process, each with its own NATS connection. */
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { pino } from 'pino'
import { loadAgentConfig, type AgentConfigOverrides } from '../../agent/config.js'
import { AgentService } from '../../agent/service.js'
import { DnsmasqDhcp } from '../../agent/net/dhcp.js'
import { FakeDriver, type FakeDriverOptions } from '../../agent/virt/fake.js'
import { FakeVolumeDriver, type FakeVolumeDriverOptions } from '../../agent/volume/fake.js'
import type { VolumeDriver } from '../../agent/volume/driver.js'
import { natsCredsFor } from './nats.js'

export interface TestAgent<V extends VolumeDriver = FakeVolumeDriver> {
  agent: AgentService
  driver: FakeDriver
  /** The volume role's backend (in memory, unless the test gave another). */
  volumes: V
  stop(): Promise<void>
}

export async function startAgent<V extends VolumeDriver = FakeVolumeDriver>(natsUrl: string, host: string, o: AgentConfigOverrides & { fake?: FakeDriverOptions; fakeVolumes?: FakeVolumeDriverOptions; volumeDriver?: V; virtDriver?: FakeDriver } = {}): Promise<TestAgent<V>> {
  const stateDir = o.stateDir ?? mkdtempSync(path.join(tmpdir(), `strato-agent-${host}-`))
  const { fake, fakeVolumes, volumeDriver, virtDriver, ...overrides } = o
  const natsCredsFile = natsCredsFor(natsUrl)?.agentCreds(host) ?? null
  const cfg = loadAgentConfig({ host, natsUrl, natsCredsFile, stateDir, uuid: randomUUID(), diskGb: 100, driver: 'fake', requestTimeoutMs: 2_000, myIp: '127.0.0.1', ...overrides }, {})
  // A restarted agent may keep the hypervisor it had (its guests outlive it).
  const driver = virtDriver ?? new FakeDriver({ hostname: host, ...fake })
  // A restarted agent may keep the backend it had (a host's disks outlive its agent).
  const volumes = volumeDriver ?? (new FakeVolumeDriver({ host, ...fakeVolumes }) as VolumeDriver as V)
  const agent = new AgentService(cfg, driver, pino({ level: process.env.STRATO_TEST_LOG ?? 'silent' }), volumes)
  await agent.start()
  return {
    agent,
    driver,
    volumes,
    async stop() {
      await agent.stop()
      // dnsmasq outlives an agent that stops; a test leaves none behind.
      if (agent.dhcp instanceof DnsmasqDhcp) await agent.dhcp.removeAll()
      if (!o.stateDir) rmSync(stateDir, { recursive: true, force: true })
    },
  }
}

/** The least time a test waits for a condition before calling it failed. */
export const MIN_WAIT_MS = 20_000

/** The first and the longest pause of `eventually` between two checks. */
const POLL_FIRST_MS = 25
const POLL_MAX_MS = 250

/**
 * Polls `check` until it returns a truthy value (or throws after `timeoutMs`).
 * The bound only keeps a broken test from hanging: it is never less than
 * MIN_WAIT_MS, since a loaded machine (CI, 2 cores, TCG) is slow at times.
 * The pause between checks grows from 25 to 250 ms: a quick condition is seen
 * at once, and a long wait (a guest booting under TCG) does not spend the CPU
 * the test suite shares on thousands of checks (each an API call or a file read).
 */
export async function eventually<T>(check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 5_000, what = 'condition'): Promise<T> {
  timeoutMs = Math.max(timeoutMs, MIN_WAIT_MS)
  const deadline = Date.now() + timeoutMs
  for (let pause = POLL_FIRST_MS; ; pause = Math.min(POLL_MAX_MS, Math.ceil(pause * 1.5))) {
    const v = await check()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, pause))
  }
}
