/**
 * Which SQL engine a Kysely instance (or a transaction of it) talks to, for
 * the few places where SQLite and PostgreSQL need different SQL: column types
 * in migrations (an auto-increment key, a double), row locks, and a row's
 * child rows read with it as a JSON array. Everything else is written once and
 * runs on both.
 */
import { PostgresIntrospector, sql, type Compilable, type Kysely, type RawBuilder } from 'kysely'
import { jsonArrayFrom as pgJsonArrayFrom } from 'kysely/helpers/postgres'
import { jsonArrayFrom as sqliteJsonArrayFrom } from 'kysely/helpers/sqlite'

export type Engine = 'sqlite' | 'postgres'

const engines = new WeakMap<Kysely<any>, Engine>()

/** The engine behind `db`; transactions and the Migrator's `db` answer as their parent does. */
export function engineOf(db: Kysely<any>): Engine {
  let engine = engines.get(db)
  if (engine === undefined) {
    // The introspector is the dialect's own class and reachable through the public API; Kysely makes a new one (and a
    // new Kysely instance for it) per `introspection` read, so each db asks once (a create path asks several times).
    engine = db.introspection instanceof PostgresIntrospector ? 'postgres' : 'sqlite'
    engines.set(db, engine)
  }
  return engine
}

/**
 * Serialises, until `trx` ends, every transaction that locks one of `names`
 * (e.g. `quota:<project id>`): the check-then-write steps that SQLite's single
 * writer already runs one at a time (a quota check and the insert it admits,
 * the lowest free address of a network) run one at a time on PostgreSQL too,
 * across controllers. A PostgreSQL transaction-scoped advisory lock per name
 * (taken again at once by a transaction that holds it); nothing to do on
 * SQLite, whose write transactions are already serial. Statements after the
 * lock see what the previous holder committed (READ COMMITTED takes a new
 * snapshot per statement).
 *
 * So that no two transactions wait on each other in a cycle, locks are taken
 * in one order: the project (`project:<id>`, then `user:<id>`: quota, default
 * security group), then a network's addresses (`ipam:<id>`) or the volume
 * backends (`volume-backends`), then a resource provider's row (the claim).
 * Names given in one call are taken sorted.
 */
export async function lockNames(trx: Kysely<any>, names: string[]): Promise<void> {
  if (engineOf(trx) !== 'postgres' || !trx.isTransaction) return
  for (const name of [...new Set(names)].sort()) await sql`SELECT pg_advisory_xact_lock(hashtextextended(${name}, 0))`.execute(trx)
}

/**
 * Runs `fn` holding `name` against every other holder, also in other
 * controllers, for work that spans several transactions (placing a server
 * group's members: claims, then the record). On PostgreSQL, a session
 * advisory lock on one reserved connection of the pool (released with it if
 * the controller dies); `fn` uses the pool's other connections. On SQLite one
 * controller owns the file and the caller's in-process order is enough.
 */
export async function withSessionLock<T>(db: Kysely<any>, name: string, fn: () => Promise<T>): Promise<T> {
  if (engineOf(db) !== 'postgres') return fn()
  return db.connection().execute(async (conn) => {
    await sql`SELECT pg_advisory_lock(hashtextextended(${name}, 0))`.execute(conn)
    try {
      return await fn()
    } finally {
      await sql`SELECT pg_advisory_unlock(hashtextextended(${name}, 0))`.execute(conn)
    }
  })
}

/**
 * `q` locking the rows it reads until the transaction ends (`FOR UPDATE`) on
 * PostgreSQL, for a read-check-write that another controller may run on the
 * same row at the same time (an agent's result delivered again to the other
 * controller: the second finds it applied); as is on SQLite, whose write
 * transactions are already serial.
 */
export function forUpdate<Q extends { forUpdate(): Q }>(trx: Kysely<any>, q: Q): Q {
  return engineOf(trx) === 'postgres' ? q.forUpdate() : q
}

/**
 * The rows of `q` (a correlated subquery: a row's tags, properties or extra
 * specs, in `q`'s order) as one JSON array column of the enclosing select, so
 * that a row and its children are one statement, one round trip on
 * PostgreSQL. Kysely's helper of the engine's dialect (`json_agg`,
 * `json_group_array`); read the column with `jsonRows`.
 */
export function jsonArray<O>(db: Kysely<any>, q: Parameters<typeof sqliteJsonArrayFrom<O>>[0]): RawBuilder<O[] | string> {
  return (engineOf(db) === 'postgres' ? pgJsonArrayFrom(q) : sqliteJsonArrayFrom(q)) as RawBuilder<O[] | string>
}

/** A `jsonArray` column as rows: PostgreSQL's driver parses json, SQLite gives the text. */
export function jsonRows<O>(v: O[] | string): O[] {
  return typeof v === 'string' ? (JSON.parse(v) as O[]) : v
}

/**
 * A query built and compiled once, run with new values for its named
 * parameters: Kysely builds a select with `jsonArray` subqueries in ~190 µs
 * of CPU, SQLite runs it in ~20. `build` gets a placeholder for each name
 * and must use each where a value goes (`where('id', '=', p.id)`); the SQL is
 * `db`'s engine's, so keep one per Kysely instance.
 */
export function compiledOnce<K extends string, R>(db: Kysely<any>, names: readonly K[], build: (p: Record<K, string>) => Compilable<R>): (values: Record<K, unknown>) => Promise<R[]> {
  const marker = (name: string) => `\u0000${name}`
  let compiled: { query: ReturnType<Compilable<R>['compile']>; slots: Array<K | undefined> } | undefined
  return async (values) => {
    if (!compiled) {
      const query = build(Object.fromEntries(names.map((n) => [n, marker(n)])) as Record<K, string>).compile()
      // Which parameter takes which value, worked out once: a marker's name, or undefined for a constant of the query.
      const slots = query.parameters.map((v) => {
        const name = typeof v === 'string' && v.startsWith('\u0000') ? (v.slice(1) as K) : undefined
        return name !== undefined && names.includes(name) ? name : undefined
      })
      compiled = { query, slots }
    }
    const { query, slots } = compiled
    const parameters = slots.map((name, i) => (name === undefined ? query.parameters[i] : values[name]))
    return (await db.executeQuery<R>({ ...query, parameters })).rows
  }
}
