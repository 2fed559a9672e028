/**
 * Which SQL engine a Kysely instance (or a transaction of it) talks to, for
 * the few places where SQLite and PostgreSQL need different SQL: column types
 * in migrations (an auto-increment key, a double) and row locks. Everything
 * else is written once and runs on both.
 */
import { PostgresIntrospector, type Kysely } from 'kysely'

export type Engine = 'sqlite' | 'postgres'

/** The engine behind `db`; transactions and the Migrator's `db` answer as their parent does. */
export function engineOf(db: Kysely<any>): Engine {
  // The introspector is the dialect's own class and reachable through the public API.
  return db.introspection instanceof PostgresIntrospector ? 'postgres' : 'sqlite'
}
