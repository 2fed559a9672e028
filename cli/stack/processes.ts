/**
 * The pieces both stack runners use (`npm start`: run.ts; `npm run
 * start:cluster`: run-cluster.ts): where the checkout is, ports, children
 * whose JSON logs are re-logged readably, nats-server and the local agent.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { Logger } from 'pino'
import { GuestDirs, groupId } from '../../agent/disk/guest-dirs.js'
import type { StackConfig } from './config.js'
import type { Controller } from '../../controller/server.js'
import type { HostCredentialIssuer } from '../../controller/compute/join-tokens.js'
import { loadAgentConfig, type AgentConfigOverrides } from '../../agent/config.js'
import { hostCertificateProblem, hostCertificateRequest, hostNbdTls, installHostCertificate } from '../../agent/volume/nbd-tls.js'

const here = path.dirname(fileURLToPath(import.meta.url))

/** The checkout (where package.json is), from src or dist alike. */
export const root = (() => {
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'package.json'))) return dir
    if (dir === path.dirname(dir)) throw new Error(`no package.json above ${here}`)
  }
})()

/** A module of the checkout, as .js when built and .ts under tsx. */
export const moduleOf = (rel: string) => path.join(here, '../..', `${rel}${path.extname(fileURLToPath(import.meta.url))}`)

export function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(port, host, () => s.close(() => resolve(true)))
  })
}

/** Resolves once `proc` (named `what`) accepts connections on host:port; throws when it exits first or is too slow. */
export async function waitForPort(port: number, host: string, proc: ChildProcess, ms: number, what = 'nats-server'): Promise<void> {
  const deadline = Date.now() + ms
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`${what} exited with code ${proc.exitCode}`)
    const ok = await new Promise<boolean>((resolve) => {
      const c = net.connect(port, host)
      c.once('connect', () => (c.destroy(), resolve(true)))
      c.once('error', () => resolve(false))
    })
    if (ok) return
    await new Promise((r) => setTimeout(r, 100))
  }
  throw new Error(`${what} did not listen on ${host}:${port} within ${ms} ms`)
}

/** SIGTERM to `proc` (when still running); resolves once it has exited. */
export function stopChild(proc: ChildProcess | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return resolve()
    proc.once('exit', () => resolve())
    proc.kill('SIGTERM')
  })
}

/** Re-logs a child's JSON log lines through our (pretty) logger. */
export function relog(stream: NodeJS.ReadableStream, log: Logger): void {
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
 * Starts nats-server with `configFile` in its own process group (Ctrl-C
 * reaches the runner, which stops it after the controllers have drained),
 * logging to `logFile`; resolves once it listens.
 */
export async function startNatsServer(configFile: string, logFile: string, port: number, host: string, log: Logger): Promise<ChildProcess> {
  const nats = spawn('nats-server', ['-c', configFile, '-l', logFile], { stdio: 'ignore', detached: true })
  nats.once('error', (err) => log.error({ err }, 'cannot run nats-server (npm run setup installs it)'))
  await waitForPort(port, host, nats, 15_000)
  return nats
}

/**
 * Starts virtlogd/libvirtd when they are not running (no systemd here) and
 * one agent for this host on the libvirt driver. Resolves with the agent, or
 * undefined (the stack then runs without a compute host, and says why) when
 * libvirt cannot be started or STRATO_AGENT=none. `natsUrl` may list several
 * servers (a cluster). The home must let QEMU through to the guests' disks:
 * `homeReady` says the caller has seen to it.
 */
export async function startAgent(cfg: StackConfig, log: Logger, o: { controllerAddress: string; caFile: string | null; natsUrl: string; natsCreds: string; homeReady?: boolean; issuer?: HostCredentialIssuer }): Promise<ChildProcess | undefined> {
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
  if (!o.homeReady) new GuestDirs(groupId(cfg.qemuGroup)).ensure(cfg.home)
  if (o.issuer) {
    // Without it the agent still serves its own volumes; only network attachments need it.
    await issueAgentNbdCertificate(o.issuer, { stateDir, host: cfg.agentHost, driver: 'libvirt', qemuGroup: cfg.qemuGroup }, log)
      .catch((err: Error) => log.error({ err }, `the local agent's NBD certificate could not be issued: ${err.message}`))
  }
  const agent = spawn(process.execPath, [...process.execArgv, moduleOf('agent/main')], {
    env: {
      ...process.env,
      STRATO_NATS_URL: o.natsUrl,
      STRATO_AGENT_NATS_CREDS: o.natsCreds,
      STRATO_AGENT_HOST: cfg.agentHost,
      STRATO_AGENT_DRIVER: 'libvirt',
      STRATO_AGENT_STATE_DIR: stateDir,
      STRATO_AGENT_QEMU_GROUP: cfg.qemuGroup,
      STRATO_AGENT_CONTROLLER: o.controllerAddress,
      ...(o.caFile ? { STRATO_AGENT_CA_FILE: o.caFile } : {}),
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

/**
 * The local agent's NBD certificate, as a joining host gets it (agent/volume/nbd-tls.ts: a key made
 * here, its CSR signed by the controller's issuer, which JoinHost uses), where the agent started with
 * `overrides` (and this environment) looks for it; issued again when missing, for other addresses or
 * near expiry. A controller with no CA key (an operator's certificate) issues none: said, not fatal.
 */
export async function issueAgentNbdCertificate(issuer: HostCredentialIssuer, overrides: AgentConfigOverrides, log: Logger): Promise<void> {
  const nbd = hostNbdTls(loadAgentConfig(overrides))
  const caPem = issuer.caPem()
  const problem = caPem ? hostCertificateProblem(nbd, caPem) : 'no CA'
  if (!problem) return
  const key = await hostCertificateRequest(nbd.host)
  const certPem = await issuer.hostCertificate(nbd.host, key.csrPem, nbd.addresses)
  if (!certPem || !caPem) {
    log.warn({ host: nbd.host }, "no NBD certificate for the local agent: the controller holds no CA key (an operator's certificate); volumes of other hosts cannot be attached here")
    return
  }
  installHostCertificate(nbd, caPem, certPem, key)
  log.info({ host: nbd.host, dir: nbd.dir, clientDir: nbd.clientDir, addresses: nbd.addresses, why: problem }, `issued the local agent its NBD certificate (CN=${nbd.host})`)
}

/**
 * Maps this host's agent once it has announced itself, as DevStack ends with
 * `nova-manage cell_v2 discover_hosts`; says when the agent exits later
 * (unless the stack is `stopping`).
 */
export async function mapLocalHost(controller: Controller, agent: ChildProcess, log: Logger, stopping: () => boolean): Promise<void> {
  agent.once('exit', (code, signal) => {
    if (!stopping()) log.error({ code, signal }, 'the agent exited; the stack runs on without a compute host (see its log above)')
  })
  const deadline = Date.now() + 60_000
  while (Date.now() < deadline && agent.exitCode === null && !(await controller.hosts.list()).length) await new Promise((r) => setTimeout(r, 200))
  const found = await controller.hosts.discover()
  for (const line of found.lines) log.info(line)
}
