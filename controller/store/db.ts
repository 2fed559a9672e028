/**
 * Opens the database named by a URL and brings its schema up to date.
 * `sqlite:PATH` (better-sqlite3, WAL, foreign keys on) is the embedded default;
 * other schemes are refused with a clear message until their dialect is added
 * here — domain code only ever sees `Kysely<Database>`.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync } from 'node:fs'
import path from 'node:path'
import BetterSqlite3 from 'better-sqlite3'
import { Kysely, Migrator, SqliteDialect, type MigrationProvider, type SqliteDatabase } from 'kysely'
import { InvalidArgument, Internal } from '../../proto/errors.js'
import type { Database } from './schema.js'
import { migrations } from './migrations.js'

export type Db = Kysely<Database>

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
  } else {
    throw new InvalidArgument(`unsupported database URL '${url.replace(/\/\/[^@]*@/, '//***@')}': only sqlite:PATH is built in`, { field: 'databaseUrl' })
  }
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

/** SQLite and PostgreSQL unique-violation detection, so callers can map to AlreadyExists. */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string }
  return e?.code === 'SQLITE_CONSTRAINT_UNIQUE' || e?.code === 'SQLITE_CONSTRAINT_PRIMARYKEY' || e?.code === '23505'
}
