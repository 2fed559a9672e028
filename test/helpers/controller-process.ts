/**
 * Runs the real controller daemon (`controller/main.ts`) as its own process on
 * a fixed loopback port and data dir, configured through STRATO_CONFIG, for
 * tests that SIGKILL it and start it again on the same database.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { ConfigOverrides } from '../../controller/config.js'
import { TokensClient, type IssueTokenResponse } from '../../proto/gen/strato/identity/v1/identity.js'
import { parseOpenrc } from './controller.js'
import { call, client } from './grpc.js'
import { freePort } from './ports.js'

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')

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

export async function spawnController(natsUrl: string, overrides: ConfigOverrides = {}): Promise<ControllerProcess> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'strato-ctlp-'))
  const port = await freePort()
  const configFile = path.join(dataDir, 'config.json')
  const openrcPath = path.join(dataDir, 'admin-openrc')
  writeFileSync(configFile, JSON.stringify({ ...overrides, dataDir, natsUrl, grpc: { host: '127.0.0.1', port, publicAddress: null }, bootstrap: { openrcPath } }))
  const logFile = path.join(dataDir, 'controller.log')
  let starts = 0
  const launch = async (): Promise<ChildProcess> => {
    const out = createWriteStream(logFile, { flags: 'a' })
    const proc = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'controller/main.ts')], {
      cwd: ROOT,
      env: { ...process.env, STRATO_CONFIG: configFile, STRATO_LOG_LEVEL: process.env.STRATO_TEST_LOG && process.env.STRATO_TEST_LOG !== 'silent' ? process.env.STRATO_TEST_LOG : 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    proc.stdout!.pipe(out)
    proc.stderr!.pipe(out)
    // Up when it says so (after bootstrap, the bus and the resend of pending casts).
    const want = ++starts
    const deadline = Date.now() + 60_000
    while (read().split('\n').filter((l) => l.includes('"msg":"controller running"')).length < want) {
      if (proc.exitCode !== null) throw new Error(`controller exited with ${proc.exitCode}:\n${read().slice(-3000)}`)
      if (Date.now() > deadline) {
        proc.kill('SIGKILL')
        throw new Error(`controller did not start within 60 s:\n${read().slice(-3000)}`)
      }
      await new Promise((r) => setTimeout(r, 50))
    }
    return proc
  }
  const read = () => {
    try {
      return readFileSync(logFile, 'utf8')
    } catch {
      return ''
    }
  }
  const exited = (p: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (p.exitCode !== null || p.signalCode !== null) return resolve()
      p.once('exit', () => resolve())
    })
  const proc = await launch()
  const address = `127.0.0.1:${port}`
  const tokens = client(TokensClient, address)
  let issued: IssueTokenResponse
  try {
    const openrc = parseOpenrc(openrcPath)
    issued = await call<IssueTokenResponse>(tokens, 'issueToken', {
      identity: { methods: ['password'], password: { user: { name: openrc.OS_USERNAME!, domain: { name: 'Default' }, password: openrc.OS_PASSWORD! } } },
      scope: { project: { name: openrc.OS_PROJECT_NAME!, domain: { name: 'Default' } } },
    })
  } catch (err) {
    proc.kill('SIGKILL')
    throw err
  } finally {
    tokens.close()
  }
  const c: ControllerProcess = {
    address,
    dataDir,
    adminToken: issued.token ?? '',
    proc,
    log: read,
    async kill(signal) {
      const done = exited(c.proc)
      c.proc.kill(signal)
      await done
    },
    async restart() {
      if (c.proc.exitCode === null && c.proc.signalCode === null) await c.kill('SIGTERM')
      c.proc = await launch()
    },
    async close() {
      if (c.proc.exitCode === null && c.proc.signalCode === null) await c.kill('SIGTERM')
      rmSync(dataDir, { recursive: true, force: true })
    },
  }
  return c
}
