#!/usr/bin/env node
/**
 * strato-agent: one per compute host; runs until SIGINT/SIGTERM, then stops
 * cleanly. `strato-agent join …` first joins the cloud with a join token
 * (agent/join.ts), then runs from what it was given (unless --no-start).
 */
import { pino } from 'pino'
import { defaultStateDir, loadAgentConfig, type AgentConfigOverrides } from './config.js'
import { join, parseJoinArgs } from './join.js'
import { hostNbdTls } from './volume/nbd-tls.js'
import { InvalidArgument } from '../proto/errors.js'
import { AgentService } from './service.js'
import { FakeDriver } from './virt/fake.js'
import type { VirtDriver } from './virt/driver.js'

// Whatever the agent or its children (dnsmasq, genisoimage) create is root's alone unless made otherwise:
// disks, config drives and DHCP files hold guests' data (see disk/guest-dirs.ts for QEMU's access).
process.umask(0o077)
const [command, ...args] = process.argv.slice(2)
let overrides: AgentConfigOverrides = {}
if (command === 'join') {
  let o: ReturnType<typeof parseJoinArgs>
  try {
    o = parseJoinArgs(args)
    const stateDir = o.stateDir ?? defaultStateDir()
    // Where this host's agent will look for its NBD certificate (the same config it runs with).
    const nbd = hostNbdTls(loadAgentConfig({ stateDir, host: o.host }))
    const state = await join({ ...o, stateDir, nbd })
    console.error(`strato-agent: joined as '${state.host}'; bus credentials and the CA are in ${stateDir}; ${state.nbdCertificate ? `the NBD certificate (CN=${state.host}) is in ${[nbd.dir, nbd.clientDir].filter(Boolean).join(' and ')}` : 'no NBD certificate was issued (the controller holds no CA key): network volume attachments need one'}. The host waits to be mapped (strato host discover).`)
  } catch (err) {
    console.error(`strato-agent join: ${(err as Error).message}`)
    process.exit(err instanceof InvalidArgument ? 2 : 1)
  }
  if (o.noStart) process.exit(0)
  overrides = { ...(o.stateDir ? { stateDir: o.stateDir } : {}), host: o.host }
} else if (command !== undefined) {
  console.error(`strato-agent: unknown command '${command}' (known: join; none runs the agent)`)
  process.exit(2)
}

const config = loadAgentConfig(overrides)
const log = pino({ name: 'strato-agent', level: config.log.level })

async function driverFor(): Promise<VirtDriver> {
  if (config.driver === 'fake') return new FakeDriver({ hostname: config.host })
  const { LibvirtDriver } = await import('./virt/libvirt/driver.js')
  return new LibvirtDriver({ logger: log })
}

const agent = new AgentService(config, await driverFor(), log)
let stopping = false
const stop = (signal: string) => {
  if (stopping) process.exit(1)
  stopping = true
  log.info({ signal }, 'signal received')
  agent.stop().then(() => process.exit(0), (err) => {
    log.error({ err }, 'unclean stop')
    process.exit(1)
  })
}
process.on('SIGINT', () => stop('SIGINT'))
process.on('SIGTERM', () => stop('SIGTERM'))
agent.start().catch((err: Error) => {
  log.fatal({ err }, `agent failed to start: ${err.message}`)
  process.exit(1)
})
