/**
 * Opens the database named by a URL and brings its schema up to date.
 * `sqlite:PATH` (better-sqlite3, WAL, foreign keys on) is the embedded default;
 * `postgres://user:pass@host:port/db` (or `postgresql://`) opens a pool of
 * node-postgres connections for several controllers on one database. Other
 * schemes are refused with a clear message. Domain code only ever sees
 * `Kysely<Database>`; the few engine differences are in engine.ts's callers.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import path from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { Kysely, Migrator, PostgresDialect, SqliteDialect, sql, type MigrationProvider, type SqliteDatabase } from 'kysely'
import pg from 'pg'
import { InvalidArgument, Internal, Unavailable } from '../../proto/errors.js'
import type { Database } from './schema.js'
import { migrations } from './migrations.js'

export type Db = Kysely<Database>

/**
 * Connections per controller to PostgreSQL: requests are short and most of a
 * request's time is not in the database; PostgreSQL's default limit (100)
 * leaves room for several controllers.
 */
const POSTGRES_POOL_SIZE = 10

export async function openDatabase(url: string): Promise<Db> {
  let db: Db
  if (url.startsWith('sqlite:')) {
    const file = url.slice('sqlite:'.length)
    if (file !== ':memory:') makePrivate(file)
    const raw = new BetterSqlite3(file)
    raw.pragma('journal_mode = WAL')
    raw.pragma('synchronous = NORMAL')
    raw.pragma('foreign_keys = ON')
    raw.pragma('busy_timeout = 5000')
    db = new Kysely<Database>({ dialect: new SqliteDialect({ database: cachingStatements(raw) }) })
    changeStamps.set(db, sqliteChangeStamp(raw))
    sqliteHandles.set(db, raw)
  } else if (url.startsWith('postgres://') || url.startsWith('postgresql://')) {
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: await openPostgresPool(url) }) })
  } else {
    throw new InvalidArgument(`unsupported database URL '${maskPassword(url)}': use sqlite:PATH or postgres://user:password@host:port/database`, { field: 'databaseUrl' })
  }
  if (await upToDate(db)) return db
  const provider: MigrationProvider = { getMigrations: async () => migrations }
  // Areas land migrations independently (0003_network came after 0004_images ran on some databases).
  const { error, results } = await new Migrator({ db, provider, allowUnorderedMigrations: true }).migrateToLatest()
  if (error) {
    await db.destroy()
    const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown'
    throw new Internal(`database migration ${failed} failed: ${(error as Error).message}`, { cause: error })
  }
  return db
}

/**
 * True when `db` has run exactly this version's migrations (the usual open),
 * read in one statement. The Migrator would find the same but first looks for
 * its tables through the engine's catalog (twice), ~300 ms and ~50 ms of CPU
 * per open on PostgreSQL; anything else (a new database, a migration to run,
 * one this version does not know) is left to it. Seeing every row means
 * every migration committed: each row is written after its migration (in its
 * transaction on PostgreSQL).
 */
async function upToDate(db: Db): Promise<boolean> {
  const known = Object.keys(migrations)
  try {
    const { rows } = await sql<{ name: string }>`SELECT name FROM kysely_migration`.execute(db)
    const ran = new Set(rows.map((r) => r.name))
    return ran.size === known.length && known.every((name) => ran.has(name))
  } catch {
    return false // no migration table yet: a new database
  }
}

/** The URL with its password (if any) replaced by `***`, for messages and logs. */
export function maskPassword(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^@/]*@/i, '$1:***@')
}

/**
 * A node-postgres pool, tried once before it is handed out so that a wrong
 * URL fails the controller's start with a message that says which part is
 * wrong, instead of failing each request later.
 */
async function openPostgresPool(url: string): Promise<pg.Pool> {
  const shown = maskPassword(url)
  let target: string
  try {
    const u = new URL(url)
    if (!u.hostname) throw new Error('no host')
    if (u.pathname.length <= 1) throw new Error('no database name')
    target = `${u.hostname}:${u.port || 5432}${u.pathname}`
  } catch (err) {
    throw new InvalidArgument(`database URL '${shown}' is not postgres://user:password@host:port/database (${(err as Error).message})`, { field: 'databaseUrl', cause: err })
  }
  // One connection, given 10 s. The pool itself sets no timeout: a request waits for a free
  // connection however busy the others are, as it waits for SQLite's one connection.
  const probe = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 })
  try {
    await probe.connect()
  } catch (err) {
    await probe.end().catch(() => {})
    const e = err as { code?: string; message?: string }
    const why = e.message ?? String(err)
    // 28P01 invalid_password, 28000 invalid_authorization_specification, 3D000 invalid_catalog_name (no such database).
    if (e.code === '28P01' || e.code === '28000') throw new InvalidArgument(`PostgreSQL at ${target} refused the credentials in database URL '${shown}': ${why}`, { field: 'databaseUrl', cause: err })
    if (e.code === '3D000') throw new InvalidArgument(`database URL '${shown}' names a database that does not exist on ${target}: ${why}`, { field: 'databaseUrl', cause: err })
    throw new Unavailable(`cannot reach PostgreSQL at ${target} (database URL '${shown}'): ${why}`, { cause: err })
  }
  await probe.end()
  const pool = new pg.Pool({ connectionString: url, max: POSTGRES_POOL_SIZE, types: { getTypeParser: typeParser } })
  // An idle connection the server dropped (a restart) is replaced at next use; without a listener the error would kill the process.
  pool.on('error', () => {})
  return pool
}

/**
 * PostgreSQL's bigint (count(*), sum() of integers, our bigint columns) and
 * numeric (sum() of bigints) come back as strings by default, as they may
 * exceed 2^53; every such value here (bytes, MiB, counts, milliseconds) is
 * far below it, and SQLite hands out numbers, so both engines give numbers.
 */
function typeParser(oid: number, format?: string): (value: string) => unknown {
  if (oid === pg.types.builtins.INT8 || oid === pg.types.builtins.NUMERIC) return Number
  return pg.types.getTypeParser(oid, format as 'text')
}

/**
 * The database holds every user's password hash and all user data: the file
 * is made 0600 before SQLite opens it, since SQLite gives its -wal and -shm
 * files the database file's mode (whatever the umask); a database an older
 * version left 0644 is fixed, with its -wal and -shm. The directory is made
 * 0700 when it is new.
 */
function makePrivate(file: string): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 })
  closeSync(openSync(file, 'a', 0o600))
  for (const f of [file, `${file}-wal`, `${file}-shm`]) if (existsSync(f)) chmodSync(f, 0o600)
}

/**
 * What `changeStamp` reads, per database opened here: only SQLite has a stamp
 * that costs no round trip (PostgreSQL's callers read the data itself).
 */
const changeStamps = new WeakMap<Db, () => string>()

/** The better-sqlite3 connection behind each SQLite store opened here. */
const sqliteHandles = new WeakMap<Db, BetterSqlite3.Database>()

/**
 * A value that changes whenever the database may have changed: any row this
 * controller's connection wrote (committed or not, whatever path the SQL took),
 * any transaction another connection committed (SQLite's `data_version`). Read
 * it BEFORE reading what it guards: data read after it is at least as new as
 * the stamp, so an answer kept under a stamp is current for as long as the
 * stamp stays the same. Undefined when the engine has no such stamp
 * (PostgreSQL): callers then read the data to know whether it changed.
 */
export function changeStamp(db: Db): string | undefined {
  return changeStamps.get(db)?.()
}

/**
 * The better-sqlite3 connection behind a SQLite store (undefined on
 * PostgreSQL), for work beside Kysely on the same connection (raw SQL, a
 * backup). Its writes count in `changeStamp` as Kysely's do.
 */
export function sqliteHandle(db: Db): BetterSqlite3.Database | undefined {
  return sqliteHandles.get(db)
}

/**
 * SQLite's own counters, read by one cached statement that touches no table:
 * `data_version` changes when another connection (another process on the
 * file) commits, not for this connection's own commits; `total_changes()`
 * counts every row this connection inserted, updated or deleted (triggers
 * included), whichever statement or path made the write — so nothing that
 * writes has to remember to count itself.
 */
function sqliteChangeStamp(raw: BetterSqlite3.Database): () => string {
  const counters = raw.prepare('SELECT data_version, total_changes() FROM pragma_data_version').raw()
  return () => (counters.get() as [number, number]).join('.')
}

/**
 * Kysely prepares every query anew; preparing is a large share of a short
 * query's cost in better-sqlite3. Statements are reusable, so keep them by SQL
 * text (bounded: queries are built from a fixed set of shapes).
 */
function cachingStatements(raw: BetterSqlite3.Database): SqliteDatabase {
  const cache = new Map<string, BetterSqlite3.Statement>()
  return {
    close: () => raw.close(),
    prepare: (sql: string) => {
      let stmt = cache.get(sql)
      if (!stmt) {
        stmt = raw.prepare(sql)
        if (cache.size >= 1000) cache.delete(cache.keys().next().value!)
        cache.set(sql, stmt)
      }
      return stmt as unknown as ReturnType<SqliteDatabase['prepare']>
    },
  }
}

/**
 * Runs `op`; a unique-constraint violation (a concurrent or repeated create)
 * becomes the error `onDuplicate` makes — AlreadyExists or Conflict, with a
 * message that names the thing.
 */
export async function unlessDuplicate<T>(op: () => Promise<T>, onDuplicate: () => Error): Promise<T> {
  try {
    return await op()
  } catch (err) {
    if (!isUniqueViolation(err)) throw err
    const e = onDuplicate()
    ;(e as { cause?: unknown }).cause ??= err
    throw e
  }
}

/** SQLite and PostgreSQL (23505 unique_violation) unique-violation detection, so callers can map to AlreadyExists. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string }
  return e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || e?.code === '23505'
}

/** SQLite and PostgreSQL (23503 foreign_key_violation): a row still referenced, or a reference to a missing row. */
export function isForeignKeyViolation(err: unknown): boolean {
  const e = err as { code?: string }
  return e?.code === 'SQLITE_CONSTRAINT_FOREIGNKEY' || e?.code === '23503'
}

/** `items` by key, each list in the order given (a listing's child rows, read in one query, by parent). */
export function groupBy<T>(items: readonly T[], key: (x: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>()
  for (const x of items) {
    const k = key(x)
    const list = out.get(k)
    if (list) list.push(x)
    else out.set(k, [x])
  }
  return out
}
