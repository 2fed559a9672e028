/**
 * Runs the real controller daemon (`controller/main.ts`) as its own process on
 * a fixed loopback port and data dir, configured through STRATO_CONFIG, for
 * tests that SIGKILL it and start it again on the same database.
 */
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { ConfigOverrides } from '../../controller/config.js'
import { openrcToken } from '../../cli/stack/demo.js'
import { parseOpenrc } from './controller.js'
import { freePort } from './ports.js'
import { natsCredsFor } from './nats.js'
import { testingOnPostgres, testDatabaseUrl } from './postgres.js'
import { exited, readLog, running, startDaemon, waitForLog } from './daemon.js'

export interface ControllerProcess {
  address: string
  dataDir: string
  adminToken: string
  proc: ChildProcess
  log(): string
  kill(signal: NodeJS.Signals): Promise<void>
  /** Starts it again on the same port, database and NATS. */
  restart(): Promise<void>
  close(): Promise<void>
}

/**
 * `peer`: another controller on the same database (and NATS): this one reads
 * its admin openrc (bootstrap finds the admin the first made) and serves the
 * images from its images dir, as a shared file system would give them.
 */
export async function spawnController(natsUrl: string, overrides: ConfigOverrides = {}, peer?: Pick<ControllerProcess, 'dataDir'>): Promise<ControllerProcess> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'strato-ctlp-'))
  const port = await freePort()
  const restPort = await freePort()
  const configFile = path.join(dataDir, 'config.json')
  // A controller joining a bootstrapped database reads the admin credentials from the openrc its first controller wrote.
  const openrcPath = overrides.bootstrap?.openrcPath ?? (peer ? path.join(peer.dataDir, 'admin-openrc') : path.join(dataDir, 'admin-openrc'))
  if (peer) {
    mkdirSync(path.join(peer.dataDir, 'images'), { recursive: true, mode: 0o700 })
    symlinkSync(path.join(peer.dataDir, 'images'), path.join(dataDir, 'images'))
  }
  // Plaintext on loopback unless a test asks for TLS (as the in-process helper).
  // STRATO_TEST_DATABASE=postgres: a fresh database on this process's private cluster, kept across restarts like the SQLite file.
  const databaseUrl = !overrides.databaseUrl && testingOnPostgres() ? await testDatabaseUrl() : undefined
  writeFileSync(configFile, JSON.stringify({ natsCredsFile: natsCredsFor(natsUrl)?.controllerCreds ?? null, tls: { mode: 'off' }, ...(databaseUrl ? { databaseUrl } : {}), ...overrides, dataDir, natsUrl, grpc: { ...overrides.grpc, host: '127.0.0.1', port, publicAddress: null }, rest: { host: null, publicUrl: null, ...overrides.rest, port: restPort }, bootstrap: { ...overrides.bootstrap, openrcPath } }))
  const logFile = path.join(dataDir, 'controller.log')
  let starts = 0
  // Up when it says so (after bootstrap, the bus and the resend of pending casts).
  const launch = async (): Promise<ChildProcess> => {
    const proc = startDaemon('controller/main.ts', { STRATO_CONFIG: configFile }, logFile)
    await waitForLog(proc, logFile, 'controller running', ++starts, 60_000, 'controller')
    return proc
  }
  const proc = await launch()
  const address = `127.0.0.1:${port}`
  let adminToken: string
  try {
    adminToken = await openrcToken(address, parseOpenrc(openrcPath))
  } catch (err) {
    proc.kill('SIGKILL')
    throw err
  }
  const c: ControllerProcess = {
    address,
    dataDir,
    adminToken,
    proc,
    log: () => readLog(logFile),
    async kill(signal) {
      const done = exited(c.proc)
      c.proc.kill(signal)
      await done
    },
    async restart() {
      if (running(c.proc)) await c.kill('SIGTERM')
      c.proc = await launch()
    },
    async close() {
      if (running(c.proc)) await c.kill('SIGTERM')
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
  return c
}
