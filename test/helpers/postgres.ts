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
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from './ports.js'
import { clusterPaths, initCluster, startCluster, stopCluster } from '../../cli/stack/postgres.js'

export { POSTGRES_BIN } from '../../cli/stack/postgres.js'

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

export async function startPostgres(): Promise<PostgresCluster> {
  const dir = mkdtempSync(path.join(tmpdir(), 'strato-pg-'))
  const { logFile } = clusterPaths(dir)
  const user = 'strato'
  const password = randomBytes(12).toString('hex')
  let started = false
  const stop = (): void => {
    if (started) {
      started = false
      stopCluster(dir, 'immediate')
    }
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    initCluster(dir, user, password, { noSync: true })
    const port = await freePort()
    // A test cluster: durability off (fsync), small, loopback only, socket inside the temp dir.
    startCluster(dir, port, ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off', 'shared_buffers=32MB', 'max_connections=200'])
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

