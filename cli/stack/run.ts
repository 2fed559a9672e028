#!/usr/bin/env node
/**
 * The all-in-one stack: a nats-server with JetStream, the controller with its
 * embedded SQLite database, libvirtd (started when it is not running) and one
 * agent for this host — mapped, like DevStack's final `discover_hosts` — plus
 * a demo image and flavor m1.nano. In the foreground, readable logs, clean stop
 * on Ctrl-C (SIGINT) or SIGTERM. State lives under STRATO_HOME.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { Logger } from 'pino'
import { registerDemo } from './demo.js'
import { OPENSTACK_CLOUD, openstackFiles, readOpenrc } from '../../controller/identity/bootstrap.js'
import { REST_PREFIX } from '../../controller/rest/http.js'
import { loadConfig } from '../../controller/config.js'
import { createLogger } from '../../controller/log.js'
import { Controller } from '../../controller/server.js'
import { loadStackConfig } from './config.js'
import { GuestDirs, groupId } from '../../agent/disk/guest-dirs.js'
import { prepareStackNats, type StackNats } from './nats-auth.js'

// Everything under STRATO_HOME (database, images, NATS store, guests' disks) and what
// nats-server and the agent create there is the stack's alone; QEMU's way in is by group (startAgent).
process.umask(0o077)
const cfg = loadStackConfig()
const log = createLogger({ name: 'strato', level: cfg.logLevel, pretty: true })

function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(port, host, () => s.close(() => resolve(true)))
  })
}

async function waitForPort(port: number, host: string, proc: ChildProcess, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`nats-server exited with code ${proc.exitCode}`)
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, host)
      c.once('connect', () => (c.destroy(), resolve(true)))
      c.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`nats-server did not listen on ${host}:${port} within ${ms} ms`)
}

const here = path.dirname(fileURLToPath(import.meta.url))
/** A sibling module of the stack, as .js when built and .ts under tsx. */
/** The checkout (where package.json is), from src or dist alike. */
const root = (() => {
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir
    if (dir === path.dirname(dir)) throw new Error(`no package.json above ${here}`)
  }
})()
const moduleOf = (rel: string) => path.join(here, '../..', `${rel}${path.extname(fileURLToPath(import.meta.url))}`)

/** Re-logs a child's JSON log lines through our (pretty) logger. */
function relog(stream: NodeJS.ReadableStream, log: Logger): void {
  const levels: Record<number, 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' }
  createInterface({ input: stream }).on('line', (line) => {
    try {
      const { level, msg, time: _t, pid: _p, hostname: _h, name: _n, ...rest } = JSON.parse(line) as Record<string, unknown>
      log[levels[level as number] ?? 'info'](rest, String(msg ?? ''))
    } catch {
      if (line.trim()) log.info(line)
    }
  })
}

/**
 * Starts virtlogd/libvirtd when they are not running (no systemd here) and
 * one agent for this host on the libvirt driver. Resolves with the agent, or
 * undefined (the stack then runs without a compute host, and says why) when
 * libvirt cannot be started or STRATO_AGENT=none.
 */
async function startAgent(controllerAddress: string, caFile: string | null, natsUrl: string, natsCreds: string): Promise<ChildProcess | undefined> {
  if (cfg.agent === 'none') {
    log.info('STRATO_AGENT=none: no compute agent on this host')
    return undefined
  }
  try {
    await promisify(execFile)('sh', [path.join(root, 'agent/virt/libvirt/start-libvirtd.sh')], { timeout: 60_000 })
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    log.error({ err: (e.stderr ?? e.message).trim() }, 'libvirtd could not be started: running without a compute host (servers stay unschedulable). Run as root with libvirt-daemon-system installed (npm run setup), or set STRATO_AGENT=none to silence this')
    return undefined
  }
  const stateDir = path.join(cfg.home, 'agent')
  // QEMU (group libvirt-qemu) passes through the home to the guests' disks: 0710, search only;
  // the agent does the same below it (agent/disk/guest-dirs.ts).
  new GuestDirs(groupId(cfg.qemuGroup)).ensure(cfg.home)
  const agent = spawn(process.execPath, [...process.execArgv, moduleOf('agent/main')], {
    env: {
      ...process.env,
      STRATO_NATS_URL: natsUrl,
      STRATO_AGENT_NATS_CREDS: natsCreds,
      STRATO_AGENT_HOST: cfg.agentHost,
      STRATO_AGENT_DRIVER: 'libvirt',
      STRATO_AGENT_STATE_DIR: stateDir,
      STRATO_AGENT_QEMU_GROUP: cfg.qemuGroup,
      STRATO_AGENT_CONTROLLER: controllerAddress,
      ...(caFile ? { STRATO_AGENT_CA_FILE: caFile } : {}),
      STRATO_LOG_LEVEL: cfg.logLevel,
      ...(cfg.hostGateway === 'off' ? {} : { STRATO_AGENT_HOST_GATEWAY: 'provider', STRATO_AGENT_HOST_GATEWAY_NAT: cfg.hostGateway === 'nat' ? '1' : '0' }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own group: Ctrl-C reaches the runner, which stops the agent before the controller
  })
  const agentLog = log.child({ component: 'agent' })
  relog(agent.stdout!, agentLog)
  relog(agent.stderr!, agentLog)
  return agent
}

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
  const nats = spawn('nats-server', ['-c', auth.configFile, '-l', natsLog], { stdio: 'ignore', detached: true })
  nats.once('error', (err) => log.error({ err }, 'cannot run nats-server (npm run setup installs it)'))
  await waitForPort(cfg.natsPort, cfg.host, nats, 15_000)
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
  const stopAgent = () =>
    new Promise<void>((resolve) => {
      if (!agent || agent.exitCode !== null || agent.signalCode !== null) return resolve()
      agent.once('exit', () => resolve())
      agent.kill('SIGTERM')
    })
  const stopNats = () =>
    new Promise<void>((resolve) => {
      if (nats.exitCode !== null || nats.signalCode !== null) return resolve()
      nats.once('exit', () => resolve())
      nats.kill('SIGTERM')
    })
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
  agent = await startAgent(controller.url, controller.tls?.caFile ?? auth.caFile, auth.url, auth.agentCreds)
  if (agent) {
    agent.once('exit', (code, signal) => {
      if (!stopping) log.error({ code, signal }, 'the agent exited; the stack runs on without a compute host (see its log above)')
    })
    // Map it, as DevStack ends with `nova-manage cell_v2 discover_hosts`.
    const deadline = Date.now() + 60_000
    while (Date.now() < deadline && agent.exitCode === null && !(await controller.hosts.list()).length) await new Promise((r) => setTimeout(r, 200))
    const found = await controller.hosts.discover()
    for (const line of found.lines) log.info(line)
  }
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
