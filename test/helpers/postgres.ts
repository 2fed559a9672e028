/**
 * A private PostgreSQL cluster for the suites that ask for one: `initdb` and
 * `pg_ctl` from Debian's postgresql-15 on a free port of 127.0.0.1, its data
 * and socket directory in a temp dir, password (SCRAM) auth over TCP. It
 * never uses a server it did not start. PostgreSQL refuses to run as root, so
 * when the tests run as root the cluster runs as the `postgres` system user
 * (`runuser`), which owns the temp dir.
 *
 * `STRATO_TEST_DATABASE=postgres` switches the store-touching helpers
 * (startController, spawnController, `testDatabaseUrl`) from a SQLite file to
 * a fresh database on one cluster per test process, stopped and removed when
 * the process ends.
 */
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from './ports.js'

/** Where Debian's postgresql-15 puts the server binaries (not on PATH). */
export const POSTGRES_BIN = '/usr/lib/postgresql/15/bin'

export interface PostgresCluster {
  port: number
  /** The superuser the tests connect as, and its password. */
  user: string
  password: string
  /** The temp dir holding data/, the socket dir and the server log. */
  dir: string
  /** `postgres://user:password@127.0.0.1:port/<database>`. */
  url(database: string): string
  /** Creates a new, empty database and returns its URL. */
  createDatabase(name?: string): Promise<string>
  /** The server log so far (for a failing test's message). */
  log(): string
  /** Stops the server (immediate) and removes the temp dir; safe to call twice. */
  stop(): void
}

/** The uid/gid the server runs as: `postgres` when we are root, else ourselves. */
function serverUser(): { name: string; uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'))
  if (!line) throw new Error('the tests run as root and PostgreSQL refuses root: there is no `postgres` system user (npm run setup installs postgresql, which creates it)')
  const f = line.split(':')
  return { name: 'postgres', uid: Number(f[2]), gid: Number(f[3]) }
}

export async function startPostgres(): Promise<PostgresCluster> {
  const initdb = path.join(POSTGRES_BIN, 'initdb')
  const pgCtl = path.join(POSTGRES_BIN, 'pg_ctl')
  if (!existsSync(initdb) || !existsSync(pgCtl)) throw new Error(`PostgreSQL 15 is not installed (no ${initdb}): run npm run setup, which installs Debian's postgresql`)
  const runAs = serverUser()
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-pg-'))
  const data = path.join(dir, 'data')
  const sockets = path.join(dir, 'sock')
  const logFile = path.join(dir, 'server.log')
  const pwFile = path.join(dir, 'pwfile')
  const user = 'strato'
  const password = randomBytes(12).toString('hex')
  mkdirSync(sockets)
  writeFileSync(pwFile, password, { mode: 0o600 })
  if (runAs) for (const p of [dir, sockets, pwFile]) chownSync(p, runAs.uid, runAs.gid)
  chmodSync(dir, 0o700)
  const run = (cmd: string, args: string[]): void => {
    const argv = runAs ? ['runuser', ['-u', runAs.name, '--', cmd, ...args]] as const : [cmd, args] as const
    const r = spawnSync(argv[0], argv[1], { encoding: 'utf8', cwd: dir, timeout: 120_000 })
    if (r.status !== 0) throw new Error(`${path.basename(cmd)} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr}${existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''}`)
  }
  let started = false
  const stop = (): void => {
    if (started) {
      started = false
      spawnSync(runAs ? 'runuser' : pgCtl, runAs ? ['-u', runAs.name, '--', pgCtl, '-D', data, '-m', 'immediate', '-w', 'stop'] : ['-D', data, '-m', 'immediate', '-w', 'stop'], { stdio: 'ignore', timeout: 60_000 })
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    // C collation: text sorts and compares byte by byte, as SQLite's BINARY does.
    run(initdb, ['-D', data, '--no-sync', '--encoding=UTF8', '--locale=C', `--username=${user}`, `--pwfile=${pwFile}`, '--auth-host=scram-sha-256', '--auth-local=peer'])
    const port = await freePort()
    // A test cluster: durability off (fsync), small, loopback only, socket inside the temp dir.
    const opts = `-p ${port} -k ${sockets} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=32MB -c max_connections=200`
    run(pgCtl, ['-D', data, '-l', logFile, '-o', opts, '-w', '-t', '60', 'start'])
    started = true
    const url = (database: string) => `postgres://${user}:${password}@127.0.0.1:${port}/${database}`
    let n = 0
    return {
      port, user, password, dir, url,
      async createDatabase(name = `strato_${process.pid}_${++n}`) {
        const admin = new pg.Client({ connectionString: url('postgres') })
        await admin.connect()
        try {
          await admin.query(`CREATE DATABASE "${name}"`)
        } finally {
          await admin.end()
        }
        return url(name)
      },
      log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
      stop,
    }
  } catch (err) {
    stop()
    throw err
  }
}

/** True when the suites run their store on PostgreSQL (`STRATO_TEST_DATABASE=postgres`). */
export function testingOnPostgres(): boolean {
  const v = process.env.STRATO_TEST_DATABASE ?? 'sqlite'
  if (v !== 'sqlite' && v !== 'postgres') throw new Error(`STRATO_TEST_DATABASE is '${v}': say sqlite (the default) or postgres`)
  return v === 'postgres'
}

let shared: Promise<PostgresCluster> | undefined

/** This process's cluster, started on first use and stopped when the process exits. */
export function sharedPostgres(): Promise<PostgresCluster> {
  if (!shared) {
    shared = startPostgres()
    shared.then((c) => {
      // 'exit' runs for normal ends and process.exit(); tap's timeout sends SIGTERM, which would skip it.
      process.once('exit', () => c.stop())
      for (const sig of ['SIGTERM', 'SIGINT'] as const) {
        process.once(sig, () => {
          c.stop()
          process.kill(process.pid, sig)
        })
      }
    }, () => {})
  }
  return shared
}

/**
 * The database URL a suite's store should use: a fresh PostgreSQL database
 * under `STRATO_TEST_DATABASE=postgres`, else `sqlite:<file>` (or
 * `sqlite::memory:` when no file is given).
 */
export async function testDatabaseUrl(sqliteFile?: string): Promise<string> {
  if (testingOnPostgres()) return (await sharedPostgres()).createDatabase()
  return sqliteFile ? `sqlite:${sqliteFile}` : 'sqlite::memory:'
}

