#!/usr/bin/env node
/**
 * The all-in-one stack: a nats-server with JetStream, the controller with its
 * embedded SQLite database, libvirtd (started when it is not running) and one
 * agent for this host — mapped, like DevStack's final `discover_hosts` — plus
 * a demo image and flavor m1.nano. In the foreground, readable logs, clean stop
 * on Ctrl-C (SIGINT) or SIGTERM. State lives under STRATO_HOME.
 */
import type { ChildProcess } from 'node:child_process'
import { chmodSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { registerDemo } from './demo.js'
import { OPENSTACK_CLOUD, openstackFiles, readOpenrc } from '../../controller/identity/bootstrap.js'
import { REST_PREFIX } from '../../controller/rest/http.js'
import { loadConfig } from '../../controller/config.js'
import { createLogger } from '../../controller/log.js'
import { Controller } from '../../controller/server.js'
import { loadStackConfig } from './config.js'
import { prepareStackNats, type StackNats } from './nats-auth.js'
import { mapLocalHost, portFree, startAgent, startNatsServer, stopChild } from './processes.js'

// Everything under STRATO_HOME (database, images, NATS store, guests' disks) and what
// nats-server and the agent create there is the stack's alone; QEMU's way in is by group (startAgent).
process.umask(0o077)
const cfg = loadStackConfig()
const log = createLogger({ name: 'strato', level: cfg.logLevel, pretty: true })

async function main(): Promise<void> {
  for (const [what, p] of [['NATS', cfg.natsPort], ['gRPC', cfg.grpcPort]] as const) {
    if (!(await portFree(p, cfg.host))) {
      throw new Error(`${what} port ${cfg.host}:${p} is in use (another stack?). Choose another with STRATO_${what === 'NATS' ? 'NATS' : 'GRPC'}_PORT=...`)
    }
  }
  for (const dir of [cfg.home, path.join(cfg.home, 'nats')]) {
    mkdirSync(dir, { recursive: true, mode: 0o700 })
    chmodSync(dir, 0o700) // an older stack made them 0755; nats-server's own files follow the umask
  }
  const natsDir = path.join(cfg.home, 'nats')
  const natsLog = path.join(natsDir, 'nats-server.log')
  // Own process group: Ctrl-C reaches us, and we stop nats-server after the controller has drained.
  // With auth (operator JWTs, made at first start): no anonymous connection; the controller and the agent have their own credentials.
  // And TLS, with a certificate from the controller's CA (the controller makes it there too if this did not).
  const auth: StackNats = await prepareStackNats({ natsDir, host: cfg.host, port: cfg.natsPort, agentHost: cfg.agentHost, caDir: path.join(cfg.home, 'controller', 'tls') })
  const nats = await startNatsServer(auth.configFile, natsLog, cfg.natsPort, cfg.host, log)
  log.info({ url: auth.url, store: natsDir, log: natsLog }, 'nats-server running (JetStream, TLS, credentials required)')

  const controller = new Controller(
    loadConfig({
      dataDir: path.join(cfg.home, 'controller'),
      grpc: { host: cfg.host, port: cfg.grpcPort, publicAddress: null },
      natsUrl: auth.url,
      natsCredsFile: auth.controllerCreds,
      natsCaFile: auth.caFile,
      // Hosts that join (strato host join-token create) get credentials signed with these keys.
      natsOperatorDir: auth.operatorDir,
      bootstrap: { openrcPath: cfg.openrc },
      log: { level: cfg.logLevel, pretty: true },
    }),
    log.child({ component: 'controller' }),
  )
  let agent: ChildProcess | undefined
  const stopAgent = () => stopChild(agent)
  const stopNats = () => stopChild(nats)
  let stopping = false
  const stop = async (signal: string) => {
    if (stopping) return
    stopping = true
    log.info({ signal }, 'stopping the stack')
    await stopAgent()
    await controller.stop().catch((err) => log.error({ err }, 'controller did not stop cleanly'))
    await stopNats()
    log.info('stack stopped')
    process.exit(0)
  }
  process.on('SIGINT', () => void stop('SIGINT'))
  process.on('SIGTERM', () => void stop('SIGTERM'))
  nats.once('exit', (code) => {
    if (!stopping) {
      log.error({ code }, 'nats-server exited unexpectedly; stopping')
      void stop('nats-exit')
    }
  })
  try {
    await controller.start()
  } catch (err) {
    await stopNats()
    throw err
  }
  if (controller.bootstrapResult.created) log.info({ openrc: cfg.openrc }, `first run: admin credentials written to ${cfg.openrc} (mode 0600)`)
  await registerDemo(controller.address, readOpenrc(cfg.openrc), log.child({ component: 'demo' }))
  // The controller's URL says grpcs:// (TLS is on by default): the agent verifies it against the controller's CA.
  agent = await startAgent(cfg, log, { controllerAddress: controller.url, caFile: controller.tls?.caFile ?? auth.caFile, natsUrl: auth.url, natsCreds: auth.agentCreds, ...(controller.joinIssuer ? { issuer: controller.joinIssuer } : {}) })
  if (agent) await mapLocalHost(controller, agent, log, () => stopping)
  const rel = path.relative(process.cwd(), cfg.openrc)
  log.info(`Strato is up at ${controller.url}. In another shell: . ${rel.startsWith('..') ? cfg.openrc : rel}  — Ctrl-C here stops the stack.`)
  if (controller.rest) {
    const files = openstackFiles(cfg.openrc)
    log.info(`The OpenStack tools reach it at ${controller.rest.url(REST_PREFIX.identity)}/v3: . ${path.relative(process.cwd(), files.openrc)}, or openstack --os-cloud ${OPENSTACK_CLOUD} … (${files.cloudsYaml})`)
  }
}

main().catch((err: Error) => {
  log.fatal(err.message)
  process.exit(1)
})
