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
 * a fresh database on a shared cluster: under tap, the one cluster of the tap
 * run (postgres-run.ts), each database a copy of a migrated template; outside
 * tap, one cluster per test process, stopped and removed when it ends.
 */
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { freePort } from './ports.js'
import { clusterPaths, initCluster, startCluster, stopCluster } from '../../cli/stack/postgres.js'
import { openDatabase } from '../../controller/store/db.js'
import { endStaleRuns, tapRunDir } from './postgres-run.js'
import { eventually } from './agents.js'

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
  /**
   * Creates a new database and returns its URL: on the tap run's cluster a
   * copy of the migrated template, unless `empty` (a suite that migrates it
   * itself); elsewhere empty.
   */
  createDatabase(name?: string, o?: { empty?: boolean }): Promise<string>
  /** The server log so far (for a failing test's message). */
  log(): string
  /**
   * Stops the server (immediate) and removes the temp dir; safe to call twice.
   * Nothing for the shared cluster (`sharedPostgres`): the run's `after`
   * script, or the process's end, stops it.
   */
  stop(): void
}

/** The database a tap run's cluster copies for each new one: migrated once, by the file that started the cluster. */
const RUN_TEMPLATE = 'strato_template'

/** A handle on the cluster in `dir` listening on `port`; `template`: the database new ones copy. */
function clusterHandle(dir: string, port: number, user: string, password: string, stop: () => void, template?: string): PostgresCluster {
  const { logFile } = clusterPaths(dir)
  const url = (database: string) => `postgres://${user}:${password}@127.0.0.1:${port}/${database}`
  let n = 0
  return {
    port, user, password, dir, url,
    async createDatabase(name = `strato_${process.pid}_${++n}`, o = {}) {
      const admin = new pg.Client({ connectionString: url('postgres') })
      await admin.connect()
      try {
        await admin.query(`CREATE DATABASE "${name}"${template && !o.empty ? ` TEMPLATE "${template}"` : ''}`)
      } finally {
        await admin.end()
      }
      return url(name)
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    stop,
  }
}

/** Starts a cluster in `dir` (a new temp dir unless given), removed by its stop(). */
export async function startPostgres(dir = mkdtempSync(path.join(tmpdir(), 'strato-pg-'))): Promise<PostgresCluster> {
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
    // Connections: a tap run's files share it (two at a time), each with a pool of 10 per controller.
    startCluster(dir, port, ['fsync=off', 'synchronous_commit=off', 'full_page_writes=off', 'shared_buffers=32MB', 'max_connections=300'])
    started = true
    return clusterHandle(dir, port, user, password, stop)
  } catch (err) {
    stop()
    throw err
  }
}

/**
 * The tap run's cluster (see postgres-run.ts): started, and its template
 * migrated, by the first file that asks (it makes `runDir`, atomically);
 * the others wait for its `cluster.json` (or `failed`). stop() leaves it to
 * the run's `after` script.
 */
async function runPostgres(runDir: string): Promise<PostgresCluster> {
  const info = path.join(runDir, 'cluster.json')
  const failed = path.join(runDir, 'failed')
  let starter = false
  try {
    mkdirSync(runDir)
    starter = true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  if (starter) {
    try {
      endStaleRuns()
      const c = await startPostgres(path.join(runDir, 'cluster'))
      const db = await openDatabase(await c.createDatabase(RUN_TEMPLATE))
      await db.destroy()
      writeFileSync(`${info}.new`, JSON.stringify({ port: c.port, user: c.user, password: c.password }), { mode: 0o600 })
      renameSync(`${info}.new`, info)
    } catch (err) {
      writeFileSync(failed, (err as Error).stack ?? String(err))
      throw err
    }
  }
  const { port, user, password } = await eventually(() => {
    if (existsSync(failed)) throw new Error(`the tap run's PostgreSQL cluster (${runDir}) failed to start: ${readFileSync(failed, 'utf8')}`)
    return existsSync(info) ? (JSON.parse(readFileSync(info, 'utf8')) as { port: number; user: string; password: string }) : undefined
  }, 180_000, `the tap run's PostgreSQL cluster in ${runDir}`)
  return clusterHandle(path.join(runDir, 'cluster'), port, user, password, () => {}, RUN_TEMPLATE)
}

/** True when the suites run their store on PostgreSQL (`STRATO_TEST_DATABASE=postgres`). */
export function testingOnPostgres(): boolean {
  const v = process.env.STRATO_TEST_DATABASE ?? 'sqlite'
  if (v !== 'sqlite' && v !== 'postgres') throw new Error(`STRATO_TEST_DATABASE is '${v}': say sqlite (the default) or postgres`)
  return v === 'postgres'
}

let shared: Promise<PostgresCluster> | undefined

/**
 * The cluster this process's suites use: the tap run's (one for the whole
 * run, see postgres-run.ts), or outside tap this process's own, started on
 * first use and stopped when the process exits. Suites that need PostgreSQL
 * whatever STRATO_TEST_DATABASE says (store/postgres, the pairs of
 * controller-pair.ts, rest/server-views) take a database of it too, rather
 * than a cluster of their own (~5 s and an initdb each). Its stop() does
 * nothing: others may still use it.
 */
export function sharedPostgres(): Promise<PostgresCluster> {
  const runDir = tapRunDir()
  if (runDir) return (shared ??= runPostgres(runDir))
  if (!shared) {
    shared = startPostgres().then((c) => {
      // 'exit' runs for normal ends and process.exit(); tap's timeout sends SIGTERM, which would skip it.
      process.once('exit', () => c.stop())
      for (const sig of ['SIGTERM', 'SIGINT'] as const) {
        process.once(sig, () => {
          c.stop()
          process.kill(process.pid, sig)
        })
      }
      return { ...c, stop: () => {} }
    })
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

