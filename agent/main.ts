#!/usr/bin/env node
/** strato-agent: one per compute host; runs until SIGINT/SIGTERM, then stops cleanly. */
import { pino } from 'pino'
import { loadAgentConfig } from './config.js'
import { AgentService } from './service.js'
import { FakeDriver } from './virt/fake.js'
import type { VirtDriver } from './virt/driver.js'

// Whatever the agent or its children (dnsmasq, genisoimage) create is root's alone unless made otherwise:
// disks, config drives and DHCP files hold guests' data (see disk/guest-dirs.ts for QEMU's access).
process.umask(0o077)
const config = loadAgentConfig()
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
