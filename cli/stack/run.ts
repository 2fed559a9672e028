#!/usr/bin/env node
/**
 * The all-in-one stack: a nats-server with JetStream and the controller with
 * its embedded SQLite database, in the foreground, readable logs, clean stop
 * on Ctrl-C (SIGINT) or SIGTERM. State lives under STRATO_HOME.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { loadConfig } from '../../controller/config.js'
import { createLogger } from '../../controller/log.js'
import { Controller } from '../../controller/server.js'
import { loadStackConfig } from './config.js'

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

async function main(): Promise<void> {
  for (const [what, p] of [['NATS', cfg.natsPort], ['gRPC', cfg.grpcPort]] as const) {
    if (!(await portFree(p, cfg.host))) {
      throw new Error(`${what} port ${cfg.host}:${p} is in use (another stack?). Choose another with STRATO_${what === 'NATS' ? 'NATS' : 'GRPC'}_PORT=...`)
    }
  }
  const natsDir = path.join(cfg.home, 'nats')
  mkdirSync(natsDir, { recursive: true })
  const natsLog = path.join(natsDir, 'nats-server.log')
  // Own process group: Ctrl-C reaches us, and we stop nats-server after the controller has drained.
  const nats = spawn('nats-server', ['-js', '-a', cfg.host, '-p', String(cfg.natsPort), '-sd', natsDir, '-l', natsLog], { stdio: 'ignore', detached: true })
  nats.once('error', (err) => log.error({ err }, 'cannot run nats-server (npm run setup installs it)'))
  await waitForPort(cfg.natsPort, cfg.host, nats, 15_000)
  log.info({ url: `nats://${cfg.host}:${cfg.natsPort}`, store: natsDir, log: natsLog }, 'nats-server running (JetStream)')

  const controller = new Controller(
    loadConfig({
      dataDir: path.join(cfg.home, 'controller'),
      grpc: { host: cfg.host, port: cfg.grpcPort, publicAddress: null },
      natsUrl: `nats://${cfg.host}:${cfg.natsPort}`,
      bootstrap: { openrcPath: cfg.openrc },
      log: { level: cfg.logLevel, pretty: true },
    }),
    log.child({ component: 'controller' }),
  )
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
  const rel = path.relative(process.cwd(), cfg.openrc)
  log.info(`Strato is up at ${controller.address}. In another shell: . ${rel.startsWith('..') ? cfg.openrc : rel}  — Ctrl-C here stops the stack.`)
}

main().catch((err: Error) => {
  log.fatal(err.message)
  process.exit(1)
})
